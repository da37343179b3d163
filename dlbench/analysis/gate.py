"""CI gate: from a :class:`~dlbench.analysis.compare.Comparison` to an exit code, a Markdown summary and
JUnit XML.

Exit codes: 0 pass; 1 confirmed regression; 2 inconclusive or infrastructure failure (a cell
failed, crashed or timed out, a baseline cell is missing in head, there is no baseline, or a
confirmation re-run failed). A confirmed regression wins over everything else (exit 1), so a
regression is never mistaken for a retryable infrastructure failure.

Rows whose figures carry warnings (contended, not converged, drifting, inconsistent, repeats
disagree; see :mod:`dlbench.analysis.compare`) are never regressions, so a comparison whose changes all
sit on flagged figures is inconclusive (exit 2), and its summary names each flag: rerun on a
quiet machine, or with ``repeats``, rather than read a number the run says it cannot vouch for.

Confirmation: cells found to regress are measured once more (the caller's ``confirm`` callback
re-runs those cell keys in fresh processes) and compared again with the baseline; a regression
is kept only when the re-run is a regression too (a re-run with flagged figures is not). Its
re-run verdict replaces an unconfirmed one (unchanged or improvement: pass; inconclusive: exit 2).
"""

from __future__ import annotations

import copy
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

from dlbench.analysis.compare import (
    CANARY_SCENARIO,
    VERDICTS,
    CellComparison,
    Comparison,
    compare_runs,
)
from dlbench.analysis.thresholds import Thresholds
from dlbench.report.escape import md_code, md_text, xml_text
from dlbench.result import Result
from dlbench.run.gate_schema import GateSchema

ConfirmFn = Callable[[list[str]], "list[Result] | tuple[list[Result], list[Result]]"]
"""Re-measures flagged keys: their new head results, or (base, head) when both sides are measured
again (an A/B gate re-runs the pair, interleaved, instead of re-using the first base)."""


class GateConfig(GateSchema):
    """A suite's ``gate:`` section (its schema, checked at suite load, is
    :class:`dlbench.run.gate_schema.GateSchema`), turned into thresholds."""

    def to_thresholds(self) -> Thresholds:
        return Thresholds(**self.thresholds.values(), informational=tuple(self.informational),
                          overrides={k: v.values() for k, v in self.cells.items()})


@dataclass
class GateDecision:
    exit_code: int
    outcome: str  # pass | regression | inconclusive
    message: str
    comparison: Comparison
    rows: list[CellComparison]
    confirmation: Comparison | None = None
    confirmed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def decide(comparison: Comparison, confirm: ConfirmFn | None = None,
           config: GateConfig | None = None) -> GateDecision:
    """The gate's decision; ``confirm`` re-measures flagged cell keys (plus the canary, when the
    comparison has one, so drift is re-estimated) and returns their new results."""
    cfg = config or GateConfig()
    rows = [copy.copy(r) for r in comparison.rows]
    if not comparison.base_results:
        return GateDecision(2, "inconclusive", "no baseline results: nothing to compare against",
                            comparison, rows)
    flagged = comparison.keys_with("regression")
    confirmation: Comparison | None = None
    confirmed: list[str] = []
    dropped: list[str] = []
    if flagged and confirm is not None and cfg.confirm:
        canaries = [k for k, r in comparison.base_results.items()
                    if r.cell.scenario == CANARY_SCENARIO and k not in flagged]
        try:
            got = confirm(flagged + canaries)
            fresh_base, rerun = got if isinstance(got, tuple) else (None, list(got))
        except Exception as e:  # noqa: BLE001 - any failure of the re-run is an infra failure
            for r in rows:
                if r.gated and r.verdict == "regression":
                    r.verdict = "inconclusive"
                    r.reason += f"; confirmation re-run failed: {type(e).__name__}: {e}"
            rerun = None
        if rerun is not None:
            base = (fresh_base if fresh_base is not None
                    else [comparison.base_results[k] for k in flagged + canaries])
            confirmation = compare_runs(base, rerun, comparison.thresholds, base_env={},
                                        head_env={})
            confirmed, dropped = _apply_confirmation(rows, confirmation)
    final = [r for r in rows if r.gated]
    verdicts = {r.verdict for r in final}
    regressions = list(dict.fromkeys(r.key for r in final if r.verdict == "regression"))
    problems = {v: list(dict.fromkeys(r.key for r in final if r.verdict == v))
                for v in ("failed", "missing", "inconclusive")}
    if cfg.allow_missing:
        problems["missing"] = []
    if cfg.allow_inconclusive:
        problems["inconclusive"] = []
    compared = any(r.verdict not in ("new", "missing") for r in rows)
    if regressions:
        how = " (confirmed by a re-run)" if confirmation is not None else ""
        code, outcome, msg = 1, "regression", f"{len(regressions)} cells regressed{how}"
    elif any(problems.values()) or not compared:
        code, outcome = 2, "inconclusive"
        parts = [f"{len(v)} {k}" for k, v in problems.items() if v]
        msg = ", ".join(parts) if parts else "no cell of the baseline was measured again"
    else:
        code, outcome, msg = 0, "pass", "no regression"
    if dropped:
        msg += f"; {len(dropped)} flagged cells not confirmed by the re-run"
    if "improvement" in verdicts:
        msg += f"; {sum(r.verdict == 'improvement' for r in final)} improvements"
    return GateDecision(code, outcome, msg, comparison, rows, confirmation, confirmed, dropped)


