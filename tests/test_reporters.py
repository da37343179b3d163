"""Reporters (terminal, json, markdown, html) render a synthetic RunData with every kind of
result."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser

import pytest

from dlbench.cell import Cell
from dlbench.plugins import Registry
from dlbench.report.base import RunData, RunInfo
from dlbench.report.common import config_labels, fmt_num, headline
from dlbench.report.escape import md_text
from dlbench.report.html import HtmlReporter
from dlbench.report.json_report import JsonReporter, run_data_from_json
from dlbench.report.markdown import MarkdownReporter
from dlbench.report.tables import Table, baseline_table, leaderboard
from dlbench.report.terminal import TerminalReporter, print_report
from dlbench.result import Measurement, Result
from dlbench.scenarios.accuracy import AccuracyScenario
from dlbench.scenarios.figures import metric_direction
from dlbench.scenarios.robustness import RobustnessScenario
from dlbench.scenarios.speed import SpeedScenario

try:
    from tests.report_data import HOSTILE, make_run_data
except ImportError:  # tests/ itself on sys.path (pytest's default "prepend" import mode)
    from report_data import HOSTILE, make_run_data


def speed_table(task: str, results: list[Result]) -> Table | None:
    return leaderboard(SpeedScenario(), task, results)


@pytest.fixture(scope="module")
def data() -> RunData:
    return make_run_data()


@pytest.fixture(scope="module")
def hostile() -> RunData:
    return make_run_data(hostile=True)


@pytest.fixture(scope="module")
def html(data: RunData) -> str:
    return HtmlReporter().render(data)


# -- registration ---------------------------------------------------------------------------------
def test_plugin_registers_the_four_reporters() -> None:
    from dlbench.builtin import reporters

    registry: Registry[object] = Registry("reporter")
    reporters.dlbench_register_reporters(register=registry.register_from("reporters"))
    assert registry.names() == ["html", "json", "markdown", "terminal"]
    exts = {r.name: r.extension for r in registry}  # type: ignore[attr-defined]
    assert exts == {"html": "html", "json": "json", "markdown": "md", "terminal": ""}


# -- common helpers -------------------------------------------------------------------------------
@pytest.mark.parametrize("name,higher", [
    ("accuracy", True), ("macro_f1", True), ("hr@10", True), ("ndcg@10", True), ("auc", True),
    ("rmse", False), ("mae", False), ("train_loss", False), ("loss", False),
    ("time_to_target_s", False), ("peak_host_memory_mb", False), ("precision_score", True)])
def test_metric_direction(name: str, higher: bool) -> None:
    assert metric_direction(name) is higher


def test_fmt_num_is_readable() -> None:
    assert fmt_num(12345.6) == "12,346"
    assert fmt_num(32) == "32"
    assert fmt_num(1.2345) == "1.23"
    assert fmt_num(0.012345) == "0.0123"
    assert fmt_num(float("nan")) == fmt_num(None) == "–"
    assert "e" in fmt_num(1.5e-6)


def test_config_labels_show_only_what_differs() -> None:
    cells = [Cell("speed", "t", "torch", "cpu", {"variant": "eager", "precision": "fp32"}),
             Cell("speed", "t", "torch", "cpu", {"variant": "compiled", "precision": "fp32"}),
             Cell("speed", "t", "jax", "cpu", {"variant": "compiled", "precision": "fp32"})]
    assert config_labels(cells) == ["torch[eager]", "torch[compiled]", "jax[compiled]"]
    assert config_labels(cells[1:], exclude=["variant"]) == ["torch", "jax"]


def test_headline_per_scenario(data: RunData) -> None:
    by_scenario = {}
    for r in data.results:
        if r.status == "ok":
            by_scenario.setdefault(r.cell.scenario, headline(r))
    assert by_scenario["speed"].name == "throughput"
    assert by_scenario["speed"].ci_low <= by_scenario["speed"].value <= by_scenario["speed"].ci_high
    assert by_scenario["accuracy"].name == "accuracy"
    assert by_scenario["parity"].name == "max rel_error"
    assert by_scenario["robustness"].name == "clean_accuracy"
    assert by_scenario["scalability"].name == "max throughput"


def test_speed_leaderboard_ranks_fastest_first_within_mode_and_batch(data: RunData) -> None:
    table = speed_table("vision", [r for r in data.results if r.cell.task == "vision"])
    assert table is not None
    tput = table.columns.index("Throughput (samples/s) [95% CI]")
    groups: dict[tuple[str, str], list[float]] = {}
    for row in table.rows:
        if row[table.columns.index("Status")].text == "ok":
            value = float(row[tput].text.split(" ")[0].replace(",", ""))
            groups.setdefault((row[0].text, row[1].text), []).append(value)
    assert set(groups) == {("infer", "1"), ("infer", "32"), ("train", "1"), ("train", "32")}
    for values in groups.values():
        assert values == sorted(values, reverse=True)
    statuses = {c.text for c in table.column("Status")}
    assert {"failed", "timeout", "crashed", "skipped"} <= statuses
    assert "Latency p50 / p90 / p99 (ms)" in table.columns


def test_accuracy_leaderboard_orders_lower_is_better_metrics_ascending(data: RunData) -> None:
    table = leaderboard(AccuracyScenario(), "recsys", [r for r in data.results if r.cell.task == "recsys"])
    assert table is not None
    assert table.columns[2] == "rmse ↓"
    assert [c.text for c in table.column("Framework")] == ["torch", "tensorflow"]
    assert "best" in table.rows[0][2].cls


def test_baseline_flags_changes_only_outside_the_ci() -> None:
    def run(tput: float, spread: float) -> list[Result]:
        cell = Cell("speed", "t", "torch", "cpu", {"mode": "infer", "batch_size": 8})
        samples = [tput + spread * ((8 * i) % 21 - 10) / 10 for i in range(21)]  # no trend
        return [Result(cell, "ok", [Measurement("throughput", "samples/s", samples)])]

    def change(cur: list[Result], base: list[Result]) -> str:
        t = baseline_table(cur, base)
        assert t is not None
        return t.rows[0][-1].text

    assert change(run(80, 1), run(100, 1)) == "worse"
    assert change(run(120, 1), run(100, 1)) == "better"
    assert change(run(101, 10), run(100, 10)) == "within noise"


# -- terminal -------------------------------------------------------------------------------------
def test_terminal_has_one_row_per_cell_with_ci_and_spread(data: RunData) -> None:
    text = TerminalReporter(width=250).render(data)
    assert "\x1b[" not in text
    for r in data.results:
        assert r.cell.key in text, r.cell.key
    assert "samples/s [" not in text  # the CI has its own column
    row = r"throughput [\d,]+ samples/s\s+│\s+\[[\d,]+ – [\d,]+\]\s+│\s+±[\d.]+% IQR"
    assert re.search(row, text)
    for status in ("failed", "timeout", "crashed", "skipped"):
        assert status in text
    assert "CUDA out of memory" in text


def test_terminal_prints_to_a_live_console(data: RunData) -> None:
    import io

    from rich.console import Console

    buf = io.StringIO()
    print_report(data, Console(file=buf, width=200, force_terminal=True))
    out = buf.getvalue()
    assert "\x1b[" in out  # styled for a terminal
    assert "speed/vision/torch" in out


def test_terminal_does_not_interpret_markup_in_names(hostile: RunData) -> None:
    text = TerminalReporter(width=250).render(hostile)
    assert HOSTILE.split("<img")[0] in text


# -- json -----------------------------------------------------------------------------------------
def _strict_loads(text: str) -> dict:
    def reject(token: str) -> None:
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=reject)


def test_json_is_strict_and_keeps_raw_samples(data: RunData) -> None:
    d = _strict_loads(JsonReporter().render(data))
    assert d["schema"] == "dlbench.run/1"
    assert d["run"]["id"] == data.run.id
    assert len(d["results"]) == len(data.results)
    first = data.results[0]
    assert d["results"][0]["key"] == first.cell.key
    assert d["results"][0]["measurements"][0]["samples"] == first.measurements[0].samples
    assert d["baseline"]["run"]["id"] == data.baseline.run.id  # type: ignore[union-attr]
    assert d["history"]
    jax_acc = next(r for r in d["results"] if r["key"].startswith("accuracy/vision/jax"))
    assert jax_acc["metrics"]["time_to_target_s"] is None  # NaN: never reached


def test_json_round_trip(data: RunData) -> None:
    back = run_data_from_json(JsonReporter().render(data))
    assert [r.cell.key for r in back.results] == [r.cell.key for r in data.results]
    for a, b in zip(back.results, data.results, strict=True):
        assert a.status == b.status
        assert [m.samples for m in a.measurements] == [m.samples for m in b.measurements]
    jax_acc = next(r for r in back.results if r.cell.key.startswith("accuracy/vision/jax"))
    assert math.isnan(jax_acc.metrics["time_to_target_s"])
    assert back.baseline is not None and back.baseline.run.id == data.baseline.run.id  # type: ignore[union-attr]


# -- markdown -------------------------------------------------------------------------------------
def test_markdown_has_a_leaderboard_per_task(data: RunData) -> None:
    md = MarkdownReporter().render(data)
    assert "## vision" in md and "## recsys" in md
    assert "### Speed — vision" in md and "### Accuracy — recsys" in md
    assert "## Parity" in md and "## Failures" in md
    assert "## Compared with run 5" in md
    speed_rows = [ln for ln in md.splitlines() if ln.startswith("| infer |")
                  or ln.startswith("| train |")]
    assert len(speed_rows) == sum(1 for r in data.results if r.cell.scenario == "speed")
    # every table row has as many cells as its header
    lines = md.splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith("|---") or ln.startswith("|--"):
            width = len(re.split(r"(?<!\\)\|", lines[i - 1])) - 2
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert len(re.split(r"(?<!\\)\|", lines[j])) - 2 == width, lines[j]
                j += 1


def test_markdown_escapes_hostile_text(hostile: RunData) -> None:
    md = MarkdownReporter().render(hostile)
    assert "<script>" not in md and "<img" not in md
    assert "&lt;script&gt;" in md
    assert md_text("a|b") == "a\\|b"


# -- html -----------------------------------------------------------------------------------------
class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def _parse(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    return p


def test_html_has_every_section_and_chart(data: RunData, html: str) -> None:
    for section in ("summary", "leaderboard", "throughput", "latency", "learning", "parity",
                    "robustness", "scaling", "history", "baseline", "cells", "environment"):
        assert f'<section id="{section}">' in html, section
    charts = [a for t, a in _parse(html).tags
              if t == "div" and "chart" in (a.get("class") or "").split()]
    kinds = {a["data-chart"] for a in charts}
    assert kinds == {"throughput", "latency", "learning_curve", "robustness", "scaling", "history",
                     "baseline"}
    ids = [a["id"] for a in charts]
    assert len(ids) == len(set(ids))
    for a in charts:  # every chart has its figure as parseable JSON
        m = re.search(rf'<script type="application/json" id="{a["data-figure"]}">(.*?)</script>',
                      html, re.S)
        assert m, a["id"]
        fig = json.loads(m.group(1))
        assert fig["data"], a["id"]
    assert "Corruptions — vision" in html and "Gradient-masking audit" in html
    assert "0123456789abcdef0123" in html  # commit
    assert "2.13.0" in html  # environment: framework versions


def test_html_chart_ids_are_stable(data: RunData, html: str) -> None:
    again = HtmlReporter().render(data)
    ids = re.findall(r'<div class="chart" id="([^"]+)"', html)
    assert ids and ids == re.findall(r'<div class="chart" id="([^"]+)"', again)
    assert "chart-throughput-vision-infer" in ids


def test_html_inlines_plotly_once_and_loads_nothing_from_the_network(html: str) -> None:
    assert html.count("plotly.js v") == 1 or html.count("Plotly") > 0
    parsed = _parse(html)
    scripts = [a for t, a in parsed.tags if t == "script"]
    assert all("src" not in a for a in scripts)
    remote = re.compile(r"^\s*(https?:)?//", re.I)
    for tag, attrs in parsed.tags:
        assert tag not in ("iframe", "object", "embed", "base")
        if tag == "link":
            assert (attrs.get("rel") or "") != "stylesheet"
        for name in ("src", "href", "srcset", "poster", "data", "action", "formaction"):
            value = attrs.get(name)
            assert not (value and remote.match(value)), (tag, name, value)
    css = "\n".join(parsed.styles)
    assert "@import" not in css and not re.search(r"url\(\s*['\"]?(https?:)?//", css)


def test_html_escapes_hostile_strings(hostile: RunData) -> None:
    html = HtmlReporter().render(hostile)
    assert "window.__pwned" in html  # the text is shown...
    assert "<script>window.__pwned" not in html  # ...never as markup
    assert "<img src=x" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "</textarea>" not in html
    # the only script elements are ours: figure data, plotly.js, the renderer
    parsed = _parse(html)
    scripts = [a for t, a in parsed.tags if t == "script"]
    n_charts = sum(1 for t, a in parsed.tags if t == "div" and a.get("data-chart"))
    assert len(scripts) == n_charts + 2
    assert all(a.get("type") in (None, "application/json") for a in scripts)


def test_html_shows_only_sections_with_data() -> None:
    cell = Cell("speed", "tiny", "torch", "cpu", {"mode": "infer", "batch_size": 4})
    r = Result(cell, "ok", [Measurement("throughput", "samples/s", [10.0 + i for i in range(9)])])
    html = HtmlReporter().render(RunData(RunInfo(1, "quick", 0.0), [r]))
    assert '<section id="throughput">' in html and '<section id="leaderboard">' in html
    for absent in ("latency", "learning", "parity", "robustness", "scaling", "history",
                   "baseline", "environment"):
        assert f'<section id="{absent}">' not in html, absent


def test_html_renders_an_empty_run_without_plotly() -> None:
    html = HtmlReporter().render(RunData(RunInfo(3, "empty", 0.0), []))
    assert '<section id="summary">' in html
    assert 'class="chart"' not in html
    assert len(html) < 100_000  # plotly.js is only inlined when there is a chart


def test_history_points_keep_only_the_headline_figure() -> None:
    from dlbench.report.trends import history_points

    rows = [{"run_id": 1, "name": "throughput", "median": 10.0, "git_commit": "a", "status": "ok"},
            {"run_id": 1, "name": "first_call", "median": 2.0, "git_commit": "a", "status": "ok"},
            {"run_id": 2, "name": "throughput", "median": 12.0, "git_commit": "b",
             "status": "failed"},
            {"run_id": 3, "name": None, "median": None, "git_commit": "c", "status": "ok",
             "metrics": {"throughput": 11.0}}]
    pts = history_points(rows, "throughput")
    assert [(p["run_id"], p["value"], p["commit"]) for p in pts] == [(1, 10.0, "a"), (3, 11.0, "c")]
    simple = history_points([{"run_id": 4, "commit": "d", "median": 0.9}], "accuracy")
    assert [(p["run_id"], p["value"]) for p in simple] == [(4, 0.9)]


def test_parity_table_tells_keras_backends_apart() -> None:
    from report_data import parity

    from dlbench.report.tables import parity_table

    cells = [parity("keras", {"outputs": 1e-7}), parity("keras", {"outputs": 2e-7}), parity("jax", {"outputs": 3e-7})]
    for r, backend in zip(cells, ("jax", "torch", None), strict=True):
        if backend:
            r.cell.params["backend"] = backend
    table = parity_table(cells)
    assert table is not None
    labels = {row[1].text for row in table.rows}
    assert labels == {"keras[backend=jax]", "keras[backend=torch]", "jax"}


def test_robustness_table_ranks_error_metrics_low_first() -> None:
    """Recommendation's clean metric is RMSE: a smaller area under RMSE-vs-epsilon is better."""
    from dlbench.result import Result

    def rmse_cell(fw: str, clean: float, auc: float) -> Result:
        return Result(Cell("robustness", "recsys", fw, "cpu", {}), "ok",
                      metrics={"clean_metric": clean, "clean_rmse": clean, "auc": auc},
                      details={"metric": {"name": "rmse", "higher_is_better": False},
                               "metric_ci": {"clean_metric": [clean - 0.01, clean + 0.01]}})

    rows = [rmse_cell("torch", 0.92, 1.30), rmse_cell("jax", 0.93, 1.10)]
    table = leaderboard(RobustnessScenario(), "recsys", rows)
    assert table is not None
    assert table.columns[2] == "Clean rmse" and table.columns[3] == "Robustness AUC ↓"
    assert [row[1].text for row in table.rows] == ["jax", "torch"]
    assert "0.92" in table.rows[1][2].text
    h = headline(rows[0])
    assert h is not None and h.name == "clean_rmse" and h.higher_is_better is False


