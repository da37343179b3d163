"""HTML reporter: ONE self-contained file (plotly.js inlined, no network) rendered with Jinja2
(autoescape on) from ``templates/report.html.j2``."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from markupsafe import Markup

from dlbench.measure.canary import CANARY_SCENARIO
from dlbench.report.base import Reporter, RunData
from dlbench.report.charts import (
    Chart,
    Colors,
    latency_charts,
    learning_curve_charts,
    robustness_charts,
    scaling_charts,
    throughput_charts,
)
from dlbench.report.common import (
    DASH,
    Scenarios,
    first_line,
    flag_summary,
    fmt_duration,
    headline,
    scenario_of,
    status_counts,
)
from dlbench.report.inference import boards
from dlbench.report.tables import (
    Table,
    TCell,
    baseline_table,
    corruption_tables,
    drop_empty_columns,
    figure_cell,
    parity_table,
    status_cell,
    threads_text,
)
from dlbench.report.trends import baseline_chart, history_charts
from dlbench.result import Result

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"

SECTION_TITLES = {
    "summary": "Summary", "leaderboard": "Leaderboards", "throughput": "Throughput",
    "latency": "Latency", "learning": "Learning curves", "parity": "Parity",
    "robustness": "Robustness", "scaling": "Scaling", "history": "History",
    "baseline": "Baseline", "cells": "All cells", "environment": "Environment",
}


def script_json(text: str) -> Markup:
    """JSON text safe inside ``<script type="application/json">`` (no ``</script>``, no
    ``<!--``, no line separators that break older parsers)."""
    safe = (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return Markup(safe)  # noqa: S704 - escaped above for a JSON script block


@lru_cache(maxsize=1)
def plotly_js() -> Markup:
    """plotly.js, once, for inlining (the offline bundle of the installed plotly package)."""
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    if "</script" in js.lower():  # never expected; keeps the inline <script> well-formed
        js = js.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    return Markup(js)  # noqa: S704 - trusted library code


def flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as ``(dotted.key, text)`` pairs."""
    out: list[tuple[str, str]] = []
    if isinstance(d, dict):
        for k in d:
            out += flatten(d[k], f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(d, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in d):
            out.append((prefix, ", ".join(map(str, d))))
        else:
            for i, v in enumerate(d):
                out += flatten(v, f"{prefix}.{i}" if prefix else str(i))
    else:
        out.append((prefix, "" if d is None else str(d)))
    return out


def environment_tables(data: RunData) -> list[Table]:
    run_env = dict(flatten(data.run.environment))
    tables = []
    if run_env:
        tables.append(Table("Run", ["Setting", "Value"],
                            [[TCell(k, "label"), TCell(v)] for k, v in run_env.items()]))
    per_fw: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in data.results:
        for k, v in flatten(r.environment):
            if run_env.get(k) != v and v not in per_fw[r.cell.framework][k]:
                per_fw[r.cell.framework][k].append(v)
    rows = [[TCell(fw, "label"), TCell(k), TCell(" / ".join(vs))]
            for fw in sorted(per_fw) for k, vs in sorted(per_fw[fw].items())]
    if rows:
        tables.append(Table("Per framework (where it differs from the run)",
                            ["Framework", "Setting", "Value"], rows))
    return tables


def _span(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return DASH
    lo, hi = min(values), max(values)
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)} – {fmt.format(hi)}"


