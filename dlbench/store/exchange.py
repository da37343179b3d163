"""dlbench's own run exchange format: one JSON document per run, raw samples included.

Document (format ``dlbench-run``, version 1)::

    {
      "format": "dlbench-run",
      "format_version": 1,
      "dlbench_version": "0.1.0",
      "exported_at": "2026-01-01T00:00:00+00:00",
      "run": {"id": 3, "suite": "ci", "started_at": 1767225600.0, "finished_at": ...,
              "git_commit": "abc123", "status": "finished", "config": {...}},
      "environment": {...},                # the run's environment fingerprint
      "results": [Result.to_dict(), ...]   # cell, key, status, measurements with raw samples
                                           # and stats, metrics, series, details, model, error
    }

Strict JSON: non-finite floats (NaN, +-Infinity) are written as ``null``; on import ``null``
becomes NaN where a number is expected (stats, metrics, samples). Readers accept any document of
a version they know and reject newer versions with a message that says to upgrade.
:func:`import_any` also accepts pytest-benchmark JSON.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from dataclasses import asdict
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from dlbench.errors import DlbenchError
from dlbench.report.base import RunInfo
from dlbench.result import Result
from dlbench.store.pytest_benchmark import import_pytest_benchmark

FORMAT = "dlbench-run"
FORMAT_VERSION = 1


def _strict(o: Any) -> Any:
    """Replace non-finite floats by None, recursively (and NumPy scalars by Python ones)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _strict(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_strict(v) for v in o]
    if hasattr(o, "item") and hasattr(o, "dtype"):  # NumPy scalar or array
        return _strict(o.tolist())
    return o


def _nan(v: Any) -> Any:
    return math.nan if v is None else v


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("dlbench")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def export_run(run_info: RunInfo, results: list[Result]) -> dict[str, Any]:
    """The run as a JSON-ready dict (``json.dumps(d, allow_nan=False)`` succeeds)."""
    run = asdict(run_info)
    env = run.pop("environment", {})
    return _strict({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dlbench_version": _version(),
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "run": run,
        "environment": env,
        "results": [r.to_dict() for r in results],
    })


