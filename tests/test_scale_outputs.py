"""Outputs that stay readable (and fast) at thousands of cells: terminal tables show what needs a
look first and count the rest; many batch sizes become one chart over batch size, many latency
distributions one line per configuration. The files keep every row (tests/test_reporters.py)."""

from __future__ import annotations

import io
import types

import numpy as np
from rich.console import Console

from dlbench.cli.ci import comparison_table
from dlbench.report.base import RunData, RunInfo
from dlbench.report.charts import MAX_BOXES, MAX_PANELS, Colors, latency_charts, throughput_charts
from dlbench.report.terminal import build_table, print_report
from dlbench.scenarios.speed import SpeedScenario

try:
    from tests.report_data import speed
except ImportError:  # tests/ itself on sys.path (pytest's default "prepend" import mode)
    from report_data import speed


def _text(renderable: object) -> str:
    c = Console(file=io.StringIO(), width=200, color_system=None)
    c.print(renderable)
    return c.file.getvalue()  # type: ignore[attr-defined]


def _run(results: list) -> RunData:
    return RunData(RunInfo(1, "scale", 0.0, 1.0, None, {}, "finished", {}), results,
                   scenarios={"speed": SpeedScenario()})


def test_run_table_shows_failures_first_and_counts_the_rest():
    rng = np.random.default_rng(0)
    results = [speed(f"fw{i}", "infer", 8, "eager", 100.0, rng) for i in range(6)]
    results.append(speed("zz-broken", "infer", 8, "eager", 100.0, rng, status="failed", error="boom"))
    text = _text(build_table(_run(results), limit=3))
    assert "zz-broken" in text  # last by key, first by status
    assert text.count("speed/vision/") == 3
    assert "4 more cells not shown (ok: 4)" in text and "--all" in text
    full = _text(build_table(_run(results)))
    assert full.count("speed/vision/") == 7 and "not shown" not in full
    out = io.StringIO()
    print_report(_run(results), Console(file=out, width=200, color_system=None), limit=None)
    assert out.getvalue().count("speed/vision/") >= 7


def _row(key: str, verdict: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(key=key, name="throughput", verdict=verdict, scale="ratio", ratio=1.0,
                                 ci_low=0.9, ci_high=1.1, base_median=1.0, head_median=1.0, q_value=0.5,
                                 reason="r", delta=0.0)


def test_comparison_table_puts_regressions_first_and_counts_the_rest():
    rows = [_row(f"cell{i:02d}", "unchanged") for i in range(10)] + [_row("cell99", "regression")]
    text = _text(comparison_table(rows, "a -> b", limit=4))
    assert text.index("cell99") < text.index("cell00")
    assert "7 more rows not shown (7 unchanged)" in text
    assert "cell09" in _text(comparison_table(rows, "a -> b", limit=None))


def test_many_batch_sizes_are_one_chart_over_batch_size():
    rng = np.random.default_rng(1)
    sizes = [2**k for k in range(MAX_PANELS + 2)]
    results = [speed(fw, "infer", bs, "eager", 100.0 * bs, rng) for fw in ("torch", "jax") for bs in sizes]
    (chart,) = throughput_charts(results, Colors(), {"speed": SpeedScenario()})
    fig = chart.figure
    assert len(fig.data) == 2 and {t.type for t in fig.data} == {"scatter"}
    assert list(fig.data[0].x) == sizes
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    few = throughput_charts([r for r in results if r.cell.params["batch_size"] <= 4], Colors(),
                            {"speed": SpeedScenario()})
    assert {t.type for t in few[0].figure.data} == {"bar"}  # a few batch sizes keep their panels


def test_many_latency_distributions_become_lines_and_latency_is_on_a_log_axis():
    rng = np.random.default_rng(2)
    few = [speed(fw, "infer", 1, v, 100.0, rng) for fw in ("torch", "jax") for v in ("eager", "graph")]
    (chart,) = latency_charts(few, Colors(), {"speed": SpeedScenario()})
    assert {t.type for t in chart.figure.data} == {"box"} and chart.figure.layout.yaxis.type == "log"
    many = []
    for i in range(MAX_BOXES + 1):
        r = speed("torch", "infer", 1, "eager", 100.0, rng)
        r.cell.params["batch_size"] = i + 1  # one latency distribution per batch size
        many.append(r)
    (chart,) = latency_charts(many, Colors(), {"speed": SpeedScenario()})
    assert {t.type for t in chart.figure.data} == {"scatter"} and len(chart.figure.data) == 1


def test_history_draws_the_cells_that_moved_most():
    from dlbench.report.trends import MAX_HISTORY_LINES, history_charts

    rng = np.random.default_rng(3)
    results, history = [], {}
    for i in range(MAX_HISTORY_LINES + 10):
        # cell i moved by i percent from run 1 to run 2 and stayed there in this run (3)
        r = speed(f"fw{i:02d}", "infer", 8, "eager", 100.0 * (1 + i / 100), rng)
        results.append(r)
        history[r.cell.key] = [{"key": r.cell.key, "run_id": k, "name": "throughput",
                                "median": 100.0 * (1 + i / 100) ** (k - 1), "ci_low": 99.0, "ci_high": 101.0}
                               for k in (1, 2)]
    (chart,) = history_charts(results, history, 3, {"speed": SpeedScenario()})
    names = {t.name for t in chart.figure.data}
    assert len(names) == MAX_HISTORY_LINES and "of 30 cells that moved most" in chart.title
    assert any("fw29[" in n for n in names) and not any("fw00[" in n for n in names)