def machine_table(data: RunData) -> Table | None:
    """What the figures ran on and beside: CPU model and cores, memory, GPUs, the BLAS and
    OpenMP libraries with their threads, each cell's threads, the machine's load while cells ran,
    how many figures were contended, and the canary (the machine's own drift reference)."""
    env, results = data.run.environment, data.results
    if not env and not any(r.environment for r in results):
        return None  # nothing was recorded (an imported or synthetic run)
    rows: list[list[TCell]] = []

    def add(name: str, value: str, title: str = "") -> None:
        rows.append([TCell(name, "label"), TCell(value, "", title)])

    if env.get("cpu") or env.get("cpu_count"):
        add("CPU", f"{env.get('cpu') or 'unknown model'}: {env.get('cpu_count') or '?'} logical cores, "
                   f"{env.get('affinity') or '?'} usable by this run (affinity)")
    if env.get("memory_gb"):
        add("Memory", f"{env['memory_gb']} GB")
    gpus = env.get("gpus") or []
    add("GPUs", ", ".join(f"{g.get('name')} ({g.get('memory')})" for g in gpus if isinstance(g, dict))
        or "none visible")
    pools: dict[str, set[str]] = defaultdict(set)
    for r in results:
        for p in r.environment.get("thread_pools") or data.run.environment.get("thread_pools") or []:
            if isinstance(p, dict):
                arch = f", {p['architecture']}" if p.get("architecture") else ""
                pools[f"{p.get('api')}: {p.get('library')} {p.get('version') or ''}{arch}".strip()].add(
                    str(p.get("threads")))
    for lib, counts in sorted(pools.items()):
        add("Thread pool", f"{lib}; threads {', '.join(sorted(counts, key=lambda t: (len(t), t)))}")
    threads = sorted({str(r.environment["threads"]) for r in results if r.environment.get("threads")})
    if threads:
        add("Threads per cell", ", ".join(threads), "intra-op threads each cell ran with")
    loads = [float(r.environment["load"]["loadavg_1m"]) for r in results
             if isinstance(r.environment.get("load"), dict) and "loadavg_1m" in r.environment["load"]]
    psi = [float(r.environment["load"]["cpu_pressure_avg10"]) for r in results
           if isinstance(r.environment.get("load"), dict) and "cpu_pressure_avg10" in r.environment["load"]]
    if loads:
        add("Load while cells ran", f"1-minute load average {_span(loads)} on {env.get('affinity') or '?'} cores"
            + (f"; CPU pressure (avg10) {_span(psi, '{:.1f}')}%" if psi else ""),
            "/proc/loadavg and /proc/pressure/cpu when each cell ended")
    flags = flag_summary(results)
    shares = [float(m.meta["contention"]) for r in results if r.status == "ok" for m in r.measurements
              if isinstance(m.meta.get("contention"), (int, float))]
    add("Contention", f"{flags.counts.get('contended', 0)} of {flags.figures} figures contended"
        + (f"; run-queue wait up to {max(shares):.0%} of their windows" if shares else ""),
        "windows slowed by other processes are retaken; a figure that could not avoid them is flagged")
    canary = next((r for r in results if r.cell.scenario == CANARY_SCENARIO and r.status == "ok"), None)
    h = headline(canary, data.scenarios) if canary is not None else None
    if canary is not None and canary.measurements:
        m = canary.measurements[0]
        st = m.stats
        text = (f"{st.median:.3g} {m.unit} [{st.ci_low:.3g} – {st.ci_high:.3g}]" if st is not None
                else DASH)
        add("Canary", f"{text} (one-thread float64 matmul, for information: compare and gate report the drift between two runs and divide it out of CPU figures only with drift_correction)"
            + (f"; {h.flags_text}" if h is not None and h.flags else ""))
    return Table("Machine and load", ["Setting", "Value"], rows) if rows else None


def audit_table(results: list[Result], scenarios: Scenarios | None = None) -> Table | None:
    """Per cell, its verdict (:meth:`~dlbench.scenarios.base.Scenario.verdict`: green, red, or
    grey when checks did not run) and each check: pass, FAIL, or grey ``not run`` (a check
    that could not run is no pass)."""
    rows = []
    for r in sorted(results, key=lambda r: r.cell.key):
        checks = [a for a in r.details.get("audit") or [] if isinstance(a, dict)]
        if not checks:
            continue
        sc = scenario_of(r, scenarios)
        v = sc.verdict(r) if sc is not None else None
        if v is not None:
            rows.append([TCell(r.cell.task), TCell(r.cell.framework, "label"), TCell("verdict"),
                         figure_cell(v, ""), TCell("")])
        for a in checks:
            p = a.get("passed")
            rows.append([TCell(r.cell.task), TCell(r.cell.framework, "label"),
                         TCell(str(a.get("check", ""))),
                         TCell("not run" if p is None else ("pass" if p else "FAIL"),
                               "na" if p is None else ("pass" if p else "fail")),
                         TCell(str(a.get("evidence", "")))])
    return Table("Gradient-masking audit", ["Task", "Framework", "Check", "Result", "Evidence"],
                 rows) if rows else None