def _restore_result(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    ms = []
    for m in d.get("measurements", []):
        m = dict(m)
        m["samples"] = [_nan(v) for v in m.get("samples", [])]
        if m.get("stats"):
            m["stats"] = {k: (int(v) if k == "n" and v is not None else _nan(v))
                          for k, v in m["stats"].items()}
        ms.append(m)
    d["measurements"] = ms
    d["metrics"] = {k: _nan(v) for k, v in d.get("metrics", {}).items()}
    return d


# -- the documented schema, checked in full before anything is imported --------------------------

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""A name (suite, scenario, task, framework, device, measurement): one line, no control characters."""
Num = Annotated[float, Field(allow_inf_nan=False)] | None
"""A number; ``null`` stands for NaN (non-finite floats are written as null)."""
Count = Annotated[int, Field(ge=0)]
Time = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _Lax(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class StatsDoc(_Strict):
    n: Count
    median: Num
    mean: Num
    std: Num
    min: Num
    max: Num
    p90: Num
    p99: Num
    ci_low: Num
    ci_high: Num
    iqr: Num


class MeasurementDoc(_Strict):
    name: Name
    unit: Annotated[str, StringConstraints(max_length=40)]
    samples: list[Num]
    stats: StatsDoc | None = None
    higher_is_better: bool = True
    meta: dict[str, Any] = {}


class ModelDoc(_Strict):
    spec_digest: Annotated[str, StringConstraints(max_length=40)]
    parameter_count: Count
    flops_per_example: Count
    initial_digest: Annotated[str, StringConstraints(max_length=80)]
    trained_digest: Annotated[str, StringConstraints(max_length=80)] | None = None
    artifact: Annotated[str, StringConstraints(max_length=400)] | None = None


class CellDoc(_Strict):
    scenario: Name
    task: Name
    framework: Name
    device: Name = "cpu"
    params: dict[str, Any] = {}
    timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 600.0
    budget: dict[str, Any] = {}
    shown: list[str] | None = None


class ResultDoc(_Strict):
    cell: CellDoc
    key: str | None = None
    status: Literal["ok", "failed", "skipped", "timeout", "crashed"] = "ok"
    measurements: list[MeasurementDoc] = []
    metrics: dict[str, Num] = {}
    series: dict[str, list[dict[str, Any]]] = {}
    details: dict[str, Any] = {}
    model: ModelDoc | None = None
    environment: dict[str, Any] = {}
    error: str | None = None
    log_tail: str = ""
    started_at: Time | None = None
    duration: Time | None = None


class RunDoc(_Lax):
    id: Count = 0
    suite: Name
    started_at: Time
    finished_at: Time | None = None
    git_commit: Annotated[str, StringConstraints(max_length=80, pattern=r"^[^\x00-\x1f\x7f]*$")] | None = None
    status: Name = "finished"
    config: dict[str, Any] = {}


class ExportDoc(_Lax):
    format: Literal["dlbench-run"]
    format_version: Literal[1]
    dlbench_version: str | None = None
    exported_at: str | None = None
    run: RunDoc
    environment: dict[str, Any] = {}
    results: list[ResultDoc]


def _first_error(exc: ValidationError) -> str:
    """The first problem of a document, naming its field (``results[2].measurements[0].stats.n``)."""
    e = exc.errors(include_url=False)[0]
    where = ""
    for part in e["loc"]:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    got = repr(e.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    return f"field {where or '(document)'}: {e['msg']} (got {got})".replace("\n", " ")


def validate_export(d: Any) -> None:
    """Check a whole dlbench run document against the schema above; DlbenchError names the first
    bad field. Nothing is imported from a document that fails."""
    try:
        ExportDoc.model_validate(d)
    except ValidationError as exc:
        raise DlbenchError(f"invalid dlbench run export: {_first_error(exc)}") from None


def digest(d: Any) -> str:
    """What identifies an exported run (its run, environment and results; not when it was
    exported): ``dlbench import`` stores it in the run's config and refuses the same run twice."""
    body = {k: v for k, v in d.items() if k not in ("exported_at", "dlbench_version")} if isinstance(d, dict) else d
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def import_run(d: dict[str, Any]) -> tuple[RunInfo, list[Result]]:
    """Run info and results from an :func:`export_run` document (validated in full first)."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        got = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise DlbenchError(f"not a dlbench run document: format {got!r}, expected {FORMAT!r} "
                           "(write one with dlbench's JSON export)")
    version = d.get("format_version")
    if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
        raise DlbenchError(f"unsupported dlbench run format_version {version!r}: this dlbench "
                           f"reads versions 1..{FORMAT_VERSION} (upgrade dlbench to read it)")
    validate_export(d)
    run = dict(d.get("run", {}))
    info = RunInfo(id=int(run.get("id", 0) or 0), suite=str(run.get("suite", "")),
                   started_at=float(run.get("started_at") or 0.0),
                   finished_at=run.get("finished_at"), git_commit=run.get("git_commit"),
                   environment=dict(d.get("environment") or {}),
                   status=str(run.get("status", "finished")), config=dict(run.get("config") or {}))
    results = [Result.from_dict(_restore_result(r)) for r in d.get("results", [])]
    return info, results


def import_any(d: dict[str, Any]) -> tuple[RunInfo | None, list[Result]]:
    """A dlbench run document or a pytest-benchmark JSON document (run info None)."""
    if isinstance(d, dict) and d.get("format") == FORMAT:
        return import_run(d)
    if isinstance(d, dict) and isinstance(d.get("benchmarks"), list):
        try:
            return None, import_pytest_benchmark(d)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise DlbenchError(f"invalid pytest-benchmark JSON: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:120] if str(exc) else 'malformed'}") from None
    raise DlbenchError("unrecognised results document: expected a dlbench run export "
                       f"(format {FORMAT!r}) or pytest-benchmark JSON (a 'benchmarks' list)")
