"""pytest-benchmark JSON interoperability (the ``--benchmark-json`` / ``.benchmarks`` format).

Export: every time-like measurement of every ``ok`` result becomes one benchmark whose ``data``
holds raw samples in **seconds per call**: unit ``s``/``ms``/``us``/``ns`` samples are converted
to seconds; rate samples (unit ending in ``/s``, e.g. throughput in samples/s) become seconds per
item (``1 / x``); other measurements (GFLOP/s of the canary is a rate and is exported; 0/1
``test_correct`` is not) are left out. Statistics are computed exactly as pytest-benchmark does
(:func:`pytest_benchmark_stats`), except ``ops``: it is dlbench's throughput
(:func:`ops_per_second`, the median of the per-sample rates; pytest-benchmark's own is
``rounds / total``, i.e. 1 / mean), so the OPS a reader sees is the figure dlbench reports.
A test timed by the ``dlbench_benchmark`` fixture is named as pytest shows it
(``test_matmul[64]``, ``fullname`` its node id); other cells are named
``<measurement>[<cell key>]``. ``extra_info`` keeps the dlbench key, the measurement, the original
unit, the direction, the flags and the cell, so nothing is lost.

Import: a benchmark written by the export gets its dlbench cell and measurement back (the same
key, name, unit and samples, so ``dlbench compare`` matches it with the original run; several
measurements of one cell become one result again). Any other benchmark becomes a
:class:`Result` of scenario ``speed``, task ``pytest-benchmark``, framework ``python`` with one
measurement ``time`` (s per call, lower is better). Both hold ``stats.data`` when the file has it
(pytest-benchmark stores raw data only with ``--benchmark-json`` or ``--benchmark-save-data``;
without it only the summary is kept and a comparison of that cell is inconclusive).
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
PYTEST_TASK = "pytest"  # the task of the cells the dlbench_benchmark fixture times


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
    conv = _per_call(m.unit)
    if conv is None or (conv[0] == "rate" and not all(v > 0 for v in m.samples)):
        return None
    kind, factor, unit = conv
    if kind == "time":
        return [v * factor for v in m.samples], unit
    return [1.0 / v for v in m.samples], unit


def _per_call(unit: str) -> tuple[str, float, str] | None:
    """How samples in ``unit`` become seconds per call: ``("time", factor, "s")`` (multiply) or
    ``("rate", 1.0, "s per <item>")`` (invert); None: not time-like."""
    u = unit.strip()
    if u in _TIME_UNITS:
        return "time", _TIME_UNITS[u], "s"
    if u.endswith("/s"):
        item = u[:-2] or "item"
        return "rate", 1.0, f"s per {item[:-1] if item.endswith('s') else item}"
    return None


def ops_per_second(m: Measurement) -> float:
    """Operations (calls, or the items of a rate unit) per second as dlbench reports throughput:
    the median of the per-sample rates. For a rate measurement (``samples/s``) that is its
    figure, ``stats.median``; for a time measurement it is the median of ``1 / seconds``
    (the speed scenario's throughput is ``batch / seconds per step`` per sample, its figure the
    median). NaN when the measurement is not time-like or has no positive samples."""
    conv = _per_call(m.unit)
    if conv is None:
        return math.nan
    kind, factor, _ = conv
    if kind == "rate":
        return float(m.stats.median) if m.stats is not None else math.nan
    rates = [1.0 / (v * factor) for v in m.samples if v > 0]
    return float(statistics.median(rates)) if rates else math.nan


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


def _names(r: Result, m: Measurement, suite: str) -> tuple[str, str, str | None]:
    """(name, fullname, group): a pytest test's own id and node id (``test_matmul[64]``) when the
    ``dlbench_benchmark`` fixture timed it, else ``<measurement>[<cell key>]``."""
    name, fullname = r.details.get("name"), r.details.get("fullname")
    if isinstance(name, str) and isinstance(fullname, str) and name and fullname:
        suffix = "" if m.name == "time" else f":{m.name}"
        return name + suffix, fullname + suffix, r.details.get("group")
    key_name = f"{m.name}[{r.cell.key}]"
    return key_name, f"dlbench/{suite}::{key_name}", f"{r.cell.scenario}/{r.cell.task}:{m.name}"


def export_benchmark(r: Result, m: Measurement, suite: str) -> dict[str, Any] | None:
    """One benchmark entry of pytest-benchmark's JSON for measurement ``m`` of ``r`` (None when
    ``m`` is not time-like or has no samples)."""
    conv = _seconds(m) if m.samples else None
    if conv is None:
        return None
    data, unit = conv
    name, fullname, group = _names(r, m, suite)
    params = {"framework": r.cell.framework, "device": r.cell.device,
              **{k: v for k, v in r.cell.params.items()
                 if isinstance(v, (str, int, float, bool)) or v is None}}
    user = r.details.get("extra_info")
    extra = {**(user if isinstance(user, dict) else {}),
             "dlbench_key": r.cell.key, "measurement": m.name, "unit": unit,
             "original_unit": m.unit, "higher_is_better": m.higher_is_better,
             "flags": m.flags, "cell": r.cell.to_dict()}
    stats = {**pytest_benchmark_stats(data), "ops": ops_per_second(m)}
    return {
        "group": group,
        "name": name,
        "fullname": fullname,
        "params": params,
        "param": r.cell.key.split("[", 1)[1].rstrip("]") if "[" in r.cell.key else "",
        "extra_info": extra,
        "options": {"disable_gc": False, "timer": "perf_counter",
                    "min_rounds": len(data), "max_time": r.duration or 0.0,
                    "min_time": 0.0, "warmup": True},
        "stats": {**stats, "data": data, "iterations": int(m.meta.get("iterations", 1) or 1)},
    }


def export_pytest_benchmark(run_info: RunInfo, results: Sequence[Result]) -> dict[str, Any]:
    """A dict in pytest-benchmark's JSON schema (``json.dump`` it to a file)."""
    benchmarks = []
    for r in results:
        if r.status != "ok":
            continue
        for m in r.measurements:
            b = export_benchmark(r, m, run_info.suite)
            if b is not None:
                benchmarks.append(b)
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