def _apply_confirmation(rows: list[CellComparison], conf: Comparison) -> tuple[list[str],
                                                                               list[str]]:
    again = {(r.key, r.name): r for r in conf.rows}
    confirmed: dict[str, None] = {}
    dropped: dict[str, None] = {}
    for r in rows:
        if not (r.gated and r.verdict == "regression"):
            continue
        c = again.get((r.key, r.name)) or again.get((r.key, "cell"))
        if c is not None and c.verdict == "regression":
            r.reason += f"; confirmed by re-run ({c.reason})"
            confirmed[r.key] = None
            continue
        dropped[r.key] = None
        if c is None:
            r.verdict, why = "inconclusive", "re-run returned no result"
        elif c.verdict in ("unchanged", "improvement", "inconclusive"):
            r.verdict, why = c.verdict, c.reason
        else:
            r.verdict, why = "inconclusive", f"re-run {c.verdict}: {c.reason}"
        r.reason = f"regression not confirmed by re-run ({why}); first run: {r.reason}"
    return list(confirmed), [k for k in dropped if k not in confirmed]


# ----------------------------------------------------------------------------- rendering

_ICON = {"regression": "❌", "failed": "💥", "missing": "❓", "inconclusive": "⚠️",
         "improvement": "🚀", "unchanged": "✅", "new": "🆕", "skipped": "⏭️"}
_OUTCOME = {"pass": "✅ pass", "regression": "❌ regression",
            "inconclusive": "⚠️ inconclusive"}


def _num(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:.4g}"


def _change(r: CellComparison) -> str:
    if r.scale == "points":
        ci = (f" [{r.delta_ci_low:+.3f}, {r.delta_ci_high:+.3f}]"
              if math.isfinite(r.delta_ci_low) else "")
        return f"{r.delta:+.3f}{ci}" if math.isfinite(r.delta) else "–"
    if r.scale == "none" or not math.isfinite(r.ratio):
        return "–"
    ci = (f" [{r.ci_low - 1:+.1%}, {r.ci_high - 1:+.1%}]"
          if math.isfinite(r.ci_low) and math.isfinite(r.ci_high) else "")
    return f"{r.ratio - 1:+.1%}{ci}"


def _md_row(r: CellComparison) -> str:
    q = r.q_value if math.isfinite(r.q_value) else r.p_value
    unit = md_text(r.unit)
    cells = [f"{_ICON.get(r.verdict, '')} {md_text(r.verdict)}", md_code(r.key, in_table=True),
             md_text(r.name), f"{_num(r.base_median)} {unit}".strip(),
             f"{_num(r.head_median)} {unit}".strip(), _change(r), _num(q), md_text(r.reason)]
    return "| " + " | ".join(cells) + " |"


_HEADER = ("| Verdict | Cell | Measure | Base | Head | Change [95% CI] | q | Reason |\n"
           "|---|---|---|---|---|---|---|---|")