# -- flags: every warning reaches the reader --------------------------------------------------------
try:
    from tests.report_data import FLAGGED, flag, speed_result
except ImportError:
    from report_data import FLAGGED, flag, speed_result

LABELS = {"contended": "contended 31%", "not_converged": "not converged", "drifting": "drifting",
          "inconsistent": "inconsistent", "repeats_disagree": "repeats disagree (k=3)"}


@pytest.fixture(scope="module")
def flagged() -> RunData:
    return make_run_data(flagged=True)


def _expected(fw: str, mode: str, bs: int, variant: str, name: str) -> str:
    """The marker the reporters must show next to that figure ("" when unflagged)."""
    names = FLAGGED.get((fw, mode, bs, variant), {}).get(name, [])
    return f"⚠ {', '.join(LABELS[n] for n in names)}" if names else ""


def _speed_cells(data: RunData) -> list[tuple[Result, tuple[str, str, int, str]]]:
    return [(r, (r.cell.framework, r.cell.params["mode"], r.cell.params["batch_size"],
                 r.cell.params["variant"]))
            for r in data.results if r.cell.scenario == "speed" and r.status == "ok"]


def test_flag_labels_and_explanations() -> None:
    from dlbench.report.common import flags_of, flags_text
    from dlbench.result import FLAGS

    m = Measurement("throughput", "samples/s", [1.0] * 10,
                    meta={"flags": ["contended", "<script>"], "contention": 0.314,
                          "contention_source": "schedstat", "windows_discarded": 2})
    flags = flags_of(m)
    assert [f.label for f in flags] == ["contended 31%", "<script>"]
    assert flags[0].title.startswith(FLAGS["contended"])
    assert "31.4%" in flags[0].title and "schedstat" in flags[0].title and "2 contended" in flags[0].title
    assert "does not know" in flags[1].title
    assert flags_text(flags) == "⚠ contended 31%, <script>"
    assert flags_of(Measurement("t", "s", [1.0], meta={"contention": 0.02, "converged": True})) == ()
    assert [f.name for f in flags_of(Measurement("t", "s", [1.0], meta={"converged": False}))] == [
        "not_converged"]


