"""The harness-fidelity scenario: dlbench's throughput over a plain hand-written loop's."""

from __future__ import annotations

import math
from pathlib import Path

from robustness_helpers import run_cell

from dlbench.scenarios.fidelity import plain_loop


def test_plain_loop_is_one_warm_call_then_n_steps_and_one_sync() -> None:
    calls = {"step": 0, "sync": 0}

    def step() -> None:
        calls["step"] += 1

    def sync() -> None:
        calls["sync"] += 1

    per_iteration = plain_loop(step, sync, 50)
    assert calls == {"step": 51, "sync": 2}
    assert per_iteration > 0


def test_fidelity_cell_reports_both_ratios_per_round(tmp_path: Path, plugin_dir: Path) -> None:
    res = run_cell("blobs", "numpyfw", {"rounds": 3, "batch_size": 32}, tmp_path,
                   plugins_dirs=(str(plugin_dir),), scenario="fidelity")
    assert res.status == "ok", res.error
    by_name = {m.name: m.samples for m in res.measurements}
    for name in ("throughput", "throughput_mean", "plain_throughput", "fidelity_ratio",
                 "fidelity_ratio_mean"):
        assert len(by_name[name]) == 3 and all(v > 0 and math.isfinite(v) for v in by_name[name]), name
    # each round's ratio is that round's harness figure over that round's plain loop
    for h, q, r in zip(by_name["throughput"], by_name["plain_throughput"], by_name["fidelity_ratio"],
                       strict=True):
        assert math.isclose(r, h / q)
    assert res.metrics["fidelity_ratio"] == sorted(by_name["fidelity_ratio"])[1]
    assert res.metrics["fidelity_ratio_mean"] == sorted(by_name["fidelity_ratio_mean"])[1]
    # the terminal, Markdown and HTML reports lead with the ratio, not the raw throughput
    from dlbench.report.common import headline

    h = headline(res)
    assert h is not None and h.name == "fidelity_ratio" and h.value == res.metrics["fidelity_ratio"]
