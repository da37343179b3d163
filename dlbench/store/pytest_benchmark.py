"""pytest-benchmark JSON interoperability (the ``--benchmark-json`` / ``.benchmarks`` format).

Export: every time-like measurement of every ``ok`` result becomes one benchmark whose ``data``
holds raw samples in **seconds per call**: unit ``s``/``ms``/``us``/``ns`` samples are converted
to seconds; rate samples (unit ending in ``/s``, e.g. throughput in samples/s) become seconds per
item (``1 / x``); other measurements (GFLOP/s of the canary is a rate and is exported; 0/1
``test_correct`` is not) are left out. Statistics are computed exactly as pytest-benchmark does,
so ``pytest-benchmark compare a.json b.json`` shows the same numbers it would for its own files.
The benchmark is named ``<measurement>[<cell key>]``; ``extra_info`` keeps the key, the original
unit and the cell so nothing is lost.

Import: each benchmark becomes a :class:`Result` of scenario ``speed``, task ``pytest-benchmark``,
framework ``python`` with one measurement ``time`` (s per call, lower is better) holding
``stats.data`` when the file has it (pytest-benchmark stores raw data only with
``--benchmark-json`` or ``--benchmark-save-data``; without it only the summary is kept and a
comparison of that cell is inconclusive).
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any

from dlbench.cell import Cell
from dlbench.errors import DlbenchError
from dlbench.report.base import RunInfo
from dlbench.result import Measurement, Result, Stats

_TIME_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
FILE_VERSION = "5.1.0"  # the pytest-benchmark release whose format is written


def pytest_benchmark_stats(data: Sequence[float]) -> dict[str, Any]:
    """The ``stats`` block pytest-benchmark writes for these per-call times (same formulas)."""
    d = [float(v) for v in data]
    s = sorted(d)
    n = len(d)
    q1, q3 = _quartiles(s)
    iqr = q3 - q1
    mean = statistics.mean(d)
    std = statistics.stdev(d) if n > 1 else 0
    total = sum(d)
    if n == 1:
        ld15, hd15 = d[0], d[0]
    else:
        ld15 = s[bisect_left(s, q1 - 1.5 * iqr)]
        hd15 = s[bisect_right(s, q3 + 1.5 * iqr) - 1]
    std_out = sum(1 for v in d if v < mean - std or v > mean + std)
    iqr_out = sum(1 for v in d if v < q1 - 1.5 * iqr or v > q3 + 1.5 * iqr)
    return {"min": s[0], "max": s[-1], "mean": mean, "stddev": std, "rounds": n,
            "median": statistics.median(d), "iqr": iqr, "q1": q1, "q3": q3,
            "iqr_outliers": iqr_out, "stddev_outliers": std_out,
            "outliers": f"{std_out};{iqr_out}", "ld15iqr": ld15, "hd15iqr": hd15,
            "ops": n / total if total else 0, "total": total}


def _quartiles(s: list[float]) -> tuple[float, float]:
    n = len(s)
    if n == 1:
        return s[0], s[0]
    if n % 2:  # pytest-benchmark's "method 3"
        k, r = n // 4, n % 4
        if r == 1:
            return 0.25 * s[k - 1] + 0.75 * s[k], 0.75 * s[3 * k] + 0.25 * s[3 * k + 1]
        return 0.75 * s[k] + 0.25 * s[k + 1], 0.25 * s[3 * k + 1] + 0.75 * s[3 * k + 2]
    return statistics.median(s[: n // 2]), statistics.median(s[n // 2:])


def _seconds(m: Measurement) -> tuple[list[float], str] | None:
    unit = m.unit.strip()
    if unit in _TIME_UNITS:
        return [v * _TIME_UNITS[unit] for v in m.samples], "s"
    if unit.endswith("/s") and all(v > 0 for v in m.samples):
        item = unit[:-2] or "item"
        return [1.0 / v for v in m.samples], f"s per {item[:-1] if item.endswith('s') else item}"
    return None


def _iso(ts: float | None) -> str:
    utc = _dt.timezone.utc
    t = _dt.datetime.fromtimestamp(ts, utc) if ts else _dt.datetime.now(utc)
    return t.isoformat()


def _machine_info(env: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's machine_info from a dlbench fingerprint
    (:func:`dlbench.measure.environment.fingerprint`); the whole fingerprint is kept too."""
    cpu = env.get("cpu")
    cpu_model = cpu.get("model", "") if isinstance(cpu, dict) else (cpu or "")
    count = cpu.get("count") if isinstance(cpu, dict) else env.get("cpu_count")
    py = str(env.get("python") or "")
    plat = str(env.get("platform", ""))
    return {
        "node": str(env.get("hostname", "")),
        "processor": str(cpu_model),
        "machine": str(env.get("machine", "")),
        "python_compiler": "",
        "python_implementation": str(env.get("implementation", "")),
        "python_implementation_version": py,
        "python_version": py,
        "python_build": ["", ""],
        "release": "",
        "system": plat.split("-", 1)[0] if plat else "",
        "cpu": {"brand_raw": str(cpu_model), "count": count,
                "arch_string_raw": str(env.get("machine", ""))},
        "dlbench_environment": env,
    }