def test_headline_and_live_log_carry_the_flags(flagged: RunData) -> None:
    from dlbench.run.session import describe

    for r, cell in _speed_cells(flagged):
        h = headline(r)
        assert h is not None
        want = _expected(*cell, "throughput")
        assert h.flags_text == want
        assert h.text == (f"{h.value_text} {want}" if want else h.value_text)
        line = describe(r)
        assert (want in line) if want else ("⚠" not in line), line


def test_flag_summary_counts_figures(flagged: RunData, data: RunData) -> None:
    from dlbench.report.common import flag_summary

    s = flag_summary(flagged.results)
    assert s.flagged == 5  # 4 throughputs and one latency
    assert s.counts == {"contended": 1, "not_converged": 1, "drifting": 1, "inconsistent": 2,
                        "repeats_disagree": 1}
    assert s.text.startswith(f"5 of {s.figures} figures are flagged: 1 contended, 1 not converged, "
                             "1 drifting, 2 inconsistent, 1 repeats disagree — ")
    assert "lower bound" in s.text
    assert flag_summary(data.results).text == ""


def test_speed_leaderboard_marks_flagged_figures_in_place(flagged: RunData, data: RunData) -> None:
    from dlbench.report.common import flags_text

    def ranked(d: RunData) -> list[tuple[str, str, str, str]]:
        t = speed_table("vision", [r for r in d.results if r.cell.task == "vision"])
        assert t is not None
        return [(row[0].text, row[1].text, row[2].text, row[3].text) for row in t.rows]

    assert ranked(flagged) == ranked(data)  # a flag changes no rank
    table = speed_table("vision", [r for r in flagged.results if r.cell.task == "vision"])
    assert table is not None
    tput = table.columns.index("Throughput (samples/s) [95% CI]")
    lat = table.columns.index("Latency p50 / p90 / p99 (ms)")
    assert "Threads" in table.columns and {c.text for c in table.column("Threads")} >= {"2"}
    by_label = {(row[0].text, row[1].text, row[3].text): row for row in table.rows}
    for _r, (fw, mode, bs, variant) in _speed_cells(flagged):
        row = by_label[(mode, str(bs), f"{fw}[{variant}]")]
        assert flags_text(row[tput].flags) == _expected(fw, mode, bs, variant, "throughput")
        assert flags_text(row[lat].flags) == _expected(fw, mode, bs, variant, "latency")


