"""Plotly figures for the HTML report, built from results alone (no plotly.js, no network).

Every chart is a :class:`Chart` with a stable ``id`` and a ``kind`` (``throughput``,
``latency``, ``learning_curve``, ``robustness``, ``scaling``, ``history``, ``baseline``)
that the template writes as ``id`` and ``data-chart`` of its ``div.chart``. The history and
baseline charts are in :mod:`dlbench.report.trends` (which builds on the helpers here);
:func:`dlbench.report.html.build_charts` gathers both, by section.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from dlbench.report.common import (
    FLAG_MARK,
    Flag,
    Scenarios,
    as_float,
    config_labels,
    flags_of,
    flags_text,
    fmt_ci,
    fmt_num,
    group_by,
    group_by_task,
    installed_scenarios,
    is_nan,
    measurement_headline,
)
from dlbench.result import Result

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b",
           "#9d755d", "#ff9da6", "#bab0ac")
CURVE_KEYS = ("epoch", "time_s", "epoch_time_s", "train_loss")


@dataclass
class Chart:
    id: str
    kind: str
    title: str
    figure: Any  # plotly.graph_objects.Figure
    group: str = ""  # task (or other heading) the chart belongs to
    wide: bool = False  # spans the whole row of the chart grid

    def to_json(self) -> str:
        import plotly.io as pio

        return pio.to_json(self.figure, validate=False)


def slug(*parts: Any) -> str:
    """A readable HTML-id fragment of ``parts``: lower-case ``[a-z0-9-]`` only (safe in an id and
    a CSS selector), each part cut to 40 characters, ``chart`` when nothing is left.

    Not :func:`dlbench.report.filenames.slug`: that one keeps case, ``.`` and ``_`` and appends a
    digest so that distinct names never share a file; chart ids are stable, digest-free words."""
    words = (re.sub(r"[^a-z0-9]+", "-", str(p).lower()).strip("-")[:40] for p in parts if p != "")
    return "-".join(w for w in words if w) or "chart"


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: Any, title: str, x: str, y: str, *, log_y: bool = False, height: int = 380) -> Any:
    if len(title) > 70:  # keep clear of the mode bar; the full title is the div's aria-label
        title = title[:69] + "…"
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 15}}, template="plotly_white",
        height=height, margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
        xaxis_title=x, yaxis_title=y, hovermode="closest", colorway=list(PALETTE))
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _new_figure() -> Any:
    import plotly.graph_objects as go

    return go.Figure()


def _mix(hex_color: str, other: tuple[int, int, int], t: float) -> str:
    rgb = [int(hex_color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(rgb, other, strict=True))


class Colors:
    """One hue per framework across all the charts of a report; a framework's configurations
    (``torch[eager]``, ``torch[compiled]``) get shades of that hue."""

    SHADES = ((None, 0.0), ((255, 255, 255), 0.45), ((0, 0, 0), 0.3), ((255, 255, 255), 0.7),
              ((0, 0, 0), 0.5))

    def __init__(self) -> None:
        self._hue: dict[str, str] = {}
        self._variants: dict[str, list[str]] = defaultdict(list)
        self._map: dict[str, str] = {}

    def __call__(self, label: str) -> str:
        if label not in self._map:
            fw = label.split("[", 1)[0]
            if fw not in self._hue:
                self._hue[fw] = PALETTE[len(self._hue) % len(PALETTE)]
            variants = self._variants[fw]
            variants.append(label)
            other, t = self.SHADES[(len(variants) - 1) % len(self.SHADES)]
            self._map[label] = self._hue[fw] if other is None else _mix(self._hue[fw], other, t)
        return self._map[label]


def _ok(results: list[Result], chart: str, scenarios: Scenarios | None) -> list[Result]:
    """The finished results whose scenario draws ``chart`` (:attr:`Scenario.charts
    <dlbench.scenarios.base.Scenario.charts>`)."""
    found = installed_scenarios() if scenarios is None else scenarios
    return [r for r in results if r.status == "ok"
            and chart in getattr(found.get(r.cell.scenario), "charts", ())]


def _labels(results: list[Result], exclude: tuple[str, ...] = ()) -> dict[int, str]:
    return dict(zip(map(id, results), config_labels([r.cell for r in results], exclude),
                    strict=True))


def flagged_name(label: str, flags: tuple[Flag, ...]) -> str:
    """A bar's or box's axis label, marked when its figure is flagged (the hover says why)."""
    return f"{label} {FLAG_MARK}" if flags else label


def throughput_charts(results: list[Result], color: Colors,
                     scenarios: Scenarios | None = None) -> list[Chart]:
    """Per task and mode: one panel per batch size (own y axis), one bar per framework
    configuration with its 95% CI as error bar."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    charts = []
    for task, rs in group_by_task(_ok(results, "throughput", scenarios)).items():
        rs = [r for r in rs if measurement_headline(r, "throughput")]
        for (mode,), group in group_by(rs, "mode").items():
            labels = _labels(group, ("mode", "batch_size"))
            panels = group_by(group, "batch_size")
            title = f"Throughput — {task}" + (f" ({mode})" if mode else "")
            if len(panels) > MAX_PANELS:
                charts.append(_by_batch(group, labels, color, title, f"{task}-{mode or ''}", "throughput",
                                        THROUGHPUT_AXIS))
                continue
            fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.08,
                                subplot_titles=[f"batch size {fmt_num(bs)}" for (bs,) in panels])
            for col, panel in enumerate(panels.values(), 1):
                panel = sorted(panel, key=lambda r: labels[id(r)])
                hs = [h for h in (measurement_headline(r, "throughput") for r in panel) if h]
                names = [flagged_name(labels[id(r)], h.flags) for r, h in zip(panel, hs, strict=True)]
                fig.add_trace(go.Bar(
                    x=names, y=[h.value for h in hs],
                    marker={"color": [color(labels[id(r)]) for r in panel],
                            "pattern": {"shape": ["/" if h.flags else "" for h in hs]}},
                    error_y={"type": "data", "symmetric": False,
                             "array": [0 if is_nan(h.ci_high) else h.ci_high - h.value
                                       for h in hs],
                             "arrayminus": [0 if is_nan(h.ci_low) else h.value - h.ci_low
                                            for h in hs]},
                    customdata=[[fmt_ci(h.ci_low, h.ci_high), h.flags_text] for h in hs],
                    hovertemplate="%{x}<br>%{y:.4g} samples/s %{customdata[0]}<br>"
                                  "%{customdata[1]}<extra></extra>",
                    showlegend=False), row=1, col=col)
            _layout(fig, title, "", THROUGHPUT_AXIS, height=420)
            fig.update_layout(xaxis_title=None)
            fig.update_xaxes(tickangle=-35, automargin=True)
            charts.append(Chart(f"chart-throughput-{slug(task, mode or '')}", "throughput", title,
                                fig, task, wide=len(panels) > 2))
    return charts


