"""JSON reporter: the whole RunData (raw samples included) as strict JSON (NaN/inf become null),
and the way back (``run_data_from_json``). Each measurement also carries its warnings as
``flags`` (names from :data:`dlbench.result.FLAGS`) and ``contention`` next to its statistics,
and ``flagged`` sums them up for the run."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any, ClassVar

from dlbench.report.base import Reporter, RunData, RunInfo
from dlbench.report.common import Scenarios, flag_summary, flags_of, headline
from dlbench.result import Result, Stats

SCHEMA = "dlbench.run/1"


def _clean(o: Any) -> Any:
    """Plain JSON values: NaN/inf to None, numpy scalars and arrays to Python, tuples to lists."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        if all(type(v) is float for v in o):  # raw samples: no call per value
            return [v if math.isfinite(v) else None for v in o]
        return [_clean(v) for v in o]
    if o is None or isinstance(o, (str, int, bool)):
        return o
    if hasattr(o, "tolist"):  # numpy scalars and arrays
        return _clean(o.tolist())
    return str(o)


def result_to_dict(result: Result, scenarios: Scenarios | None = None) -> dict[str, Any]:
    """A result as JSON values, each measurement with its ``flags`` and ``contention``, and the
    ``headline`` figure its scenario names (None for unfinished cells)."""
    d = _clean(result.to_dict())
    for m, md in zip(result.measurements, d["measurements"], strict=True):
        md["flags"] = [f.name for f in flags_of(m)]
        md["contention"] = _clean(m.meta.get("contention"))
    h = headline(result, scenarios) if result.status == "ok" else None
    d["headline"] = None if h is None else _clean({
        "name": h.name, "value": h.value, "unit": h.unit, "ci_low": h.ci_low, "ci_high": h.ci_high,
        "higher_is_better": h.higher_is_better, "passed": h.passed, "text": h.text,
        "flags": [f.name for f in h.flags]})
    return d


def run_data_to_dict(data: RunData) -> dict[str, Any]:
    flags = flag_summary(data.results)
    return {
        "schema": SCHEMA,
        "run": _clean(asdict(data.run)),
        "flagged": {"figures": flags.figures, "flagged": flags.flagged, "counts": flags.counts,
                    "text": flags.text},
        "results": [result_to_dict(r, data.scenarios) for r in data.results],
        "baseline": run_data_to_dict(data.baseline) if data.baseline is not None else None,
        "history": _clean(data.history),
    }


def _nan(x: Any) -> Any:
    return float("nan") if x is None else x


def run_data_from_dict(d: dict[str, Any]) -> RunData:
    """Inverse of :func:`run_data_to_dict` (nulls in statistics and metrics become NaN)."""
    results = []
    for rd in d.get("results", []):
        rd = dict(rd)
        rd["metrics"] = {k: _nan(v) for k, v in rd.get("metrics", {}).items()}
        ms = []
        for m in rd.get("measurements", []):
            m = dict(m)
            if m.get("stats"):
                m["stats"] = {k: (_nan(v) if k != "n" else v) for k, v in m["stats"].items()}
                m["stats"] = asdict(Stats(**m["stats"]))
            m["samples"] = [_nan(v) for v in m.get("samples", [])]
            ms.append(m)
        rd["measurements"] = ms
        results.append(Result.from_dict(rd))
    base = d.get("baseline")
    return RunData(RunInfo(**d["run"]), results,
                   run_data_from_dict(base) if base else None, dict(d.get("history") or {}))


def run_data_from_json(text: str) -> RunData:
    return run_data_from_dict(json.loads(text))


class JsonReporter(Reporter):
    name: ClassVar[str] = "json"
    extension: ClassVar[str] = "json"
    description: ClassVar[str] = "the run and every result as JSON, raw samples kept"

    def render(self, data: RunData) -> str:
        return json.dumps(run_data_to_dict(data), allow_nan=False) + "\n"  # no indent: the C encoder