def test_terminal_shows_flags_next_to_the_figure(flagged: RunData) -> None:
    text = TerminalReporter(width=250).render(flagged)
    lines = text.splitlines()
    assert lines[0].startswith("5 of ") and "figures are flagged" in lines[0]
    for r, cell in _speed_cells(flagged):
        row = next(ln for ln in lines if r.cell.key in ln)
        want = _expected(*cell, "throughput")
        assert (want in row) if want else ("⚠" not in row), row
        assert row.rstrip().rstrip("│").rstrip().endswith(" 2")  # threads
    assert "⚠ contended: other processes kept" in text  # the legend


def test_terminal_flag_marker_is_yellow(flagged: RunData) -> None:
    import io

    from rich.console import Console

    buf = io.StringIO()
    print_report(flagged, Console(file=buf, width=250, force_terminal=True, color_system="standard"))
    assert re.search(r"\x1b\[[0-9;]*33m ?⚠ contended 31%", buf.getvalue())


def test_unflagged_reports_show_no_flag(data: RunData, html: str) -> None:
    assert "⚠" not in TerminalReporter(width=250).render(data)
    assert "⚠" not in MarkdownReporter().render(data)
    assert 'class="flag' not in html and "⚠" not in html
    d = _strict_loads(JsonReporter().render(data))
    assert d["flagged"]["flagged"] == 0 and d["flagged"]["text"] == ""
    assert all(m["flags"] == [] for r in d["results"] for m in r["measurements"])