MAX_PANELS = 6
"""Batch sizes drawn as panels of bars; more become one line chart over batch size."""

THROUGHPUT_AXIS = "samples/s ↑ (median, 95% CI; higher is better)"


def _by_batch(group: list[Result], labels: dict[int, str], color: Colors, title: str, name: str,
              measurement: str, axis: str) -> Chart:
    """A measurement against batch size (log axes), one line per framework configuration with
    its 95% CI as error bars: the form of the throughput and latency charts for many cells."""
    import plotly.graph_objects as go

    fig = _new_figure()
    by_label: dict[str, list[Result]] = {}
    for r in group:
        by_label.setdefault(labels[id(r)], []).append(r)
    for label, rs in sorted(by_label.items()):
        rs.sort(key=lambda r: float(r.cell.params.get("batch_size", 0) or 0))
        hs = [measurement_headline(r, measurement) for r in rs]
        pts = [(r, h) for r, h in zip(rs, hs, strict=True) if h is not None]
        fig.add_trace(go.Scatter(
            x=[r.cell.params.get("batch_size") for r, _ in pts], y=[h.value for _, h in pts],
            mode="lines+markers", name=label, line={"color": color(label)},
            error_y={"type": "data", "symmetric": False,
                     "array": [0 if is_nan(h.ci_high) else h.ci_high - h.value for _, h in pts],
                     "arrayminus": [0 if is_nan(h.ci_low) else h.value - h.ci_low for _, h in pts]},
            customdata=[[fmt_ci(h.ci_low, h.ci_high), h.flags_text] for _, h in pts],
            hovertemplate="batch %{x}: %{y:.4g} %{customdata[0]}<br>%{customdata[1]}"))
    _layout(fig, title, "batch size", axis, height=420)
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return Chart(f"chart-{measurement}-{slug(name)}", measurement, title, fig, str(group[0].cell.task),
                 wide=True)


