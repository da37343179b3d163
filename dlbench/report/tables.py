"""Leaderboard and comparison tables built from results: plain cells of text and CSS classes,
rendered by the Markdown and HTML reporters."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from dlbench.report.common import (
    DASH,
    Flag,
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
    is_nan,
    measurement_headline,
    metric_ci,
    metric_direction,
    parity_rows,
    task_metrics,
)
from dlbench.result import Result


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


def speed_table(task: str, results: list[Result]) -> Table | None:
    """Speed leaderboard of one task: per (mode, batch size), fastest first, with the
    throughput's 95% CI, the ratio to the best, latency percentiles, first call and memory."""
    speed = [r for r in results if r.cell.scenario == "speed"]
    if not speed:
        return None
    labels = dict(zip(map(id, speed), config_labels([r.cell for r in speed],
                                                     exclude=("mode", "batch_size")), strict=True))
    cols = ["Mode", "Batch", "#", "Framework", "Threads", "Throughput (samples/s) [95% CI]",
            "vs best", "Latency p50 / p90 / p99 (ms)", "First call (s)", "Peak host (MB)",
            "Peak device (MB)", "Status"]
    table = Table(f"Speed — {task}", cols)
    for (mode, bs), group in group_by(speed, "mode", "batch_size").items():
        def tput(r: Result) -> float:
            h = measurement_headline(r, "throughput")
            return h.value if h and r.status == "ok" else float("nan")

        ranked = sorted(group, key=lambda r: (math.isnan(tput(r)),
                                              0.0 if math.isnan(tput(r)) else -tput(r)))
        best = max((tput(r) for r in ranked if not math.isnan(tput(r))), default=float("nan"))
        rank = 0
        for r in ranked:
            t = measurement_headline(r, "throughput")
            ok = r.status == "ok"
            rank += 1 if ok else 0
            lat = r.measurement("latency") if ok else None
            lat_text = ""
            if lat is not None and lat.stats is not None:
                s = lat.stats
                lat_text = f"{fmt_num(s.median)} / {fmt_num(s.p90)} / {fmt_num(s.p99)}"
            fc = r.measurement("first_call")
            fc_val = (fc.stats.median if fc is not None and fc.stats is not None
                      else r.metrics.get("compile_time_s"))
            ratio = tput(r) / best if ok and best and not math.isnan(best) else float("nan")
            is_best = ok and not math.isnan(ratio) and ratio == 1.0 and len(group) > 1
            table.rows.append([
                TCell(str(mode if mode is not None else DASH)),
                TCell(fmt_num(bs) if bs is not None else DASH, "num"),
                TCell(str(rank) if ok else "", "num"),
                TCell(labels[id(r)], "label"),
                TCell(threads_text(r) if ok else "", "num"),
                TCell(fmt_value_ci(t.value, t.ci_low, t.ci_high) if t and ok else
                      (DASH if ok else r.status), "num best" if is_best else "num",
                      flags=t.flags if t and ok else ()),
                TCell("" if math.isnan(ratio) else f"{ratio:.2f}×", "num"),
                TCell(lat_text, "num", flags=flags_of(lat)),
                TCell(fmt_num(fc_val) if ok else "", "num"),
                TCell(fmt_num(r.metrics.get("peak_host_memory_mb")) if ok else "", "num"),
                TCell(fmt_num(r.metrics.get("peak_device_memory_mb")) if ok else "", "num"),
                status_cell(r),
            ])
    return drop_empty_columns(table, keep=[c for c in cols[:7] if c != "Threads"] + ["Status"])