def to_markdown(decision: GateDecision) -> str:
    """A CI job summary / PR comment: outcome, summary, drift and environment warnings, a table of
    every row that is not unchanged (worst first) and the unchanged ones folded away."""
    cmp = decision.comparison
    out = [f"## dlbench gate: {_OUTCOME[decision.outcome]} (exit {decision.exit_code})", "",
           f"**{md_text(decision.message)}**", "", md_text(cmp.summary()), ""]
    if cmp.drift is not None:
        d = cmp.drift
        state = (f"CPU speed rows corrected: divided by x{d.applied:.3f}" if d.applied != 1.0
                 else md_text(d.why_not))
        out += [f"> ℹ️ Machine drift, for information (canary {md_code(d.key)}, never gates): head/base "
                f"x{d.ratio:.3f} [{d.ci_low:.3f}, {d.ci_high:.3f}], p={d.p_value:.2g}; {state}.", ""]
    family = sum(1 for r in cmp.gated_rows if math.isfinite(r.q_value))
    out += [f"> Multiple comparisons: Benjamini-Hochberg over the {family} gated rows with a p-value "
            f"(the q column; FDR {cmp.thresholds.alpha:g}); flagged figures stay out of the family.", ""]
    if cmp.environment:
        out += ["> ⚠️ **Environments differ** (numbers may not be comparable):"]
        out += [f"> - {md_text(line)}" for line in cmp.environment[:20]]
        if len(cmp.environment) > 20:
            out.append(f"> - ... and {len(cmp.environment) - 20} more")
        out.append("")
    order = {v: i for i, v in enumerate(VERDICTS)}
    rows = sorted(decision.rows, key=lambda r: (not r.gated, order.get(r.verdict, 99)))
    shown = [r for r in rows if r.verdict != "unchanged" and r.kind != "canary"]  # the canary: above
    quiet = [r for r in rows if r.verdict == "unchanged" and r.kind != "canary"]
    if shown:
        out += [_HEADER, *map(_md_row, shown), ""]
    if quiet:
        out += [f"<details><summary>{len(quiet)} unchanged rows</summary>", "", _HEADER,
                *map(_md_row, quiet), "", "</details>", ""]
    th = cmp.thresholds
    out.append(f"<sub>Welch t on process medians (process repeats) or autocorrelation-aware "
               f"Mann-Whitney U (one process) / exact McNemar, Benjamini-Hochberg q < {th.alpha:g}; "
               "flagged figures are never a regression or improvement; "
               f"thresholds: speed {th.min_effect:.0%}, accuracy {th.accuracy_drop:g} points, "
               f"memory +{th.memory_increase:.0%}.</sub>")
    return "\n".join(out) + "\n"


def to_junit(decision: GateDecision) -> str:
    """JUnit XML: one testcase per cell; regression = failure, failed/missing = error,
    inconclusive or skipped = skipped (with the reason as message). Every text and attribute
    goes through :func:`~dlbench.report.escape.xml_text`, so the file is well-formed whatever an
    error text holds (ANSI colours, form feeds)."""
    by_key: dict[str, list[CellComparison]] = {}
    for r in decision.rows:
        by_key.setdefault(r.key, []).append(r)
    suites = ET.Element("testsuites", name="dlbench gate")
    suite = ET.SubElement(suites, "testsuite", name="dlbench gate")
    props = ET.SubElement(suite, "properties")
    for name, value in (("exit_code", decision.exit_code), ("outcome", decision.outcome),
                        ("message", decision.message)):
        ET.SubElement(props, "property", name=name, value=xml_text(str(value)))
    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total = 0.0
    order = {v: i for i, v in enumerate(VERDICTS)}
    for key, rs in by_key.items():
        gated = [r for r in rs if r.gated] or rs
        worst = min(gated, key=lambda r: order.get(r.verdict, 99))
        classname = xml_text(key.split("[", 1)[0].replace("/", "."))
        ran = decision.comparison.head_results.get(key)  # the gated run's time for the cell
        seconds = ran.duration if ran is not None and ran.duration is not None and math.isfinite(ran.duration) else 0.0
        case = ET.SubElement(suite, "testcase", classname=classname, name=xml_text(key), time=f"{seconds:.3f}")
        total += seconds
        counts["tests"] += 1
        bad = [r for r in gated if r.verdict == worst.verdict]
        message = xml_text("; ".join(f"{r.name}: {r.reason}" for r in bad))
        if not worst.gated:
            pass
        elif worst.verdict == "regression":
            ET.SubElement(case, "failure", message=message, type="regression").text = message
            counts["failures"] += 1
        elif worst.verdict in ("failed", "missing"):
            ET.SubElement(case, "error", message=message, type=worst.verdict).text = message
            counts["errors"] += 1
        elif worst.verdict in ("inconclusive", "skipped"):
            ET.SubElement(case, "skipped", message=f"{worst.verdict}: {message}")
            counts["skipped"] += 1
        ET.SubElement(case, "system-out").text = xml_text("\n".join(
            f"{r.verdict:12} {r.name}: {r.reason}" for r in rs))
    for el in (suites, suite):
        for k, v in counts.items():
            el.set(k, str(v))
        el.set("time", f"{total:.3f}")
    ET.indent(suites)
    body = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"
