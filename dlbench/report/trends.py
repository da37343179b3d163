"""Charts across runs: a cell's headline figure over its history, and this run against a
baseline run."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

from dlbench.report.charts import PALETTE, Chart, _layout, _new_figure, flagged_name, slug
from dlbench.report.common import Scenarios, as_float, headline, is_nan, with_flags
from dlbench.result import Result

FLAGGED_COLOR = "#bab0ac"  # a flagged ratio is neither better nor worse


def history_points(rows: list[dict[str, Any]], figure: str) -> list[dict[str, Any]]:
    """One ``{run_id, commit, value, ci_low, ci_high}`` point per run from history rows.

    Rows may be one per (run, measurement), as the store gives them (``name``, ``median``,
    ``ci_low``, ``ci_high``, ``metrics``, ``git_commit``, ``status``), or already one per run
    (``run_id``, ``commit``, ``median``); only the measurement or metric ``figure`` is kept."""
    points: dict[Any, dict[str, Any]] = {}
    for row in rows:
        if row.get("status") not in (None, "ok"):
            continue
        value, lo, hi = float("nan"), float("nan"), float("nan")
        name = row.get("name")
        if name is not None or "name" in row:
            if name == figure:
                value = as_float(row.get("median"))
                lo, hi = as_float(row.get("ci_low")), as_float(row.get("ci_high"))
            else:
                metrics = row.get("metrics") or {}
                if isinstance(metrics, str):
                    try:
                        metrics = json.loads(metrics)
                    except ValueError:
                        metrics = {}
                value = as_float(metrics.get(figure)) if isinstance(metrics, dict) else value
        else:
            value = as_float(row.get("median"))
        run = row.get("run_id")
        if is_nan(value) or (run in points and not is_nan(points[run]["value"])):
            continue
        points[run] = {"run_id": run, "commit": row.get("commit") or row.get("git_commit") or "",
                       "value": value, "ci_low": lo, "ci_high": hi}
    return sorted(points.values(), key=lambda p: as_float(p["run_id"]))


MAX_HISTORY_LINES = 20
"""Cells a history chart draws: those whose headline moved most from their first run to this one."""


def _change(pts: list[dict[str, Any]]) -> float:
    first, last = as_float(pts[0]["value"]), as_float(pts[-1]["value"])
    return abs(math.log(last / first)) if first > 0 and last > 0 else 0.0


def history_charts(results: list[Result], history: dict[str, list[dict[str, Any]]],
                   run_id: int, scenarios: Scenarios | None = None) -> list[Chart]:
    """Per scenario and task: the headline figure of each cell across runs (this run last);
    shown only for cells with two runs or more."""
    import plotly.graph_objects as go

    current = {r.cell.key: r for r in results}
    by_group: dict[str, list[str]] = defaultdict(list)
    for key in sorted(history):
        by_group["/".join(key.split("/")[:2])].append(key)
    charts = []
    for group, keys in by_group.items():
        fig, values = _new_figure(), []
        lines: list[tuple[str, list[dict[str, Any]]]] = []
        for key in keys:
            r = current.get(key)
            h = headline(r, scenarios) if r is not None and r.status == "ok" else None
            pts = history_points(history[key], h.name if h else "throughput")
            if h is not None and not any(p["run_id"] == run_id for p in pts):
                pts.append({"run_id": run_id, "commit": with_flags("this run", h.flags),
                            "value": h.value,
                            "ci_low": h.ci_low, "ci_high": h.ci_high})
            if len(pts) >= 2:
                lines.append((key, pts))
        shown = sorted(lines, key=lambda kp: -_change(kp[1]))[:MAX_HISTORY_LINES]
        for key, pts in sorted(shown):
            values += [p["value"] for p in pts]
            fig.add_trace(go.Scatter(
                x=[p["run_id"] for p in pts], y=[p["value"] for p in pts],
                text=[str(p["commit"])[:12] if p["run_id"] != run_id else str(p["commit"])
                      for p in pts], mode="lines+markers",
                name=key.split("/", 2)[-1],
                hovertemplate="run %{x} (%{text})<br>%{y:.4g}<extra></extra>"))
        if not fig.data:
            continue
        pos = [v for v in values if v > 0]
        title = f"History — {group}"
        if len(lines) > len(shown):
            title += f" (the {len(shown)} of {len(lines)} cells that moved most; report.json holds all)"
        _layout(fig, title, "run", "headline median",
                log_y=bool(pos) and max(pos) / min(pos) > 50)
        fig.update_xaxes(tickformat="d")
        charts.append(Chart(f"chart-history-{slug(group)}", "history", title, fig, group))
    return charts


def baseline_chart(results: list[Result], baseline: list[Result],
                   scenarios: Scenarios | None = None) -> Chart | None:
    import plotly.graph_objects as go

    base = {r.cell.key: r for r in baseline if r.status == "ok"}
    names, ratios, colors = [], [], []
    for r in sorted(results, key=lambda r: r.cell.key):
        b = base.get(r.cell.key)
        hc = headline(r, scenarios) if r.status == "ok" else None
        hb = headline(b, scenarios) if b is not None else None
        if hc is None or hb is None or not hb.value or is_nan(hb.value) or is_nan(hc.value):
            continue
        ratio = hc.value / hb.value
        names.append(flagged_name(r.cell.key, hc.flags + hb.flags))
        ratios.append(ratio)
        colors.append(FLAGGED_COLOR if hc.flags or hb.flags else
                      PALETTE[2] if (ratio >= 1) == hc.higher_is_better else PALETTE[3])
    if not names:
        return None
    fig = go.Figure(go.Bar(y=names, x=[x - 1 for x in ratios], base=1, orientation="h",
                           marker_color=colors, customdata=ratios,
                           hovertemplate="%{y}<br>ratio %{customdata:.3f}<extra></extra>"))
    title = "This run / baseline (headline medians; green is better)"
    if FLAGGED_COLOR in colors:
        title = "This run / baseline (headline medians; green better, grey ⚠ flagged)"
    _layout(fig, title, "ratio", "", height=max(260, 60 + 26 * len(names)))
    fig.update_layout(margin={"l": 20, "r": 20, "t": 50, "b": 50}, showlegend=False)
    fig.update_yaxes(automargin=True, autorange="reversed")
    fig.add_vline(x=1, line_color="#888", line_width=1)
    return Chart("chart-baseline", "baseline", title, fig, "baseline", wide=True)