def test_markdown_marks_flagged_figures_and_explains_them(flagged: RunData) -> None:
    md = MarkdownReporter().render(flagged)
    first_heading = md.index("\n## ")
    assert "figures are flagged" in md[:first_heading]
    rows = [ln for ln in md.splitlines() if ln.startswith(("| infer |", "| train |"))]
    for _r, (fw, mode, bs, variant) in _speed_cells(flagged):
        label = f"{fw}\\[{variant}\\]"
        row = next(ln for ln in rows if ln.startswith(f"| {mode} | {bs} |") and f"| {label} |" in ln)
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        for name, idx in (("throughput", 5), ("latency", 7)):
            want = _expected(fw, mode, bs, variant, name)
            assert (cells[idx].endswith(want)) if want else ("⚠" not in cells[idx]), (name, row)
    legend = md[md.index("## Flags"):]
    for name in ("contended", "not converged", "drifting", "inconsistent", "repeats disagree"):
        assert f"- ⚠ **{name}**: " in legend


def test_html_shows_a_badge_with_its_explanation(flagged: RunData) -> None:
    from dlbench.result import FLAGS

    html = HtmlReporter().render(flagged)
    badges = [a for t, a in _parse(html).tags if t == "span" and a.get("class") == "flag"]
    names = [str(a["data-flag"]) for a in badges]
    # the speed leaderboard (throughput + latency), the All-cells and baseline tables (headline)
    expected = [n for cell in FLAGGED.values() for ns in cell.values() for n in ns]
    headlines = [n for cell in FLAGGED.values() for n in cell.get("throughput", [])]
    assert sorted(names) == sorted(expected + 2 * headlines)
    for a in badges:
        assert str(a["title"]).startswith(FLAGS[str(a["data-flag"])])  # the tooltip explains it
    assert '⚠ contended 31%</span>' in html and "⚠ repeats disagree (k=3)</span>" in html
    head = html[:html.index("<nav>")]
    assert 'class="flag-summary"' in head and "5 of " in head and "figures are flagged" in head
    assert "it keeps its rank" in html
    # charts mark the flagged bar too
    fig = json.loads(re.search(r'id="fig-chart-throughput-vision-infer">(.*?)</script>', html,
                               re.S).group(1))  # type: ignore[union-attr]
    xs = [x for trace in fig["data"] for x in trace["x"]]
    assert "torch[eager] ⚠" in xs and "torch[compiled]" in xs