MAX_BOXES = 40
"""Latency distributions drawn as boxes; more cells become one line chart over batch size."""


def latency_charts(results: list[Result], color: Colors,
                     scenarios: Scenarios | None = None) -> list[Chart]:
    import plotly.graph_objects as go

    charts = []
    for task, rs in group_by_task(_ok(results, "latency", scenarios)).items():
        rs = [r for r in rs if (m := r.measurement("latency")) is not None and m.samples]
        for (mode,), group in group_by(rs, "mode").items():
            title = f"Latency — {task}" + (f" ({mode})" if mode else "")
            unit = next((r.measurement("latency").unit for r in group  # type: ignore[union-attr]
                         if r.measurement("latency") is not None), "ms")
            axis = f"latency ({unit}) ↓ (log axis; lower is better)"
            if len(group) > MAX_BOXES:
                charts.append(_by_batch(group, _labels(group, ("mode", "batch_size")), color, title,
                                        f"{task}-{mode or ''}", "latency", axis))
                continue
            labels = _labels(group, ("mode",))
            fig = _new_figure()
            for r in sorted(group, key=lambda r: labels[id(r)]):
                m = r.measurement("latency")
                assert m is not None
                flags = flags_of(m)
                fig.add_trace(go.Box(y=m.samples, name=flagged_name(labels[id(r)], flags),
                                     boxpoints="outliers", marker_color=color(labels[id(r)]),
                                     boxmean=True, hovertext=flags_text(flags) or None))
            _layout(fig, title, "", axis)
            fig.update_layout(showlegend=False)
            fig.update_yaxes(type="log")
            charts.append(Chart(f"chart-latency-{slug(task, mode or '')}", "latency", title, fig,
                                task))
    return charts


def _curve_metric(rows: list[dict[str, Any]], headline: str | None = None) -> str | None:
    if headline and any(headline in r for r in rows):
        return headline
    for row in rows:
        for k in row:
            if k not in CURVE_KEYS and isinstance(row[k], (int, float)):
                return k
    return "train_loss" if any("train_loss" in r for r in rows) else None


def learning_curve_charts(results: list[Result], color: Colors,
                     scenarios: Scenarios | None = None) -> list[Chart]:
    import plotly.graph_objects as go

    charts = []
    for task, rs in group_by_task(_ok(results, "learning", scenarios)).items():
        rs = [r for r in rs if r.series.get("learning_curve")]
        if not rs:
            continue
        labels = _labels(rs)
        metric = _curve_metric([row for r in rs for row in r.series["learning_curve"]],
                               rs[0].details.get("headline"))
        plots = [("epoch", metric, "epoch"), ("time_s", metric, "time")]
        if metric != "train_loss" and any("train_loss" in row for r in rs
                                          for row in r.series["learning_curve"]):
            plots.append(("epoch", "train_loss", "loss"))
        for x_key, y_key, tag in plots:
            if y_key is None:
                continue
            fig = _new_figure()
            curves = {id(r): [row for row in r.series["learning_curve"]
                              if not is_nan(as_float(row.get(x_key))) and y_key in row] for r in rs}
            xs_all = [as_float(row[x_key]) for rows in curves.values() for row in rows]
            for r in rs:
                rows = curves[id(r)]
                name, line = labels[id(r)], {"color": color(labels[id(r)])}
                if len(rows) == 1 and x_key == "epoch" and len(set(xs_all)) > 1:
                    # one fit (a classic baseline): its figure as a reference line across the
                    # epochs of the others, not a lone dot at epoch 1
                    y = as_float(rows[0][y_key])
                    fig.add_trace(go.Scatter(x=[min(xs_all), max(xs_all)], y=[y, y], mode="lines",
                                             name=f"{name} (one fit)", line={**line, "dash": "dash"}))
                    continue
                fig.add_trace(go.Scatter(x=[row[x_key] for row in rows],
                                         y=[as_float(row[y_key]) for row in rows],
                                         mode="lines+markers", name=name, line=line,
                                         marker={"size": 10 if len(rows) == 1 else 6}))
            x_title = "epoch" if x_key == "epoch" else "training time (s)"
            title = f"{y_key} vs {x_title} — {task}"
            charts.append(Chart(f"chart-learning-{slug(task, tag)}", "learning_curve", title,
                                _layout(fig, title, x_title, y_key), task))
    return charts


