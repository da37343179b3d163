"""The HTML report in a real headless Chromium: every chart draws, nothing errors, nothing loads
from the network, and hostile strings stay text; gate.md (also what ``compare --markdown``
writes) and report.md, rendered to HTML with raw HTML allowed, run no script, load no image and
hold no link. Also proves the checks can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlbench.analysis.compare import compare_runs
from dlbench.analysis.gate import decide, to_markdown
from dlbench.report.html import HtmlReporter
from dlbench.report.markdown import MarkdownReporter

try:
    from tests.browser import Chromium, PageResult, find_chromium
    from tests.report_data import (
        HOSTILE_TEXTS,
        add_hostile_cells,
        hostile_results,
        make_run_data,
        markdown_html,
    )
except ImportError:  # tests/ itself on sys.path (pytest's default "prepend" import mode)
    from browser import Chromium, PageResult, find_chromium
    from report_data import (
        HOSTILE_TEXTS,
        add_hostile_cells,
        hostile_results,
        make_run_data,
        markdown_html,
    )

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None,
                       reason="needs headless chromium (apt-get install chromium; or set "
                              "CHROMIUM=/path/to/chrome)"),
]

CHART_STATE = """(() => {
  const charts = [...document.querySelectorAll("div.chart")];
  return {
    charts: charts.length,
    drawn: charts.filter(c => c.querySelector(".plotly svg.main-svg")).map(c => c.id),
    missing: charts.filter(c => !c.querySelector(".plotly svg.main-svg")).map(c => c.id),
    failed: charts.filter(c => c.classList.contains("chart-error")).map(c => c.id),
    kinds: [...new Set(charts.map(c => c.dataset.chart))].sort(),
    state: document.body.dataset.chartsRendered,
    pwned: typeof window.__pwned,
    injected: document.querySelectorAll("img[src='x'], textarea").length,
    jsLinks: document.querySelectorAll("a[href^='javascript' i]").length,
    handlers: [...document.querySelectorAll("body *")].filter(
      e => [...e.attributes].some(a => a.name.startsWith("on"))).length,
    failureText: [...document.querySelectorAll("details.failure summary")].map(s => s.textContent),
    badges: [...document.querySelectorAll("#leaderboard span.flag")].map(s => ({
      text: s.textContent.trim(), title: s.title, visible: s.getBoundingClientRect().width > 0,
      cell: s.parentElement.firstChild.textContent.trim()})),
    flagSummary: (document.querySelector("header .flag-summary") || {}).innerText || "",
  };
})()"""

READY = "document.body.dataset.chartsRendered"


@pytest.fixture(scope="module")
def browser():
    with Chromium(timeout=120) as b:
        yield b


@pytest.fixture(scope="module")
def report_page(browser: Chromium, tmp_path_factory: pytest.TempPathFactory) -> PageResult:
    path = tmp_path_factory.mktemp("report") / "report.html"
    data = add_hostile_cells(make_run_data(hostile=True, flagged=True))
    path.write_text(HtmlReporter().render(data), encoding="utf-8")
    return browser.load(path.as_uri(), wait_for=READY, evaluate=CHART_STATE, timeout=120)


def test_every_chart_renders(report_page: PageResult) -> None:
    v = report_page.value
    assert report_page.ready and v["state"] == "true"
    assert v["charts"] >= 10
    assert v["missing"] == [] and v["failed"] == []
    assert v["kinds"] == ["baseline", "history", "latency", "learning_curve", "robustness",
                          "scaling", "throughput"]


def test_no_console_errors(report_page: PageResult) -> None:
    assert report_page.errors == [], "\n".join(map(str, report_page.errors))


def test_nothing_loads_from_the_network(report_page: PageResult) -> None:
    assert report_page.requests, "request logging is not working"
    assert report_page.external_requests == []
    assert all(u.startswith("file:") for u in report_page.requests), report_page.requests


def test_hostile_strings_stay_text(report_page: PageResult) -> None:
    v = report_page.value
    assert v["pwned"] == "undefined" and v["injected"] == 0
    assert v["jsLinks"] == 0 and v["handlers"] == 0
    assert any("<script>window.__pwned = 1</script>" in t for t in v["failureText"])
    assert any("[x](javascript:window.__pwned=3)" in t for t in v["failureText"])  # the new cells


def test_flagged_figures_show_a_visible_badge_with_its_explanation(report_page: PageResult) -> None:
    from dlbench.result import FLAGS

    badges = report_page.value["badges"]
    assert all(b["visible"] for b in badges), badges
    texts = {b["text"] for b in badges}
    assert {"⚠ contended 31%", "⚠ not converged", "⚠ drifting", "⚠ inconsistent",
            "⚠ repeats disagree (k=3)"} <= texts
    contended = next(b for b in badges if b["text"] == "⚠ contended 31%")
    assert contended["title"].startswith(FLAGS["contended"])
    assert contended["cell"][0].isdigit()  # next to the throughput figure
    hostile = [b for b in badges if "__pwned" in b["text"]]  # an unknown flag stays text
    assert hostile and hostile[0]["text"].startswith("⚠ <script>window.__pwned = 1</script>")
    summary = report_page.value["flagSummary"]
    assert "figures are flagged" in summary and "contended" in summary


# -- Markdown outputs, rendered -------------------------------------------------------------------
MARKDOWN_STATE = """new Promise(resolve => {
  const q = s => document.querySelectorAll(s).length;
  const state = {scripts: q("script"), images: q("img"), frames: q("iframe, object, embed"),
    links: q("a"), handlers: [...document.querySelectorAll("body *")].filter(
      e => [...e.attributes].some(a => a.name.startsWith("on"))).length,
    tables: q("table"), text: document.body.innerText};
  document.querySelectorAll("a").forEach(a => a.click());  // a javascript: link runs now
  setTimeout(() => resolve({...state, pwned: typeof window.__pwned}), 300);
})"""


def _markdown_page(tmp_path: Path, name: str, md: str) -> str:
    page = tmp_path / f"{name}.html"
    page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                    f"{markdown_html(md)}</body></html>", encoding="utf-8")
    return page.as_uri()


@pytest.mark.parametrize("which", ["gate.md", "report.md"])
def test_markdown_outputs_stay_inert_in_chromium(browser: Chromium, tmp_path: Path, which: str) -> None:
    if which == "gate.md":  # compare --markdown writes the same document
        md = to_markdown(decide(compare_runs(*hostile_results())))
    else:
        md = MarkdownReporter().render(add_hostile_cells(make_run_data(hostile=True, with_baseline=False)))
    page = browser.load(_markdown_page(tmp_path, which, md), evaluate=MARKDOWN_STATE, timeout=60)
    v = page.value
    assert (v["scripts"], v["images"], v["frames"], v["links"], v["handlers"]) == (0, 0, 0, 0, 0), v
    assert v["tables"] >= 1
    assert v["pwned"] == "undefined"
    for text in HOSTILE_TEXTS[:6]:  # shown as text, as written
        assert text in v["text"], text
    assert page.errors == [], "\n".join(map(str, page.errors))


@pytest.mark.parametrize("raw", [" ".join(HOSTILE_TEXTS[:4]), HOSTILE_TEXTS[3]],
                         ids=["script-img-link", "link-only"])
def test_the_markdown_check_can_fail(browser: Chromium, tmp_path: Path, raw: str) -> None:
    """Unescaped, the strings do come out live, and the page sees it (a link only once clicked)."""
    page = browser.load(_markdown_page(tmp_path, "raw", f"| cell |\n|---|\n| {raw} |\n"),
                        evaluate=MARKDOWN_STATE, timeout=60)
    assert page.value["links"] >= 1 and page.value["pwned"] == "number"
    if raw != HOSTILE_TEXTS[3]:
        assert page.value["scripts"] >= 1 and page.value["images"] >= 1


# -- the checks above can fail ------------------------------------------------------------------
def test_detects_uncaught_exceptions_and_console_errors(browser: Chromium, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><div id='x'></div><script>"
                    "console.error('deliberate console error');"
                    "undefinedFunction();"
                    "</script></body></html>")
    result = browser.load(page.as_uri(), timeout=60)
    texts = [e.text for e in result.errors]
    assert any("deliberate console error" in t for t in texts), texts
    assert any("undefinedFunction" in t for t in texts), texts


def test_detects_a_chart_that_did_not_draw(browser: Chromium, tmp_path: Path) -> None:
    html = HtmlReporter().render(make_run_data(with_baseline=False))
    broken = html.replace('<script type="application/json" id="fig-chart-latency-vision-infer">',
                          '<script type="application/json" id="fig-chart-latency-vision-infer">{',
                          1)
    assert broken != html
    page = tmp_path / "broken-chart.html"
    page.write_text(broken, encoding="utf-8")
    result = browser.load(page.as_uri(), wait_for=READY, evaluate=CHART_STATE, timeout=120)
    assert result.value["missing"] == ["chart-latency-vision-infer"]
    assert result.value["failed"] == ["chart-latency-vision-infer"]
    assert any("chart-latency-vision-infer" in e.text for e in result.errors)


def test_detects_network_requests(browser: Chromium, tmp_path: Path) -> None:
    # port 9 (discard) on loopback: fails fast and never leaves the host
    page = tmp_path / "remote.html"
    page.write_text("<!DOCTYPE html><html><body><img src='http://127.0.0.1:9/pixel.png'>"
                    "</body></html>")
    result = browser.load(page.as_uri(), timeout=60)
    assert result.external_requests == ["http://127.0.0.1:9/pixel.png"]
