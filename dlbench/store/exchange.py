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
import math
from dataclasses import asdict
from typing import Any

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


def import_run(d: dict[str, Any]) -> tuple[RunInfo, list[Result]]:
    """Run info and results from an :func:`export_run` document."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        got = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise DlbenchError(f"not a dlbench run document: format {got!r}, expected {FORMAT!r} "
                           "(write one with dlbench's JSON export)")
    version = d.get("format_version")
    if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
        raise DlbenchError(f"unsupported dlbench run format_version {version!r}: this dlbench "
                           f"reads versions 1..{FORMAT_VERSION} (upgrade dlbench to read it)")
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
        return None, import_pytest_benchmark(d)
    raise DlbenchError("unrecognised results document: expected a dlbench run export "
                       f"(format {FORMAT!r}) or pytest-benchmark JSON (a 'benchmarks' list)")
