"""Load stored results into pandas: one tidy row per figure, across runs (:func:`load`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from dlbench.report.base import RunInfo
from dlbench.report.common import flags_of
from dlbench.result import Measurement, Result
from dlbench.scenarios.figures import (
    ATTACK_FIGURES,
    metric_ci,
    metric_direction,
    parse_attack_metric,
)
from dlbench.store.database import DEFAULT_URL, Store

NO_FLAGS: dict[str, Any] = {"flags": "", "contended": False, "contention": None, "converged": None,
                            "repeats": None}


def flag_columns(m: Measurement) -> dict[str, Any]:
    """A measurement's warnings as frame columns: ``flags`` (comma-joined names, empty when
    unflagged), ``contended``, ``contention``, ``converged``, ``repeats``."""
    names = [f.name for f in flags_of(m)]
    return {"flags": ",".join(names), "contended": "contended" in names,
            "contention": m.meta.get("contention"), "converged": m.meta.get("converged"),
            "repeats": m.meta.get("repeats")}


LEADING_COLUMNS = ("run", "commit", "time", "suite", "key", "scenario", "task", "framework", "device",
                      "status")
"""The frame's leading columns; every cell parameter follows, then the figure's."""


def _cell_columns(r: Result, run: RunInfo) -> dict[str, Any]:
    threads = r.environment.get("threads", r.cell.params.get("threads"))
    return {"run": run.id, "commit": run.git_commit, "time": run.started_at, "suite": run.suite,
            "key": r.cell.key, "scenario": r.cell.scenario, "task": r.cell.task, "framework": r.cell.framework,
            "device": r.cell.device, "status": r.status, **r.cell.params, "threads": threads}


def _run_ids(st: Store, runs: int | Iterable[int] | str | None, suite: str | None) -> list[int]:
    if runs is None:
        return [st.latest_run_id(suite)]
    if runs == "all":
        return sorted(r.id for r in st.runs(suite))
    if isinstance(runs, str):
        raise ValueError(f"runs must be a run id, a list of them, 'all' or None, not {runs!r}")
    return [int(runs)] if isinstance(runs, int) else [int(r) for r in runs]


def _figure_rows(r: Result, samples: bool) -> list[dict[str, Any]]:
    """One row per figure of a cell: its measurements (median, CI, n, flags), then its metrics,
    those with a CI carrying it, and a robustness figure split into metric, attack, epsilon and
    the epsilon's unit."""
    rows: list[dict[str, Any]] = []
    for m in r.measurements:
        s = m.stats
        row = {"kind": "measurement", "metric": m.name, "unit": m.unit, "value": s.median if s else None,
               "ci_low": s.ci_low if s else None, "ci_high": s.ci_high if s else None, "n": s.n if s else 0,
               "higher_is_better": m.higher_is_better, **flag_columns(m)}
        if samples:
            row["samples"] = m.samples
        rows.append(row)
    curve = {(q.get("attack"), q.get("epsilon")): q for q in r.series.get("robustness_curve", [])
             if isinstance(q, dict)}  # one point per attack and epsilon: its unit and its CI
    for name, value in r.metrics.items():
        lo, hi = metric_ci(r, name)
        row = {"kind": "metric", "metric": name, "unit": "", "value": value,
               "ci_low": None if math.isnan(lo) else lo, "ci_high": None if math.isnan(hi) else hi,
               "n": 1, "higher_is_better": metric_direction(name), **NO_FLAGS}
        attack = parse_attack_metric(name)
        if attack is not None:
            figure, row["attack"], mark, row["epsilon"] = attack
            point = curve.get((row["attack"], row["epsilon"]), {})
            row.update(metric=figure, higher_is_better=ATTACK_FIGURES[figure],
                       epsilon_unit="tokens" if mark == "k" else point.get("unit", ""))
            if figure == "robust" and row["ci_low"] is None:  # the curve holds its CI
                row["ci_low"], row["ci_high"] = point.get("ci_low"), point.get("ci_high")
        rows.append(row)
    if not rows:
        rows.append({"kind": "status", "metric": r.status, "unit": "", "value": None, "ci_low": None,
                     "ci_high": None, "n": 0, "higher_is_better": None, **NO_FLAGS})
    return rows


_DTYPES = ((bool, "boolean"), (int, "Int64"), ((int, float), "Float64"), (str, "string"))


def _typed(column: pd.Series, kinds: set[type]) -> pd.Series:
    """A parameter column in the nullable dtype its cells' Python values (of ``kinds``) give: a
    bool, int, float or str parameter, ``<NA>`` where a cell has none; object for lists and
    mixed ones."""
    for accepts, dtype in _DTYPES:
        if kinds and all(issubclass(k, accepts) and (accepts is bool or k is not bool) for k in kinds):
            return column.astype(dtype)
    return column


def load(store: str | Store = DEFAULT_URL, runs: int | Iterable[int] | str | None = None,
         suite: str | None = None, samples: bool = False) -> pd.DataFrame:
    """A tidy DataFrame: one row per figure of every cell of ``runs``.

    ``runs``: a run id, a list of them, ``"all"`` (every run, of ``suite`` when given) or None
    (the latest run, of ``suite`` when given). Columns: ``run``, ``commit``, ``time`` (the run's
    start, UTC), ``suite``, ``key``, ``scenario``, ``task``, ``framework``, ``device``,
    ``status``, every cell parameter as a typed column (pandas' nullable dtypes: a batch size is
    ``Int64`` with ``<NA>`` where a cell has none), ``threads`` (the intra-op thread count the cell
    used, else the requested one), then the figure: ``kind`` ("measurement", "metric" or
    "status"), ``metric``, ``unit``, ``value`` (the median of a measurement), ``ci_low``,
    ``ci_high`` (95%; accuracy and every metric that has one), ``n``, ``higher_is_better``,
    robustness figures' ``attack``, ``epsilon`` and ``epsilon_unit`` (the metric is ``robust``,
    ``success_rate`` or ``attack_time_s``, never a name with the epsilon in it), and the figure's
    warnings (``flags``: comma-joined names of :data:`dlbench.result.FLAGS`, empty when
    unflagged; ``contended``; ``contention``: fraction of wall time spent waiting for a CPU;
    ``converged``; ``repeats``: process repeats); with ``samples=True`` also the raw
    ``samples``. (``df.flags`` is pandas' own attribute: read the column as ``df["flags"]``.)
    """
    st = store if isinstance(store, Store) else Store(store, create=False)
    rows: list[dict[str, Any]] = []
    kinds: dict[str, set[type]] = {}  # each parameter's Python types, before pandas fills the gaps
    for rid in _run_ids(st, runs, suite):
        run = st.run_info(rid)
        for r in st.results(rid):
            cell = _cell_columns(r, run)
            for name in (*r.cell.params, "threads"):
                if cell[name] is not None:
                    kinds.setdefault(name, set()).add(type(cell[name]))
            rows.extend({**cell, **row} for row in _figure_rows(r, samples))
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["time"] = pd.to_datetime(df["time"], unit="s", utc=True)
    for name, types in kinds.items():
        df[name] = _typed(df[name], types)
    first = [c for c in LEADING_COLUMNS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]
