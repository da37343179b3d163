"""Leaderboard and comparison tables built from results: plain cells of text and CSS classes,
rendered by the Markdown and HTML reporters."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dlbench.report.common import (
    DASH,
    Flag,
    Scenarios,
    as_float,
    config_labels,
    first_line,
    flags_of,
    fmt_duration,
    fmt_num,
    fmt_value_ci,
    group_by,
    group_by_task,
    headline,
    installed_scenarios,
    is_classic,
    is_nan,
    parity_rows,
)
from dlbench.result import Result
from dlbench.scenarios.base import Scenario
from dlbench.scenarios.figures import Figure


@dataclass
class TCell:
    """One table cell: its text, CSS classes (``num``, ``best``, ``pass``, ``fail``...) and the
    flags of the figure it shows (each reporter renders them next to the text)."""

    text: str
    cls: str = ""
    title: str = ""
    flags: tuple[Flag, ...] = ()


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[TCell]] = field(default_factory=list)
    note: str = ""

    def column(self, name: str) -> list[TCell]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]


def drop_empty_columns(table: Table, keep: Iterable[str]) -> Table:
    keep_set = set(keep)
    idx = [i for i, c in enumerate(table.columns)
           if c in keep_set or any(r[i].text not in ("", DASH) or r[i].flags for r in table.rows)]
    return Table(table.title, [table.columns[i] for i in idx],
                 [[r[i] for i in idx] for r in table.rows], table.note)


def status_cell(result: Result) -> TCell:
    if result.status == "ok":
        return TCell("ok", "status-ok")
    return TCell(result.status, f"status-{result.status}", first_line(result.error, 300))


def threads_text(result: Result) -> str:
    """The intra-op thread count the cell used (``environment["threads"]``), or empty."""
    threads = result.environment.get("threads")
    return "" if threads is None else str(threads)


def figure_cell(f: Figure | None, cls: str = "num") -> TCell:
    """A table cell showing a scenario's figure: its text, or its value (with its CI where
    known, or as a duration), its pass/fail class and its flags."""
    if f is None:
        return TCell("", cls)
    if f.display is not None:
        text = f.display
    elif f.values:
        text = " / ".join(fmt_num(v, f.sig) for v in f.values)
    elif f.fmt == "duration":
        text = fmt_duration(f.value)
    else:
        text = fmt_value_ci(f.value, f.ci_low, f.ci_high, sig=f.sig)
    if f.inconclusive:
        cls = "na"
    elif f.passed is not None:
        cls = "pass" if f.passed else "fail"
    return TCell(text, cls, flags=flags_of(f.source))


def rank_key(f: Figure | None) -> tuple[bool, float]:
    """Sort key putting the best figure first (its direction) and missing or NaN ones last."""
    v = f.value if f is not None else float("nan")
    if f is None or is_nan(v):
        return (True, 0.0)
    return (False, -v if f.higher_is_better else v)


def leaderboard(scenario: Scenario, task: str, results: list[Result]) -> Table | None:
    """The leaderboard of one scenario on one task, from the scenario's
    :meth:`~dlbench.scenarios.base.Scenario.columns`: split by its ``group_by`` parameters,
    ranked by its ranked column (best first, numbered), the best value of each ``best`` column
    marked, a ratio to the best after a ``vs_best`` column, then the status."""
    rs = [r for r in results if r.cell.scenario == scenario.name]
    columns = scenario.columns(rs) if rs else []
    if not columns:
        return None
    groups = dict(scenario.group_by)
    ranked_by = next((c for c in columns if c.rank), None)
    labels = dict(zip(map(id, rs), config_labels([r.cell for r in rs], exclude=tuple(groups)),
                      strict=True))
    head = [*groups.values(), *(["#"] if ranked_by else []), "Framework"]
    for c in columns:
        head += [c.title, "vs best"] if c.vs_best else [c.title]
    table = Table(f"{scenario.report_title()} — {task}", [*head, "Status"])
    for values, group in group_by(rs, *groups).items():
        figs = {id(r): [c.figure(r) if r.status == "ok" else None for c in columns] for r in group}
        # a classic baseline (scikit-learn) is a reference row after the ranked frameworks: the
        # board's model (e.g. model=cnn) is not what it ran
        refs = [r for r in group if is_classic(r)]
        group = [r for r in group if not is_classic(r)]
        if ranked_by is not None:
            i = columns.index(ranked_by)
            group = sorted(group, key=lambda r: rank_key(figs[id(r)][i]))
        best: dict[int, float] = {}  # the best value of each column, over this group's figures
        marked: set[int] = set()  # columns whose best is marked: more than one figure to compare
        for i, c in enumerate(columns):
            fs = [f for r in group if (f := figs[id(r)][i]) is not None and not is_nan(f.value)]
            if (c.best or c.vs_best) and fs:
                vals = [f.value for f in fs]
                best[i] = max(vals) if fs[0].higher_is_better else min(vals)
                if c.best and len(fs) > 1:
                    marked.add(i)
        rank = 0
        for r in group + refs:
            ok = r.status == "ok"
            ref = is_classic(r)
            rank += 1 if ok and not ref else 0
            row = [TCell(DASH if v is None else (fmt_num(v) if isinstance(v, (int, float)) else str(v)),
                         "num" if isinstance(v, (int, float)) else "") for v in values]
            if ranked_by is not None:
                row.append(TCell("ref" if ref else (str(rank) if ok else ""), "num ref" if ref else "num",
                                 "classic baseline: not ranked against the neural model" if ref else ""))
            row.append(TCell(f"{labels[id(r)]} (classic baseline)" if ref else labels[id(r)], "label"))
            for i, c in enumerate(columns):
                f = figs[id(r)][i]
                cell = figure_cell(f)
                if i in marked and f is not None and f.value == best[i]:
                    cell.cls += " best"
                row.append(cell)
                if c.vs_best:
                    ratio = f.value / best[i] if f is not None and best.get(i) else float("nan")
                    row.append(TCell("" if is_nan(ratio) else f"{ratio:.2f}×", "num"))
            row.append(status_cell(r))
            table.rows.append(row)
    keep = [*groups.values(), "#", "Framework", "vs best", "Status",
            *(c.title for c in columns if c.keep or c.rank)]
    return drop_empty_columns(table, keep=keep)


def leaderboards(results: list[Result], scenarios: Scenarios | None = None) -> dict[str, list[Table]]:
    """Per task, the leaderboard of each scenario that has one (in the order the scenarios
    first appear in the run), each only when present. Boards with a finished cell come first;
    a board whose cells were all skipped comes last and says why (their distinct reasons)."""
    out: dict[str, list[Table]] = {}
    found = installed_scenarios() if scenarios is None else scenarios
    order = [found[n] for n in dict.fromkeys(r.cell.scenario for r in results) if n in found]
    empty: list[tuple[str, Table]] = []
    for task, rs in group_by_task(results).items():
        for sc in order:
            t = leaderboard(sc, task, rs)
            if t is None:
                continue
            mine = [r for r in rs if r.cell.scenario == sc.name]
            if all(r.status == "skipped" for r in mine):
                t.note = skip_note(mine)
                empty.append((task, t))
            else:
                out.setdefault(task, []).append(t)
    for task, t in empty:
        out.setdefault(task, []).append(t)
    return out


def skip_note(results: list[Result]) -> str:
    """Why every one of ``results`` was skipped: their distinct reasons, most frequent first."""
    reasons: dict[str, int] = {}
    for r in results:
        reason = first_line(r.error, 200) or "no reason recorded"
        reasons[reason] = reasons.get(reason, 0) + 1
    ordered = sorted(reasons.items(), key=lambda kv: -kv[1])
    shown = "; ".join(f"{text} ({n} cell{'s' if n != 1 else ''})" for text, n in ordered[:3])
    more = f"; and {len(ordered) - 3} other reasons" if len(ordered) > 3 else ""
    return f"Every cell here was skipped: {shown}{more}."


def parity_table(results: list[Result]) -> Table | None:
    rows: list[list[TCell]] = []
    parity = sorted((r for r in results if parity_rows(r)), key=lambda r: r.cell.key)
    labels: dict[int, str] = {}
    for rs in group_by_task(parity).values():  # keras[backend=jax] vs keras[backend=torch]
        labels.update(zip(map(id, rs), config_labels([r.cell for r in rs]), strict=True))
    for r in parity:
        for p in parity_rows(r):
            passed = p.get("passed")
            rows.append([TCell(r.cell.task), TCell(labels[id(r)], "label"),
                         TCell(str(p.get("check", ""))), TCell(str(p.get("reference", "") or "")),
                         TCell(fmt_num(p.get("rel_error")), "num"),
                         TCell(DASH if p.get("tolerance") is None else fmt_num(p.get("tolerance")),
                               "num"),
                         TCell(DASH if passed is None else ("pass" if passed else "FAIL"),
                               "" if passed is None else ("pass" if passed else "fail"))])
    if not rows:
        return None
    return Table("Parity", ["Task", "Framework", "Check", "Reference", "Relative error",
                            "Tolerance", "Result"], rows)


def corruption_tables(results: list[Result]) -> list[Table]:
    """Per task, the metric under each corruption (``details["corruptions"]``: the task's own,
    see :meth:`dlbench.task.Task.corruptions`) at each severity, one row per framework and
    corruption."""
    tables = []
    for task, rs in group_by_task(results).items():
        rs = [r for r in rs if r.details.get("corruptions")]
        if not rs:
            continue
        labels = dict(zip(map(id, rs), config_labels([r.cell for r in rs]), strict=True))
        sevs = sorted({as_float(c.get("severity")) for r in rs for c in r.details["corruptions"]})
        sevs = [s for s in sevs if not math.isnan(s)]
        names = [fmt_num(int(s) if s.is_integer() else s) for s in sevs]
        rows = []
        for r in rs:
            grid: dict[str, dict[float, Any]] = defaultdict(dict)
            for c in r.details["corruptions"]:
                grid[str(c.get("corruption", ""))][as_float(c.get("severity"))] = c.get("metric")
            for name in sorted(grid):
                rows.append([TCell(labels[id(r)], "label"), TCell(name)] +
                            [TCell(fmt_num(grid[name].get(s), 4), "num") for s in sevs])
        tables.append(Table(f"Corruptions — {task}",
                            ["Framework", "Corruption", *[f"severity {n}" for n in names]],
                            rows))
    return tables


def baseline_table(results: list[Result], baseline: list[Result],
                   scenarios: Scenarios | None = None) -> Table | None:
    """Per cell present (ok) in both runs: the headline medians and their ratio; a change is
    called only when the 95% CIs do not overlap and neither figure carries a flag."""
    base = {r.cell.key: r for r in baseline if r.status == "ok"}
    rows: list[list[TCell]] = []
    for r in sorted(results, key=lambda r: r.cell.key):
        b = base.get(r.cell.key)
        if b is None or r.status != "ok":
            continue
        hc, hb = headline(r, scenarios), headline(b, scenarios)
        if hc is None or hb is None or not hb.value or is_nan(hb.value) or is_nan(hc.value):
            continue
        ratio = hc.value / hb.value
        verdict, cls = "within noise", ""
        overlap = not (hc.ci_low > hb.ci_high or hc.ci_high < hb.ci_low)
        if any(math.isnan(x) for x in (hc.ci_low, hc.ci_high, hb.ci_low, hb.ci_high)):
            verdict, overlap = "no CI", True
        if not overlap and (hc.flags or hb.flags):
            verdict = "inconclusive (flagged)"
        elif not overlap:
            better = (ratio > 1) == hc.higher_is_better
            verdict, cls = ("better", "pass") if better else ("worse", "fail")
        rows.append([TCell(r.cell.key, "label"), TCell(hc.name),
                     TCell(fmt_value_ci(hb.value, hb.ci_low, hb.ci_high), "num", flags=hb.flags),
                     TCell(fmt_value_ci(hc.value, hc.ci_low, hc.ci_high), "num", flags=hc.flags),
                     TCell(f"{ratio:.3f}×", "num"), TCell(verdict, cls)])
    if not rows:
        return None
    return Table("Baseline comparison", ["Cell", "Figure", "Baseline [95% CI]",
                                         "This run [95% CI]", "Ratio", "Change"], rows)
