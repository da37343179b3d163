"""Load stored results into pandas: one row per cell and measurement (or metric)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from dlbench.report.common import flags_of
from dlbench.result import Measurement, Result
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


def _cell_columns(r: Result, run_id: int | None) -> dict[str, Any]:
    threads = r.environment.get("threads", r.cell.params.get("threads"))
    return {"run_id": run_id, "key": r.cell.key, "scenario": r.cell.scenario, "task": r.cell.task,
            "framework": r.cell.framework, "device": r.cell.device, "status": r.status,
            **r.cell.params, "threads": threads}


def load(store: str | Store = DEFAULT_URL, run_id: int | None = None, suite: str | None = None,
         samples: bool = False) -> pd.DataFrame:
    """A tidy DataFrame of a run's results (the latest run of ``suite`` when ``run_id`` is None).

    Columns: run_id, key, scenario, task, framework, device, status, every cell parameter,
    ``threads`` (the intra-op thread count the cell used, else the requested one), ``kind``
    ("measurement" or "metric"), ``name``, ``value`` (the median for measurements), ``unit``,
    ``ci_low``, ``ci_high``, ``n``, the figure's warnings (``flags``: comma-joined names of
    :data:`dlbench.result.FLAGS`, empty when unflagged; ``contended``; ``contention``: fraction
    of wall time spent waiting for a CPU; ``converged``; ``repeats``: process repeats); with
    ``samples=True`` also the raw ``samples``. (``df.flags`` is pandas' own attribute: read the
    column as ``df["flags"]``.)
    """
    st = store if isinstance(store, Store) else Store(store)
    rid = run_id if run_id is not None else st.latest_run_id(suite)
    rows: list[dict[str, Any]] = []
    for r in st.results(rid):
        base = _cell_columns(r, rid)
        for m in r.measurements:
            s = m.stats
            row = {**base, "kind": "measurement", "name": m.name, "unit": m.unit,
                   "value": s.median if s else None, "ci_low": s.ci_low if s else None,
                   "ci_high": s.ci_high if s else None, "n": s.n if s else 0, **flag_columns(m)}
            if samples:
                row["samples"] = m.samples
            rows.append(row)
        for k, v in r.metrics.items():
            rows.append({**base, "kind": "metric", "name": k, "unit": "", "value": v,
                         "ci_low": None, "ci_high": None, "n": 1, **NO_FLAGS})
        if not r.measurements and not r.metrics:
            rows.append({**base, "kind": "status", "name": r.status, "unit": "", "value": None,
                         "ci_low": None, "ci_high": None, "n": 0, **NO_FLAGS})
    return pd.DataFrame(rows)
