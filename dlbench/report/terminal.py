"""Terminal reporter: a rich table with one row per cell (key, status, headline figure with its
flags, its 95% CI, spread, n and threads), followed by the failures; a line above the table says
how many figures are flagged. Stored text is shown as ``rich.text.Text`` (never parsed as markup)
without its control sequences (:func:`~dlbench.report.escape.term_text`)."""

from __future__ import annotations

import io
from typing import ClassVar

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dlbench.report.base import Reporter, RunData
from dlbench.report.common import (
    FLAG_MARK,
    Flag,
    Scenarios,
    first_line,
    flag_summary,
    flags_text,
    fmt_duration,
    headline,
    scenario_of,
    status_counts,
)
from dlbench.report.escape import term_text
from dlbench.report.tables import threads_text
from dlbench.result import Result

STATUS_STYLE = {"ok": "green", "failed": "bold red", "timeout": "yellow", "crashed": "bold magenta",
                "skipped": "dim"}
FLAG_STYLE = "bold yellow"


def flag_text(flags: tuple[Flag, ...]) -> Text:
    """The flags of a figure as a yellow marker (``⚠ contended 31%``), after a space."""
    return Text(f" {term_text(flags_text(flags))}", style=FLAG_STYLE) if flags else Text("")


def result_row(result: Result, scenarios: Scenarios | None = None) -> list[Text]:
    """The cells of one result's row: key, status, headline (with its flags), 95% CI, spread, n,
    threads."""
    style = STATUS_STYLE.get(result.status, "")
    key = Text(term_text(result.cell.key))
    status = Text(term_text(result.status), style=style)
    h = headline(result, scenarios) if result.status == "ok" else None
    if h is None:
        msg = first_line(result.error, 100) if result.status != "ok" else ""
        return [key, status, Text(term_text(msg), style="dim"), Text(""), Text(""), Text(""), Text("")]
    name = Text(f"{term_text(h.name)} ", style="dim")
    value = Text(h.value_text, style="bold")
    if h.passed is not None:
        value.append(" pass" if h.passed else " FAIL", style="green" if h.passed else "bold red")
    return [key, status, name + value + flag_text(h.flags), Text(h.ci_text), Text(h.spread_text),
            Text("" if h.n is None else str(h.n)), Text(threads_text(result))]


def verdict_lines(data: RunData) -> list[Text]:
    """One line per finished cell whose scenario gives a verdict (the robustness audit): green
    when it passed, red when it failed, grey when it could not be reached (checks that did not
    run), with its reasons."""
    lines = []
    for r in sorted(data.results, key=lambda r: r.cell.key):
        sc = scenario_of(r, data.scenarios) if r.status == "ok" else None
        v = sc.verdict(r) if sc is not None else None
        if v is None or v.display is None:
            continue
        style = ("dim" if v.inconclusive or v.passed is None
                 else "green" if v.passed else "bold red")
        lines.append(Text(term_text(f"{v.name} {r.cell.key}: "))
                     + Text(term_text(v.display), style=style))
    return lines


TERMINAL_ROWS = 60
"""Cells a run's table shows in the terminal by default (``--all``: every cell); failures first.
The HTML and JSON reports hold every cell."""


def build_table(data: RunData, limit: int | None = None) -> Table:
    """One row per cell, by key; with ``limit``, at most that many rows, the cells that did not
    finish ``ok`` first, and a caption counting the rest."""
    run = data.run
    commit = f" @ {run.git_commit[:10]}" if run.git_commit else ""
    ordered = sorted(data.results, key=lambda r: r.cell.key)
    rest: list[Result] = []
    if limit is not None and len(ordered) > limit:
        ordered.sort(key=lambda r: r.status == "ok")  # stable: by key within each group
        ordered, rest = ordered[:limit], ordered[limit:]
    caption = (Text(term_text(f"{len(rest)} more cells not shown ({', '.join(f'{s}: {n}' for s, n in status_counts(rest).items())}): "
                              "--all prints them; the HTML and JSON reports hold every cell"), style="dim")
               if rest else None)
    table = Table(title=Text(term_text(f"dlbench run {run.id}: {run.suite}{commit}"), style="bold"),
                  title_justify="left", caption=caption, caption_justify="left",
                  show_lines=False, header_style="bold", expand=False)
    table.add_column("Cell", overflow="fold")
    table.add_column("Status")
    table.add_column("Headline", overflow="fold")
    table.add_column("95% CI", justify="right")
    table.add_column("Spread", justify="right")
    table.add_column("n", justify="right")
    threads = any(threads_text(r) for r in data.results)
    if threads:
        table.add_column("Threads", justify="right")
    for r in ordered:
        table.add_row(*result_row(r, data.scenarios)[:None if threads else -1])
    return table


def print_report(data: RunData, console: Console | None = None, limit: int | None = TERMINAL_ROWS) -> None:
    """Print the report to a live console (stdout by default): at most ``limit`` cells' rows
    (None: all), then the verdicts, the flag legend, the status counts and the failures."""
    console = console or Console()
    flags = flag_summary(data.results)
    if flags.text:
        console.print(Text(term_text(flags.text), style=FLAG_STYLE))
    console.print(build_table(data, limit))
    for line in verdict_lines(data):
        console.print(line)
    for name, explanation in flags.legend.items():
        console.print(Text(term_text(f"{FLAG_MARK} {name}"), style=FLAG_STYLE) + Text(term_text(f": {explanation}")))
    counts = status_counts(data.results)
    summary = Text(term_text("  ".join(f"{s}: {n}" for s, n in counts.items())) or "no results")
    if data.run.finished_at and data.run.started_at:
        summary.append(f"   wall time {fmt_duration(data.run.finished_at - data.run.started_at)}")
    console.print(summary)
    failures = [r for r in data.results if r.status not in ("ok", "skipped")]
    for r in sorted(failures, key=lambda r: r.cell.key):
        console.print(Text(term_text(f"{r.status}: "), style=STATUS_STYLE.get(r.status, "")) +
                      Text(term_text(f"{r.cell.key}: {first_line(r.error, 300) or '(no error text)'}")))


class TerminalReporter(Reporter):
    name: ClassVar[str] = "terminal"
    extension: ClassVar[str] = ""
    description: ClassVar[str] = "rich table: one row per cell, headline figure with CI and spread"

    def __init__(self, width: int = 160) -> None:
        self.width = width

    def render(self, data: RunData) -> str:
        console = Console(record=True, width=self.width, file=io.StringIO(), color_system=None,
                          force_terminal=False)
        print_report(data, console, limit=None)
        return console.export_text()