def cells_table(results: list[Result], scenarios: Scenarios | None = None) -> Table:
    rows = []
    for r in sorted(results, key=lambda r: r.cell.key):
        h = headline(r, scenarios) if r.status == "ok" else None
        rows.append([TCell(r.cell.key, "label"), status_cell(r),
                     TCell(f"{h.name}: {h.value_text}", flags=h.flags) if h else
                     TCell(first_line(r.error, 120)),
                     TCell(h.ci_text if h else "", "num"), TCell(h.spread_text if h else "", "num"),
                     TCell("" if h is None or h.n is None else str(h.n), "num"),
                     TCell(threads_text(r), "num"),
                     TCell(fmt_duration(r.duration) if r.duration is not None else "", "num")])
    table = Table("All cells", ["Cell", "Status", "Headline", "95% CI", "Spread", "n", "Threads",
                                "Duration"], rows)
    return drop_empty_columns(table, keep=[c for c in table.columns if c != "Threads"])


def _when(ts: float | None) -> str:
    if not ts:
        return DASH
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def build_context(data: RunData) -> dict[str, Any]:
    run, results = data.run, data.results
    charts = build_charts(data)
    failures = sorted((r for r in results if r.status not in ("ok", "skipped")),
                      key=lambda r: r.cell.key)
    skipped = sorted((r for r in results if r.status == "skipped"), key=lambda r: r.cell.key)
    ctx: dict[str, Any] = {
        "run": run, "started": _when(run.started_at), "finished": _when(run.finished_at),
        "wall": fmt_duration(run.finished_at - run.started_at)
        if run.finished_at and run.started_at else DASH,
        "counts": status_counts(results), "total": len(results), "flags": flag_summary(results),
        "failures": failures, "skipped": skipped,
        "leaderboards": boards(results, data.scenarios), "charts": charts,
        "parity": parity_table(results), "corruptions": corruption_tables(results),
        "audit": audit_table(results, data.scenarios),
        "environment": [t for t in (machine_table(data), *environment_tables(data)) if t is not None],
        "cells": cells_table(results, data.scenarios) if results else None,
        "baseline_run": data.baseline.run if data.baseline is not None else None,
        "baseline_table": baseline_table(results, data.baseline.results, data.scenarios)
        if data.baseline is not None else None,
        "generated": _when(dt.datetime.now(tz=dt.timezone.utc).timestamp()),
        "plotly_js": plotly_js(), "script_json": script_json,
        "all_charts": [c for cs in charts.values() for c in cs],
    }
    shown = {
        "summary": True, "leaderboard": bool(ctx["leaderboards"]),
        "throughput": bool(charts["throughput"]), "latency": bool(charts["latency"]),
        "learning": bool(charts["learning"]), "parity": ctx["parity"] is not None,
        "robustness": bool(charts["robustness"] or ctx["corruptions"] or ctx["audit"]),
        "scaling": bool(charts["scaling"]), "history": bool(charts["history"]),
        "baseline": bool(ctx["baseline_table"] or charts["baseline"]),
        "cells": ctx["cells"] is not None, "environment": bool(ctx["environment"]),
    }
    ctx["sections"] = [(k, SECTION_TITLES[k]) for k, v in shown.items() if v]
    ctx["shown"] = shown
    return ctx


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True)


class HtmlReporter(Reporter):
    name: ClassVar[str] = "html"
    extension: ClassVar[str] = "html"
    description: ClassVar[str] = "one self-contained HTML file: leaderboards, charts, environment"

    def render(self, data: RunData) -> str:
        return _environment().get_template(TEMPLATE).render(**build_context(data))


def build_charts(data: RunData) -> dict[str, list[Chart]]:
    """All charts of a RunData by section (throughput, latency, learning, robustness, scaling,
    history, baseline); chart ids are made unique."""
    color = Colors()
    res = data.results
    sections = {
        "throughput": throughput_charts(res, color, data.scenarios),
        "latency": latency_charts(res, color, data.scenarios),
        "learning": learning_curve_charts(res, color, data.scenarios),
        "robustness": robustness_charts(res, color, data.scenarios),
        "scaling": scaling_charts(res, color, data.scenarios),
        "history": history_charts(res, data.history, data.run.id, data.scenarios)
        if data.history else [],
        "baseline": [],
    }
    if data.baseline is not None:
        bc = baseline_chart(res, data.baseline.results, data.scenarios)
        sections["baseline"] = [bc] if bc else []
    seen: set[str] = set()
    for charts in sections.values():
        for c in charts:
            base, i = c.id, 2
            while c.id in seen:
                c.id, i = f"{base}-{i}", i + 1
            seen.add(c.id)
    return sections
