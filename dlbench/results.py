"""Load stored results into pandas: one row per cell and measurement (or metric)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from dlbench.store import DEFAULT_URL, Store


def load(store: str | Store = DEFAULT_URL, run_id: int | None = None, suite: str | None = None,
         samples: bool = False) -> pd.DataFrame:
    """A tidy DataFrame of a run's results (the latest run of ``suite`` when ``run_id`` is None).

    Columns: run_id, key, scenario, task, framework, device, status, every cell parameter,
    ``kind`` ("measurement" or "metric"), ``name``, ``value`` (the median for measurements),
    ``unit``, ``ci_low``, ``ci_high``, ``n``; with ``samples=True`` also the raw ``samples``.
    """
    st = store if isinstance(store, Store) else Store(store)
    rid = run_id if run_id is not None else st.latest_run_id(suite)
    rows: list[dict[str, Any]] = []
    for r in st.results(rid):
        base = {"run_id": rid, "key": r.cell.key, "scenario": r.cell.scenario, "task": r.cell.task,
                "framework": r.cell.framework, "device": r.cell.device, "status": r.status, **r.cell.params}
        for m in r.measurements:
            s = m.stats
            row = {**base, "kind": "measurement", "name": m.name, "unit": m.unit,
                   "value": s.median if s else None, "ci_low": s.ci_low if s else None,
                   "ci_high": s.ci_high if s else None, "n": s.n if s else 0}
            if samples:
                row["samples"] = m.samples
            rows.append(row)
        for k, v in r.metrics.items():
            rows.append({**base, "kind": "metric", "name": k, "unit": "", "value": v,
                         "ci_low": None, "ci_high": None, "n": 1})
        if not r.measurements and not r.metrics:
            rows.append({**base, "kind": "status", "name": r.status, "unit": "", "value": None,
                         "ci_low": None, "ci_high": None, "n": 0})
    return pd.DataFrame(rows)
