"""Markdown reporter: a GitHub-flavoured summary with a leaderboard per task (for PR comments
and job summaries); a flagged figure carries its marker (``⚠ contended 31%``), explained in the
legend at the end, and a line at the top says how many figures are flagged. Every embedded string
goes through :mod:`dlbench.report.escape` (``md_text``, ``md_code``)."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from dlbench.report.base import Reporter, RunData
from dlbench.report.common import (
    FLAG_MARK,
    FlagSummary,
    first_line,
    flag_summary,
    flags_text,
    status_counts,
)
from dlbench.report.escape import md_code, md_text
from dlbench.report.inference import boards
from dlbench.report.tables import (
    Table,
    baseline_table,
    corruption_tables,
    parity_table,
)


def md_table(table: Table) -> str:
    right = [bool(table.rows) and all("num" in r[i].cls for r in table.rows)
             for i in range(len(table.columns))]
    lines = ["| " + " | ".join(md_text(c) for c in table.columns) + " |",
             "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    for row in table.rows:
        cells = []
        for c in row:
            t = md_text(c.text)
            if t and ("best" in c.cls or "fail" in c.cls):
                t = f"**{t}**"
            if c.flags:
                t = f"{t} {md_text(flags_text(c.flags))}".lstrip()
            cells.append(t)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def flag_notes(flags: FlagSummary) -> tuple[list[str], list[str]]:
    """The line at the top and the legend at the end; both empty when no figure is flagged."""
    if not flags.flagged:
        return [], []
    top = [f"> **{md_text(flags.text)}**", ""]
    legend = ["## Flags", ""] + [f"- {FLAG_MARK} **{md_text(name)}**: {md_text(text)}"
                                 for name, text in flags.legend.items()] + [""]
    return top, legend


def _when(ts: float | None) -> str:
    if not ts:
        return "–"
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


class MarkdownReporter(Reporter):
    name: ClassVar[str] = "markdown"
    extension: ClassVar[str] = "md"
    description: ClassVar[str] = "GitHub-flavoured Markdown: leaderboard per task"

    def render(self, data: RunData) -> str:
        run = data.run
        out = [f"# dlbench run {run.id}: {md_text(run.suite)}", ""]
        counts = status_counts(data.results)
        meta = [f"started {_when(run.started_at)}"]
        if run.git_commit:
            meta.append(f"commit {md_code(run.git_commit[:12])}")
        meta.append(", ".join(f"{n} {s}" for s, n in counts.items()) or "no results")
        out += [" · ".join(meta), ""]
        flagged, legend = flag_notes(flag_summary(data.results))
        out += flagged
        for task, tables in boards(data.results, data.scenarios).items():
            out += [f"## {md_text(task)}", ""]
            for t in tables:
                out += [f"### {md_text(t.title)}", "", md_table(t), ""]
        parity = parity_table(data.results)
        if parity:
            out += ["## Parity", "", md_table(parity), ""]
        corruptions = corruption_tables(data.results)
        if corruptions:
            out += ["## Corruptions", ""]
            for t in corruptions:
                out += [f"### {md_text(t.title)}", "", md_table(t), ""]
        if data.baseline is not None:
            bt = baseline_table(data.results, data.baseline.results, data.scenarios)
            if bt:
                out += [f"## Compared with run {data.baseline.run.id}", "", md_table(bt), ""]
        failures = sorted((r for r in data.results if r.status not in ("ok", "skipped")),
                          key=lambda r: r.cell.key)
        if failures:
            out += ["## Failures", ""]
            out += [f"- **{md_text(r.status)}** {md_code(r.cell.key)}: "
                    f"{md_text(first_line(r.error, 300) or '(no error text)')}" for r in failures]
            out.append("")
        skipped = [r for r in data.results if r.status == "skipped"]
        if skipped:
            out += [f"<details><summary>{len(skipped)} skipped</summary>", ""]
            out += [f"- {md_code(r.cell.key)}: {md_text(first_line(r.error, 300))}"
                    for r in sorted(skipped, key=lambda r: r.cell.key)]
            out += ["", "</details>", ""]
        out += legend
        return "\n".join(out).rstrip() + "\n"