def accuracy_table(task: str, results: list[Result]) -> Table | None:
    """Accuracy leaderboard of one task: task metrics (with CI where known), training time and
    time to the target, best first by the first task metric."""
    acc = [r for r in results if r.cell.scenario == "accuracy"]
    if not acc:
        return None
    metrics: list[str] = []
    for r in acc:
        metrics += [m for m in task_metrics(r) if m not in metrics]
    primary = metrics[0] if metrics else None
    higher = metric_direction(primary) if primary else True

    def key(r: Result) -> tuple[bool, float]:
        v = as_float(r.metrics.get(primary)) if primary and r.status == "ok" else float("nan")
        return (math.isnan(v), -v if higher else v) if not math.isnan(v) else (True, 0.0)

    ranked = sorted(acc, key=key)
    labels = dict(zip(map(id, acc), config_labels([r.cell for r in acc]), strict=True))
    best: dict[str, float] = {}
    for m in metrics:
        vals = [as_float(r.metrics.get(m)) for r in acc if r.status == "ok"]
        vals = [v for v in vals if not math.isnan(v)]
        if len(vals) > 1:
            best[m] = max(vals) if metric_direction(m) else min(vals)
    cols = ["#", "Framework", *[f"{m} {'↑' if metric_direction(m) else '↓'}" for m in metrics],
            "Train time", "Time to target", "Status"]
    table = Table(f"Accuracy — {task}", cols)
    for i, r in enumerate(ranked, 1):
        ok = r.status == "ok"
        row = [TCell(str(i) if ok else "", "num"), TCell(labels[id(r)], "label")]
        for m in metrics:
            v = r.metrics.get(m)
            lo, hi = metric_ci(r, m)
            cls = "num best" if ok and m in best and as_float(v) == best[m] else "num"
            row.append(TCell(fmt_value_ci(v, lo, hi, sig=4) if ok else "", cls))
        ttt = as_float(r.metrics.get("time_to_target_s"))
        row.append(TCell(fmt_duration(r.metrics.get("train_time_s")) if ok else "", "num"))
        row.append(TCell(("not reached" if math.isnan(ttt) and "time_to_target_s" in r.metrics
                          else fmt_duration(ttt)) if ok else "", "num"))
        row.append(status_cell(r))
        table.rows.append(row)
    return drop_empty_columns(table, keep=cols[:2] + ["Status"])


def robustness_table(task: str, results: list[Result]) -> Table | None:
    """Clean metric with its CI, the worst-case robustness AUC (ranked best first: high for
    accuracies, low for errors such as RMSE) and the audit, one row per framework configuration."""
    rob = [r for r in results if r.cell.scenario == "robustness"]
    if not rob:
        return None
    labels = dict(zip(map(id, rob), config_labels([r.cell for r in rob]), strict=True))
    metric = next((r.details["metric"] for r in rob if isinstance(r.details.get("metric"), dict)),
                  {"name": "accuracy", "higher_is_better": True})
    name, hib = str(metric.get("name", "accuracy")), bool(metric.get("higher_is_better", True))
    cols = ["Framework", f"Clean {name}", f"Robustness AUC {'↑' if hib else '↓'}", "Audit checks", "Status"]
    table = Table(f"Robustness — {task}", cols)

    def rank(r: Result) -> float:
        auc = as_float(r.metrics.get("auc"))
        return math.inf if is_nan(auc) else (-auc if hib else auc)

    for r in sorted(rob, key=rank):
        audit = [a for a in r.details.get("audit") or [] if isinstance(a, dict)]
        passed = sum(1 for a in audit if a.get("passed"))
        audit_cell = TCell(f"{passed}/{len(audit)} passed" if audit else "",
                           "pass" if audit and passed == len(audit) else ("fail" if audit else ""))
        lo, hi = metric_ci(r, "clean_metric")
        table.rows.append([TCell(labels[id(r)], "label"),
                           TCell(fmt_value_ci(r.metrics.get("clean_metric"), lo, hi, sig=4), "num"),
                           TCell(fmt_num(r.metrics.get("auc"), 4), "num"), audit_cell,
                           status_cell(r)])
    return drop_empty_columns(table, keep=["Framework", "Status"])


def leaderboards(results: list[Result]) -> dict[str, list[Table]]:
    """Per task, its leaderboard tables (speed, accuracy, robustness), each only when present."""
    out: dict[str, list[Table]] = {}
    for task, rs in group_by_task(results).items():
        tables = [t for t in (speed_table(task, rs), accuracy_table(task, rs),
                              robustness_table(task, rs)) if t is not None]
        if tables:
            out[task] = tables
    return out


def parity_table(results: list[Result]) -> Table | None:
    rows: list[list[TCell]] = []
    parity = sorted((r for r in results if r.cell.scenario == "parity"), key=lambda r: r.cell.key)
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
        if not parity_rows(r) and r.status != "ok":
            rows.append([TCell(r.cell.task), TCell(labels[id(r)], "label"), TCell(DASH),
                         TCell(""), TCell(""), TCell(""), status_cell(r)])
    if not rows:
        return None
    return Table("Parity", ["Task", "Framework", "Check", "Reference", "Relative error",
                            "Tolerance", "Result"], rows)


def baseline_table(results: list[Result], baseline: list[Result]) -> Table | None:
    """Per cell present (ok) in both runs: the headline medians and their ratio; a change is
    called only when the 95% CIs do not overlap and neither figure carries a flag."""
    base = {r.cell.key: r for r in baseline if r.status == "ok"}
    rows: list[list[TCell]] = []
    for r in sorted(results, key=lambda r: r.cell.key):
        b = base.get(r.cell.key)
        if b is None or r.status != "ok":
            continue
        hc, hb = headline(r), headline(b)
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
