"""Every output format escapes what it embeds: hostile suite names, cell keys, measurement names,
plugin descriptions and error texts come out as text in Markdown (report.md, gate.md,
``compare --markdown``), JUnit XML (gate.xml) and the terminal (the run table, ``dlbench list``,
``dlbench compare``). The Markdown is rendered by markdown-it (raw HTML on, as a permissive
renderer would) and its elements are counted; the XML is parsed by expat."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from xml.dom import minidom

import pytest
from conftest import run_cli  # noqa: I001
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbench.analysis.compare import compare_runs
from dlbench.analysis.gate import decide, to_junit, to_markdown
from dlbench.report.escape import clean_text, md_code, md_text, one_line, term_markup, xml_text
from dlbench.report.markdown import MarkdownReporter
from dlbench.report.terminal import TerminalReporter
from dlbench.store.exchange import export_run

try:
    from tests.report_data import (
        HOSTILE_TEXTS,
        add_hostile_cells,
        hostile_results,
        make_run_data,
        markdown_html,
    )
except ImportError:  # tests/ itself on sys.path (pytest's default "prepend" import mode)
    from report_data import (
        HOSTILE_TEXTS,
        add_hostile_cells,
        hostile_results,
        make_run_data,
        markdown_html,
    )

LIVE = ("script", "img", "iframe", "object", "embed", "svg", "style", "form", "input", "textarea")


class Elements(HTMLParser):
    """The elements of rendered HTML, and its text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def names(self) -> list[str]:
        return [t for t, _ in self.tags]

    def live(self) -> list[tuple[str, dict[str, str | None]]]:
        """Elements that run or load something: scripts, images, frames, any link, any on* handler."""
        return [(t, a) for t, a in self.tags
                if t in LIVE or t == "a" or any(k.startswith("on") for k in a)]


render = markdown_html


def assert_inert(md: str) -> Elements:
    el = Elements(render(md))
    assert el.live() == [], el.live()
    return el


# -- the escaping functions, on any text ----------------------------------------------------------
@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_md_text_renders_as_exactly_its_text(text: str) -> None:
    el = Elements(render(f"x {md_text(text)}"))
    assert el.names() == ["p"]
    assert "".join(el.text).strip() == f"x {one_line(text)}"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_md_text_and_md_code_are_text_for_any_input(text: str) -> None:
    el = Elements(render(f"x {md_text(text)}"))
    assert el.names() == ["p"], (text, el.tags)
    assert "".join(el.text).strip() == f"x {one_line(text)}".strip()
    if one_line(text):
        code = Elements(render(f"x {md_code(text)}"))
        assert code.names() == ["p", "code"], (text, code.tags)
        assert "".join(code.text).rstrip("\n") == f"x {one_line(text)}"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_table_cells_stay_one_cell(text: str) -> None:
    md = f"| a | b |\n|---|---|\n| {md_text(text)} | {md_code(text or 'k', in_table=True)} |\n"
    el = Elements(render(md))
    assert el.names().count("td") == 2 and el.names().count("tr") == 2, (text, el.tags)
    assert el.live() == []


def test_a_backtick_or_newline_in_a_key_cannot_close_its_code_span() -> None:
    for key in ("speed/a`b", "``x``", "`", "a\n\nb", "a | b"):
        el = Elements(render(f"- {md_code(key)}: after"))
        assert el.names() == ["ul", "li", "code"], (key, el.tags)
        assert "".join(el.text).strip().endswith(": after")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_xml_text_is_always_well_formed(text: str) -> None:
    root = ET.Element("x", attr=xml_text(text))
    root.text = xml_text(text)
    back = ET.fromstring(ET.tostring(root, encoding="unicode"))
    assert back.text in (None, xml_text(text).replace("\r", "\n"))


def test_the_markdown_check_can_fail() -> None:
    """Unescaped, the hostile strings do come out live: a script, an image, javascript: links."""
    live = Elements(render(f"| a |\n|---|\n| {' '.join(HOSTILE_TEXTS[:6])} |\n")).live()
    assert {t for t, _ in live} >= {"script", "img", "a"}
    assert any(str(a.get("href", "")).startswith("javascript:") for t, a in live if t == "a")


def test_the_xml_check_can_fail() -> None:
    root = ET.Element("x")
    root.text = "\x1b[31mred\x1b[0m \x0c"
    with pytest.raises(ET.ParseError):
        ET.fromstring(ET.tostring(root, encoding="unicode"))