def test_html_cells_table_has_threads(flagged: RunData) -> None:
    from dlbench.report.html import cells_table

    table = cells_table(flagged.results)
    assert "Threads" in table.columns
    by_key = dict(zip((c.text for c in table.column("Cell")), table.column("Threads"), strict=True))
    assert all(by_key[r.cell.key].text == "2" for r, _ in _speed_cells(flagged))
    no_threads = cells_table([r for r in flagged.results if r.cell.scenario == "parity"])
    assert "Threads" not in no_threads.columns


def test_unknown_flags_are_escaped_everywhere() -> None:
    d = make_run_data(hostile=True, flagged=True, with_baseline=False)
    html = HtmlReporter().render(d)
    assert "<script>window.__pwned" not in html and "<img src=x" not in html
    assert "⚠ &lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    md = MarkdownReporter().render(d)
    assert "<script>" not in md and "⚠ &lt;script&gt;window.\\_\\_pwned" in md
    text = TerminalReporter(width=400).render(d)
    assert "⚠ <script>window.__pwned = 1</script>" in text
    out = _strict_loads(JsonReporter().render(d))
    assert any(HOSTILE in m["flags"] for r in out["results"] for m in r["measurements"])


def test_json_puts_flags_and_contention_on_each_measurement(flagged: RunData) -> None:
    d = _strict_loads(JsonReporter().render(flagged))
    assert d["flagged"]["flagged"] == 5 and d["flagged"]["counts"]["inconsistent"] == 2
    by_key = {r["key"]: r for r in d["results"]}
    for r, cell in _speed_cells(flagged):
        for m in by_key[r.cell.key]["measurements"]:
            want = FLAGGED.get(cell, {}).get(m["name"], [])
            assert m["flags"] == want, (r.cell.key, m["name"])
            assert m["contention"] == (0.31 if want == ["contended"] else 0.01)
    back = run_data_from_json(JsonReporter().render(flagged))  # extra keys do not break the way back
    assert [m.flags for r in back.results for m in r.measurements] == [
        m.flags for r in flagged.results for m in r.measurements]