def _restore(b: dict[str, Any], data: list[float], stats: dict[str, Any],
             where: str) -> tuple[Cell, Measurement] | None:
    """The dlbench cell and measurement an exported benchmark came from (None: not ours)."""
    extra = b.get("extra_info")
    if not isinstance(extra, dict) or not isinstance(extra.get("cell"), dict):
        return None
    try:
        cell = Cell.from_dict(extra["cell"])
        name, unit = str(extra["measurement"]), str(extra["original_unit"])
        higher = bool(extra["higher_is_better"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DlbenchError(f"{where}: extra_info.cell is not a dlbench cell ({type(exc).__name__}: "
                           f"{exc}): remove extra_info.cell to import it as a plain benchmark") from None
    conv = _per_call(unit)
    if conv is None:
        raise DlbenchError(f"{where}: extra_info.original_unit {unit!r} is not a time or rate unit: "
                           "remove extra_info.cell to import it as a plain benchmark")
    kind, factor, _ = conv

    def back(v: float) -> float:
        return v / factor if kind == "time" else (1.0 / v if v else math.inf)

    flags = [f for f in extra.get("flags") or [] if isinstance(f, str)]
    meta: dict[str, Any] = {"iterations": stats.get("iterations", 1), "source": "pytest-benchmark"}
    if flags:
        meta["flags"] = flags
    if data:
        return cell, Measurement(name, unit, [back(v) for v in data], higher_is_better=higher,
                                 meta=meta)
    s = _stats_from(stats)
    lo, hi = (s.min, s.max) if kind == "time" else (s.max, s.min)
    nan = math.nan
    summary = Stats(n=s.n, median=back(s.median), mean=back(s.mean) if kind == "time" else nan,
                    std=back(s.std) if kind == "time" else nan, min=back(lo), max=back(hi),
                    p90=nan, p99=nan, ci_low=nan, ci_high=nan,
                    iqr=back(s.iqr) if kind == "time" else nan)
    return cell, Measurement(name, unit, [], summary, higher_is_better=higher, meta=meta)


def import_pytest_benchmark(d: dict[str, Any]) -> list[Result]:
    """Results from a pytest-benchmark JSON document: the dlbench cells and measurements of a
    file this module exported (one result per cell), scenario ``speed``, task
    ``pytest-benchmark``, framework ``python``, measurement ``time`` in s per call for others."""
    if not isinstance(d, dict) or not isinstance(d.get("benchmarks"), list):
        raise DlbenchError("not a pytest-benchmark JSON document: it has no 'benchmarks' list "
                           "(write one with pytest --benchmark-json=FILE)")
    env = {"machine_info": d.get("machine_info", {}), "commit_info": d.get("commit_info", {}),
           "pytest_benchmark_version": d.get("version")}
    out: list[Result] = []
    by_key: dict[str, Result] = {}
    for i, b in enumerate(d["benchmarks"]):
        stats = dict(b.get("stats", {}))
        data = [float(v) for v in stats.pop("data", []) or []]
        name = b.get("fullname") or b.get("name", "?")
        info = {k: b.get(k) for k in ("group", "name", "fullname", "params", "param",
                                      "extra_info", "options")}
        ops = float(stats.get("ops", math.nan))
        restored = _restore(b, data, stats, f"benchmark {i + 1} ({str(name)[:80]!r})")
        if restored is not None:
            cell, m = restored
            prev = by_key.get(cell.key)
            if prev is not None:
                prev.measurements.append(m)
                continue
            named = {k: b.get(k) for k in ("name", "fullname", "group")} if cell.task == PYTEST_TASK else {}
            r = Result(cell, "ok", [m], details={"pytest_benchmark": {**info, "stats": stats}, **named},
                       environment=env)
            by_key[cell.key] = r
            out.append(r)
            continue
        cell = Cell("speed", "pytest-benchmark", "python", "cpu", {"benchmark": name})
        m = Measurement("time", "s", data, None if data else _stats_from(stats),
                        higher_is_better=False,
                        meta={"iterations": stats.get("iterations", 1),
                              "source": "pytest-benchmark"})
        out.append(Result(cell, "ok", [m], metrics={"ops": ops},
                          details={"pytest_benchmark": {**info, "stats": stats}},
                          environment=env))
    return out
