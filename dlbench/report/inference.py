"""The inference board: the same model's deployment figures side by side, one row per framework
or runtime configuration, where a run measured an inference runtime.

A row is one configuration (framework, device and its settings but the batch size) of one
model (one spec digest) that a timed scenario (one that feeds the ``throughput`` and ``latency``
charts) ran in ``mode=infer``: its batch-1 latency percentiles, its throughput at every other
batch size (ranked by the largest, with the ratio to the best), and beside them the headline of
every other scenario run on the same configuration (parity's worst error against the
reference, the test accuracy of the weights it ran): cells match when they agree on every
parameter they share except the scenarios' own. The board appears for a task when at least one
of its timed configurations is a framework that cannot train (``environment["framework_trains"]``
False: ONNX Runtime, OpenVINO), so a training-only run keeps just its leaderboards.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from dlbench.report.common import (
    DASH,
    Scenarios,
    config_labels,
    group_by_task,
    headline,
    installed_scenarios,
    is_nan,
    scenario_of,
)
from dlbench.report.tables import Table, TCell, figure_cell, leaderboards, rank_key, status_cell
from dlbench.result import Result
from dlbench.scenarios.figures import Figure, measurement_figure

TIMED = ("batch_size", "mode")  # what differs between the cells of one row


def boards(results: list[Result], scenarios: Scenarios | None = None) -> dict[str, list[Table]]:
    """Per task, its inference boards (where there are any) first, then its leaderboards."""
    found = installed_scenarios() if scenarios is None else scenarios
    out = leaderboards(results, found)
    for task, rs in group_by_task(results).items():
        tables = inference_boards(task, rs, found)
        if tables:
            out[task] = [*tables, *out.get(task, [])]
    return out


def _timed(r: Result, scenarios: Scenarios) -> bool:
    sc = scenario_of(r, scenarios)
    return (sc is not None and {"throughput", "latency"} <= set(sc.charts)
            and r.cell.params.get("mode") == "infer")


def _config(r: Result, skip: Iterable[str]) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    excl = set(skip)
    return (r.cell.framework, r.cell.device,
            tuple(sorted((k, repr(v)) for k, v in r.cell.params.items() if k not in excl)))


def _matches(other: Result, row: Result, skip: set[str]) -> bool:
    """Whether ``other`` ran the configuration of ``row``: same framework and device, equal on
    every parameter both cells have, except ``skip`` (the scenarios' own)."""
    if (other.cell.framework, other.cell.device) != (row.cell.framework, row.cell.device):
        return False
    shared = (set(other.cell.params) & set(row.cell.params)) - skip
    return all(other.cell.params[k] == row.cell.params[k] for k in shared)


def inference_boards(task: str, results: list[Result], scenarios: Scenarios) -> list[Table]:
    timed = [r for r in results if _timed(r, scenarios)]
    if not any(r.environment.get("framework_trains") is False for r in timed):
        return []
    own = {k for r in timed if (sc := scenario_of(r, scenarios)) for k in sc.params}
    models: dict[str, list[Result]] = defaultdict(list)
    for r in timed:
        models[r.model.spec_digest if r.model else ""].append(r)
    reps = [group[0].cell for group in models.values()]
    titles = config_labels(reps, exclude=(*TIMED, "variant", "precision")) if len(reps) > 1 else [""] * len(reps)
    others = [r for r in results if not _timed(r, scenarios) and scenario_of(r, scenarios) is not None]
    tables = []
    for group, title in zip(models.values(), titles, strict=True):
        table = _board(task, group, others, scenarios, own | set(TIMED))
        if table is not None:
            # the model's settings, not the framework of the first row
            table.title += f" — {title.split('[', 1)[1].rstrip(']')}" if "[" in title else ""
            tables.append(table)
    return tables


def _board(task: str, group: list[Result], others: list[Result], scenarios: Scenarios,
           skip: set[str]) -> Table | None:
    rows: dict[tuple, list[Result]] = defaultdict(list)
    for r in group:
        rows[_config(r, skip)].append(r)
    batches = sorted({int(r.cell.params.get("batch_size") or 0) for r in group} - {0, 1})
    latency = any(int(r.cell.params.get("batch_size") or 0) == 1 for r in group)
    reps = [rs[0] for rs in rows.values()]
    labels = dict(zip(map(id, reps), config_labels([r.cell for r in reps], exclude=skip), strict=True))
    other_scenarios = list(dict.fromkeys(r.cell.scenario for r in others
                                         if any(_matches(r, rep, skip | _own(r, scenarios)) for rep in reps)))
    head = ["#", "Framework"]
    if latency:
        head.append("Latency p50 / p99 (ms), batch 1")
    head += [f"Throughput (samples/s) [95% CI], batch {b}" for b in batches]
    if batches:
        head.append("vs best")
    head += [scenarios[s].report_title() for s in other_scenarios] + ["Status"]

    def figure(rs: list[Result], bs: int, name: str) -> Figure | None:
        r = next((r for r in rs if int(r.cell.params.get("batch_size") or 0) == bs and r.status == "ok"), None)
        f = measurement_figure(r, name) if r is not None else None
        if f is None or name != "latency" or f.source is None or f.source.stats is None:
            return f
        return replace(f, values=(f.value, f.source.stats.p99))  # p50 / p99

    top = batches[-1] if batches else None
    ranked = sorted(rows.values(), key=lambda rs: rank_key(figure(rs, top, "throughput") if top else None))
    best = max((f.value for rs in ranked if top and (f := figure(rs, top, "throughput"))), default=None)
    table = Table(f"Inference — {task}", head, note=(
        "one row per framework or runtime configuration of the same model and weights: batch-1 "
        "latency, throughput per batch size (ranked by the largest), and what the other "
        "scenarios measured on that configuration"))
    rank = 0
    for rs in ranked:
        rep = rs[0]
        tput = figure(rs, top, "throughput") if top else None
        rank += 1 if tput is not None else 0
        row = [TCell(str(rank) if tput is not None else "", "num"), TCell(labels[id(rep)], "label")]
        if latency:
            row.append(figure_cell(figure(rs, 1, "latency")))
        for b in batches:
            f = figure(rs, b, "throughput")
            cell = figure_cell(f)
            if b == top and f is not None and best is not None and f.value == best and len(ranked) > 1:
                cell.cls += " best"
            row.append(cell)
        if batches:
            ratio = tput.value / best if tput is not None and best else float("nan")
            row.append(TCell("" if is_nan(ratio) else f"{ratio:.2f}×", "num"))
        for s in other_scenarios:
            match = [r for r in others if r.cell.scenario == s
                     and _matches(r, rep, skip | _own(r, scenarios))]
            h = headline(match[0], scenarios) if match and match[0].status == "ok" else None
            row.append(figure_cell(h) if h is not None else
                       TCell(match[0].status if match else DASH, "na" if match else ""))
        bad = [r for r in rs if r.status != "ok"]
        row.append(status_cell(bad[0] if bad else rep))
        table.rows.append(row)
    return table if table.rows else None


def _own(r: Result, scenarios: Scenarios) -> set[str]:
    sc = scenario_of(r, scenarios)
    return set(sc.params) if sc is not None else set()