def test_baseline_comparison_keeps_flagged_changes_inconclusive() -> None:
    def run(tput: float) -> list[Result]:
        cell = Cell("speed", "t", "torch", "cpu", {"mode": "infer", "batch_size": 8})
        samples = [tput + ((8 * i) % 21 - 10) / 10 for i in range(21)]
        return [Result(cell, "ok", [Measurement("throughput", "samples/s", samples)])]

    cur, base = run(80), run(100)
    flag(cur[0].measurement("throughput"), "contended", contention=0.4)
    t = baseline_table(cur, base)
    assert t is not None
    row = t.rows[0]
    assert row[-1].text == "inconclusive (flagged)"
    assert [f.label for f in row[3].flags] == ["contended 40%"] and row[2].flags == ()


def test_scalability_headline_carries_its_points_flags() -> None:
    try:
        from tests.report_data import scalability
    except ImportError:
        from report_data import scalability
    import numpy as np

    r = scalability("torch", np.random.default_rng(0))
    top = max((p for p in r.series["scaling"] if "throughput" in p), key=lambda p: p["throughput"])
    r.measurements.append(Measurement(f"throughput@threads={top['value']}", "samples/s",
                                      [1.0] * 10, meta={"flags": ["contended"], "contention": 0.5}))
    h = headline(r)
    assert h is not None and h.flags_text == "⚠ contended 50%"