def robustness_charts(results: list[Result], color: Colors,
                     scenarios: Scenarios | None = None) -> list[Chart]:
    import plotly.graph_objects as go

    charts = []
    for task, rs in group_by_task(_ok(results, "robustness", scenarios)).items():
        rs = [r for r in rs if r.series.get("robustness_curve")]
        if not rs:
            continue
        labels = _labels(rs)
        attacks = sorted({str(p.get("attack", "")) for r in rs
                          for p in r.series["robustness_curve"]})
        for attack in attacks:
            fig = _new_figure()
            for r in rs:
                pts = sorted((p for p in r.series["robustness_curve"]
                              if str(p.get("attack", "")) == attack),
                             key=lambda p: as_float(p.get("epsilon")))
                if not pts:
                    continue
                label, c = labels[id(r)], color(labels[id(r)])
                xs = [as_float(p.get("epsilon")) for p in pts]
                lo = [as_float(p.get("ci_low")) for p in pts]
                hi = [as_float(p.get("ci_high")) for p in pts]
                if not all(math.isnan(v) for v in lo + hi):
                    fig.add_trace(go.Scatter(x=xs, y=hi, mode="lines", line={"width": 0},
                                             showlegend=False, hoverinfo="skip", legendgroup=label))
                    fig.add_trace(go.Scatter(x=xs, y=lo, mode="lines", line={"width": 0},
                                             fill="tonexty", fillcolor=_rgba(c, 0.18),
                                             showlegend=False, hoverinfo="skip", legendgroup=label))
                # measured budgets are markers; a dotted line only joins them (nothing was
                # measured between), and two budgets get no line at all
                fig.add_trace(go.Scatter(x=xs, y=[as_float(p.get("metric")) for p in pts],
                                         mode="lines+markers" if len(pts) > 2 else "markers",
                                         name=label, line={"color": c, "dash": "dot"},
                                         marker={"size": 9}, legendgroup=label))
            units = {str(p["unit"]) for r in rs for p in r.series["robustness_curve"]
                     if str(p.get("attack", "")) == attack and p.get("unit")}
            x_title = f"epsilon ({units.pop()})" if len(units) == 1 else "epsilon (the task's unit)"
            title = f"Robustness — {task}" + (f" ({attack})" if attack else "")
            charts.append(Chart(f"chart-robustness-{slug(task, attack)}", "robustness", title,
                                _layout(fig, title, x_title, "metric under attack (95% CI band)"), task))
    return charts


def scaling_charts(results: list[Result], color: Colors,
                     scenarios: Scenarios | None = None) -> list[Chart]:
    import plotly.graph_objects as go

    charts = []
    for task, rs in group_by_task(_ok(results, "scaling", scenarios)).items():
        rs = [r for r in rs if r.series.get("scaling")]
        if not rs:
            continue
        labels = _labels(rs)
        axes = sorted({str(p.get("axis", "")) for r in rs for p in r.series["scaling"]})
        for axis in axes:
            pts_of = {id(r): sorted((p for p in r.series["scaling"]
                                     if str(p.get("axis", "")) == axis),
                                    key=lambda p: as_float(p.get("value"))) for r in rs}
            has_tput = any(not is_nan(as_float(p.get("throughput")))
                           for pts in pts_of.values() for p in pts)
            y_key = "throughput" if has_tput else "metric"
            views = [(y_key, "samples/s" if has_tput else "metric")]
            if any(not is_nan(as_float(p.get("efficiency")))
                   for pts in pts_of.values() for p in pts):
                views.append(("efficiency", "scaling efficiency"))
            for key, y_title in views:
                fig = _new_figure()
                for r in rs:
                    pts = [p for p in pts_of[id(r)] if not is_nan(as_float(p.get(key)))]
                    if pts:
                        fig.add_trace(go.Scatter(
                            x=[as_float(p.get("value")) for p in pts],
                            y=[as_float(p.get(key)) for p in pts], mode="lines+markers",
                            name=labels[id(r)], line={"color": color(labels[id(r)])}))
                title = f"Scaling — {task}: {key} vs {axis}"
                charts.append(Chart(f"chart-scaling-{slug(task, axis, key)}", "scaling", title,
                                    _layout(fig, title, axis, y_title), task))
    return charts