def export_pytest_benchmark(run_info: RunInfo, results: Sequence[Result]) -> dict[str, Any]:
    """A dict in pytest-benchmark's JSON schema (``json.dump`` it to a file)."""
    benchmarks = []
    for r in results:
        if r.status != "ok":
            continue
        for m in r.measurements:
            conv = _seconds(m) if m.samples else None
            if conv is None:
                continue
            data, unit = conv
            name = f"{m.name}[{r.cell.key}]"
            params = {"framework": r.cell.framework, "device": r.cell.device,
                      **{k: v for k, v in r.cell.params.items()
                         if isinstance(v, (str, int, float, bool)) or v is None}}
            benchmarks.append({
                "group": f"{r.cell.scenario}/{r.cell.task}:{m.name}",
                "name": name,
                "fullname": f"dlbench/{run_info.suite}::{name}",
                "params": params,
                "param": r.cell.key.split("[", 1)[1].rstrip("]") if "[" in r.cell.key else "",
                "extra_info": {"dlbench_key": r.cell.key, "measurement": m.name,
                               "unit": unit, "original_unit": m.unit,
                               "higher_is_better": m.higher_is_better,
                               "cell": r.cell.to_dict()},
                "options": {"disable_gc": False, "timer": "perf_counter",
                            "min_rounds": len(data), "max_time": r.duration or 0.0,
                            "min_time": 0.0, "warmup": True},
                "stats": {**pytest_benchmark_stats(data), "data": data,
                          "iterations": int(m.meta.get("iterations", 1) or 1)},
            })
    return {
        "machine_info": _machine_info(run_info.environment),
        "commit_info": {"id": run_info.git_commit or "unknown", "time": None,
                        "author_time": None, "dirty": False, "project": run_info.suite,
                        "branch": "(unknown)"},
        "benchmarks": benchmarks,
        "datetime": _iso(run_info.started_at),
        "version": FILE_VERSION,
    }


def _stats_from(s: dict[str, Any]) -> Stats:
    nan = math.nan
    return Stats(n=int(s.get("rounds", 0)), median=float(s.get("median", nan)),
                 mean=float(s.get("mean", nan)), std=float(s.get("stddev", nan)),
                 min=float(s.get("min", nan)), max=float(s.get("max", nan)), p90=nan, p99=nan,
                 ci_low=nan, ci_high=nan, iqr=float(s.get("iqr", nan)))


def import_pytest_benchmark(d: dict[str, Any]) -> list[Result]:
    """Results (scenario ``speed``, task ``pytest-benchmark``, framework ``python``, measurement
    ``time`` in s per call) from a pytest-benchmark JSON document."""
    if not isinstance(d, dict) or not isinstance(d.get("benchmarks"), list):
        raise DlbenchError("not a pytest-benchmark JSON document: it has no 'benchmarks' list "
                           "(write one with pytest --benchmark-json=FILE)")
    env = {"machine_info": d.get("machine_info", {}), "commit_info": d.get("commit_info", {}),
           "pytest_benchmark_version": d.get("version")}
    out = []
    for b in d["benchmarks"]:
        stats = dict(b.get("stats", {}))
        data = [float(v) for v in stats.pop("data", []) or []]
        name = b.get("fullname") or b.get("name", "?")
        cell = Cell("speed", "pytest-benchmark", "python", "cpu", {"benchmark": name})
        m = Measurement("time", "s", data, None if data else _stats_from(stats),
                        higher_is_better=False,
                        meta={"iterations": stats.get("iterations", 1),
                              "source": "pytest-benchmark"})
        info = {k: b.get(k) for k in ("group", "name", "fullname", "params", "param",
                                      "extra_info", "options")}
        out.append(Result(cell, "ok", [m], metrics={"ops": float(stats.get("ops", math.nan))},
                          details={"pytest_benchmark": {**info, "stats": stats}},
                          environment=env))
    return out