def test_results_frame_has_flag_and_thread_columns(flagged: RunData, tmp_path) -> None:
    from dlbench.results import load
    from dlbench.store.database import Store

    store = Store(f"sqlite:///{tmp_path / 'flags.db'}")
    rid = store.start_run("quick", {}, None, {})
    for r in flagged.results:
        store.add_result(rid, r)
    df = load(store, runs=rid)
    for col in ("flags", "contended", "contention", "converged", "repeats", "threads"):
        assert col in df.columns, col
    tput = df[(df.kind == "measurement") & (df.metric == "throughput") & (df.scenario == "speed")]
    contended = tput[tput.contended.astype(bool)]
    assert list(contended.framework) == ["torch"] and contended.contention.iloc[0] == 0.31
    assert set(tput["flags"]) == {"", "contended", "not_converged", "inconsistent", "repeats_disagree"}
    assert tput[tput["flags"] == "repeats_disagree"].repeats.iloc[0] == 3
    assert not tput[tput["flags"] == "not_converged"].converged.iloc[0]
    lat = df[(df.metric == "latency") & (df["flags"] != "")]
    assert list(lat["flags"]) == ["drifting,inconsistent"]
    assert set(tput.threads) == {2}
    assert (df[df.kind == "metric"]["flags"] == "").all()


def test_baseline_and_history_charts_mark_flagged_figures(flagged: RunData) -> None:
    from dlbench.report.trends import FLAGGED_COLOR, baseline_chart, history_charts

    assert flagged.baseline is not None
    chart = baseline_chart(flagged.results, flagged.baseline.results)
    assert chart is not None
    bar = chart.figure.data[0]
    key = speed_result(flagged.results, "torch", "infer", 32, "eager").cell.key
    i = list(bar.y).index(f"{key} ⚠")
    assert bar.marker.color[i] == FLAGGED_COLOR
    assert sum(str(y).endswith("⚠") for y in bar.y) == 4
    history = {key: [{"run_id": 3, "commit": "c3", "median": 900.0}]}
    [h] = history_charts(flagged.results, history, flagged.run.id)
    assert list(h.figure.data[0].text)[-1] == "this run ⚠ contended 31%"