def test_terminal_escaping_removes_sequences_and_escapes_markup() -> None:
    from rich.console import Console
    from rich.text import Text

    for text in HOSTILE_TEXTS:
        console = Console(record=True, width=400, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115
        console.print(term_markup(text))
        console.print(Text(clean_text(text)))
        shown = console.export_text()
        assert "\x1b" not in shown and "\x0c" not in shown and "\x00" not in shown
        for line in clean_text(text).splitlines():
            assert line.strip() in shown
        console.file.close()


# -- the writers ----------------------------------------------------------------------------------
def _hostile_decision():
    base, head = hostile_results()
    return decide(compare_runs(base, head))


def test_gate_markdown_is_inert_and_keeps_its_table() -> None:
    md = to_markdown(_hostile_decision())
    el = assert_inert(md)
    text = "".join(el.text)
    for t in HOSTILE_TEXTS[:4]:
        assert t in text  # shown as written
    headers = [ln for ln in md.splitlines() if ln.startswith("| Verdict |")]
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| Verdict |")]
    assert headers and len(rows) == 4  # regression, failed, missing, unchanged
    assert el.names().count("table") == len(headers)
    assert el.names().count("th") == 8 * len(headers)
    assert el.names().count("td") == 8 * len(rows)  # no pipe, newline or backtick split a cell
    assert el.names().count("code") == len(rows)  # each key in one code span


def test_compare_markdown_from_the_cli_is_inert(tmp_path: Path) -> None:
    base, head = hostile_results()
    from dlbench.report.base import RunInfo

    files = []
    for name, results in (("base", base), ("head", head)):
        doc = export_run(RunInfo(1, f"suite {HOSTILE_TEXTS[0]}", 1.0, 2.0, None, {}, "finished", {}), results)
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(doc))
    md = tmp_path / "compare.md"
    res = run_cli("compare", str(files[0]), str(files[1]), "--markdown", str(md),
                  "--store", f"sqlite:///{tmp_path / 'r.db'}")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert_inert(md.read_text())
    assert "\x1b" not in res.stdout + res.stderr and "\x0c" not in res.stdout
    assert "[/]" in res.stdout  # the terminal table shows the markup as text


def test_gate_junit_is_well_formed_without_control_characters() -> None:
    xml = to_junit(_hostile_decision())
    root = ET.fromstring(xml)  # expat: any control character would be a ParseError
    assert "\x1b" not in xml and "\x0c" not in xml and "\x00" not in xml
    error = next(root.iter("error"))
    assert "<script>window.__pwned = 1</script>" in (error.get("message") or "")
    assert "red" in (error.text or "")
    minidom.parseString(xml.encode())  # a second parser agrees


def _hostile_run_data():
    return add_hostile_cells(make_run_data(hostile=True, with_baseline=False))


def test_report_markdown_is_inert() -> None:
    md = MarkdownReporter().render(_hostile_run_data())
    el = assert_inert(md)
    assert "<script>window.__pwned = 1</script>" in "".join(el.text)
    failures = md[md.index("## Failures"):]
    rendered = Elements(render(failures.split("\n\n<details>")[0]))
    assert rendered.live() == []
    items = rendered.names().count("li")
    assert items == rendered.names().count("code")  # every key stayed in its code span


def test_terminal_report_has_no_control_sequences_and_shows_markup_as_text() -> None:
    text = TerminalReporter(width=400).render(_hostile_run_data())
    assert "\x1b" not in text and "\x0c" not in text and "\x00" not in text
    assert "[/]" in text and "[bold]bold[/bold]" in text


def test_dlbench_list_shows_plugin_strings_as_written(tmp_path: Path) -> None:
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "hostile_attack.py").write_text(
        "from dlbench.api import Attack, hookimpl\n\n\n"
        "class HostileAttack(Attack):\n"
        "    name = 'hostile'\n"
        "    kind = '[bold]white-box[/bold]'\n"
        "    description = 'closes [/] opens [bold] \\x1b[31mred\\x1b[0m \\x0cfeed <script>x</script>'\n\n\n"
        "@hookimpl\n"
        "def dlbench_register_attacks(register):\n"
        "    register(HostileAttack())\n")
    res = run_cli("--plugins-dir", str(d), "list", "attacks")
    assert res.returncode == 0, res.stderr
    assert "MarkupError" not in res.stderr and "internal error" not in res.stderr
    assert "[bold]white-box[/bold]" in res.stdout and "closes [/] opens [bold] red" in res.stdout
    assert "\x1b" not in res.stdout and "\x0c" not in res.stdout
