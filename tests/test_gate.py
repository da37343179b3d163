"""Gate decisions: exit codes, confirmation re-runs, GateConfig, Markdown and JUnit output."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from pydantic import ValidationError

from dlbench.analysis.compare import compare_runs
from dlbench.analysis.gate import GateConfig, decide, to_junit, to_markdown
from dlbench.analysis.thresholds import Thresholds
from dlbench.cell import Cell
from dlbench.result import Measurement, Result


def speed(rng: np.random.Generator, task: str, scale: float = 1.0, n: int = 30) -> Result:
    cell = Cell("speed", task, "torch", "cpu", {"batch_size": 32, "mode": "infer"})
    s = 1000 * scale * np.exp(rng.normal(0, 0.03, n))
    return Result(cell, measurements=[Measurement("throughput", "samples/s", s.tolist())])


def canary(rng: np.random.Generator, scale: float = 1.0) -> Result:
    g = 50 * scale * np.exp(rng.normal(0, 0.02, 30))
    return Result(Cell("canary", "matmul", "numpy"),
                  measurements=[Measurement("gflops", "GFLOP/s", g.tolist())])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def test_pass_exit_0(rng):
    cmp = compare_runs([speed(rng, "a"), speed(rng, "b")], [speed(rng, "a"), speed(rng, "b")])
    d = decide(cmp)
    assert d.exit_code == 0 and d.outcome == "pass"


def test_regression_exit_1_without_confirm(rng):
    cmp = compare_runs([speed(rng, "a"), speed(rng, "b")],
                       [speed(rng, "a", 0.8), speed(rng, "b")])
    d = decide(cmp)
    assert d.exit_code == 1 and d.outcome == "regression"
    assert "1 cells regressed" in d.message


def test_infrastructure_failures_exit_2(rng):
    a, b = speed(rng, "a"), speed(rng, "b")
    crashed = Result(b.cell, status="timeout", error="exceeded 600 s")
    d = decide(compare_runs([a, b], [speed(rng, "a"), crashed]))
    assert d.exit_code == 2 and "1 failed" in d.message
    d = decide(compare_runs([a, b], [speed(rng, "a")]))  # b missing in head
    assert d.exit_code == 2 and "missing" in d.message
    assert decide(compare_runs([a, b], [speed(rng, "a")]), config=GateConfig(
        allow_missing=True)).exit_code == 0
    d = decide(compare_runs([], [a]))  # no baseline at all
    assert d.exit_code == 2 and "no baseline" in d.message
    d = decide(compare_runs([a], [speed(rng, "c")]))  # disjoint cells: nothing compared
    assert d.exit_code == 2


def test_inconclusive_exit_2_unless_allowed(rng):
    cmp = compare_runs([speed(rng, "a", n=3)], [speed(rng, "a", 0.8, n=3)])
    assert decide(cmp).exit_code == 2
    assert decide(cmp, config=GateConfig(allow_inconclusive=True)).exit_code == 0


def test_regression_wins_over_infrastructure_failure(rng):
    a, b = speed(rng, "a"), speed(rng, "b")
    d = decide(compare_runs([a, b], [speed(rng, "a", 0.7), Result(b.cell, status="crashed")]))
    assert d.exit_code == 1


def test_confirm_drops_an_unconfirmed_regression(rng):
    base = [speed(rng, "a"), speed(rng, "b")]
    cmp = compare_runs(base, [speed(rng, "a", 0.8), speed(rng, "b")])
    asked: list[list[str]] = []

    def rerun(keys: list[str]) -> list[Result]:  # the slowdown was a fluke: re-run is normal
        asked.append(keys)
        return [speed(rng, k.split("/")[1]) for k in keys]

    d = decide(cmp, confirm=rerun)
    assert asked == [[base[0].cell.key]]
    assert d.exit_code == 0 and d.dropped == [base[0].cell.key] and not d.confirmed
    row = next(r for r in d.rows if r.key == base[0].cell.key)
    assert row.verdict == "unchanged" and "not confirmed" in row.reason
    assert cmp.rows[0].verdict == "regression"  # the original comparison is untouched
    assert "not confirmed" in d.message


def test_confirm_keeps_a_real_regression_and_re_measures_the_canary(rng):
    base = [speed(rng, "a"), canary(rng)]
    cmp = compare_runs(base, [speed(rng, "a", 0.8), canary(rng)])
    asked: list[list[str]] = []

    def rerun(keys: list[str]) -> list[Result]:
        asked.append(keys)
        return [speed(rng, "a", 0.8) if k.startswith("speed") else canary(rng) for k in keys]

    d = decide(cmp, confirm=rerun)
    assert asked == [[base[0].cell.key, base[1].cell.key]]
    assert d.exit_code == 1 and d.confirmed == [base[0].cell.key]
    assert d.confirmation is not None and d.confirmation.drift is not None


def test_confirmation_failure_is_an_infrastructure_failure(rng):
    cmp = compare_runs([speed(rng, "a")], [speed(rng, "a", 0.8)])

    def broken(keys: list[str]) -> list[Result]:
        raise RuntimeError("runner died")

    d = decide(cmp, confirm=broken)
    assert d.exit_code == 2 and "runner died" in d.rows[0].reason
    d = decide(cmp, confirm=lambda keys: [Result(Cell("speed", "a", "torch", "cpu", {
        "batch_size": 32, "mode": "infer"}), status="crashed", error="OOM")])
    assert d.exit_code == 2
    assert decide(cmp, confirm=broken, config=GateConfig(confirm=False)).exit_code == 1


def test_gate_config_thresholds(rng):
    cfg = GateConfig.model_validate({"thresholds": {"speed": 0.05, "accuracy": 0.01},
                                     "cells": {"speed/a/*": {"speed": 0.3}}})
    th = cfg.to_thresholds()
    assert th.min_effect == 0.05 and th.accuracy_drop == 0.01
    assert th.for_key("speed/a/torch[cpu,bs=32,infer]").min_effect == 0.3
    assert th.for_key("speed/b/torch[cpu,bs=32,infer]").min_effect == 0.05
    cmp = compare_runs([speed(rng, "a")], [speed(rng, "a", 0.8)], th)
    assert decide(cmp, config=cfg).exit_code != 1
    with pytest.raises(ValidationError):
        GateConfig.model_validate({"thresholds": {"sped": 0.1}})
    with pytest.raises(ValidationError):
        GateConfig.model_validate({"thresholds": {"speed": -1}})


def test_markdown_summary(rng):
    a, b = speed(rng, "a"), speed(rng, "b")
    c = speed(rng, "c")
    cmp = compare_runs([a, b, c], [speed(rng, "a", 0.8), speed(rng, "b"),
                                   Result(c.cell, status="crashed", error="segfault | core")])
    md = to_markdown(decide(cmp))
    assert md.startswith("## dlbench gate: ❌ regression (exit 1)")
    assert "`speed/a/torch[cpu,bs=32,infer]`" in md
    assert "segfault \\| core" in md  # pipes escaped inside the table
    assert "<details><summary>1 unchanged rows</summary>" in md
    lines = md.splitlines()
    assert lines.index(next(x for x in lines if "regression |" in x)) < lines.index(
        next(x for x in lines if "failed |" in x))


def test_markdown_shows_the_canary_as_information_and_names_each_correction(rng):
    from test_compare import canary_result

    base = [speed(rng, "a"), canary_result(rng)]
    head = [speed(rng, "a", 0.8), canary_result(rng, 1 / 1.15)]  # the machine 15% slower, p tiny
    cmp = compare_runs(base, head)
    md = to_markdown(decide(cmp))
    drift = next(x for x in md.splitlines() if "Machine drift" in x)
    assert "for information" in drift and "never gates" in drift
    assert "not corrected: drift correction is off" in drift  # not a bare "not corrected" by p=1e-8
    family = [r for r in cmp.gated_rows if np.isfinite(r.q_value)]
    assert family and f"Benjamini-Hochberg over the {len(family)} gated rows" in md
    assert not [x for x in md.splitlines() if x.startswith("| ") and "canary/" in x]  # no verdict row
    on = to_markdown(decide(compare_runs(base, head, Thresholds(drift_correction=True))))
    assert "CPU speed rows corrected: divided by x0.8" in on


def test_junit_one_testcase_per_cell(rng):
    a, b, c = (speed(rng, t) for t in "abc")
    d = speed(rng, "d", n=3)
    cmp = compare_runs([a, b, c, d], [speed(rng, "a", 0.8), speed(rng, "b"),
                                      Result(c.cell, status="crashed", error="boom <&>"),
                                      speed(rng, "d", 0.8, n=3)])
    xml = to_junit(decide(cmp))
    root = ET.fromstring(xml)
    suite = root.find("testsuite")
    cases = {tc.get("name"): tc for tc in suite.iter("testcase")}
    assert set(cases) == {r.cell.key for r in (a, b, c, d)}
    assert cases[a.cell.key].find("failure") is not None
    assert cases[b.cell.key].find("failure") is None and cases[b.cell.key].find("skipped") is None
    assert "boom <&>" in cases[c.cell.key].find("error").get("message")
    assert cases[d.cell.key].find("skipped").get("message").startswith("inconclusive")
    assert suite.get("tests") == "4" and suite.get("failures") == "1"
    assert suite.get("errors") == "1" and suite.get("skipped") == "1"


def test_junit_test_cases_carry_the_head_runs_cell_times(rng):
    a, b = speed(rng, "a"), speed(rng, "b")
    head_a, head_b = speed(rng, "a", 0.8), speed(rng, "b")
    head_a.duration, head_b.duration, a.duration = 12.25, 0.5, 99.0
    root = ET.fromstring(to_junit(decide(compare_runs([a, b], [head_a, head_b]))))
    suite = root.find("testsuite")
    times = {tc.get("name"): float(tc.get("time")) for tc in suite.iter("testcase")}
    assert times == {a.cell.key: 12.25, b.cell.key: 0.5}
    assert float(suite.get("time")) == float(root.get("time")) == 12.75


def test_all_inconclusive_comparison_exits_2(rng):
    """Every figure of the head run contended: the slowdowns are not regressions, exit 2."""
    base = [speed(rng, "a"), speed(rng, "b")]
    head = [speed(rng, "a", 0.7), speed(rng, "b", 0.8)]
    for r in head:
        r.measurements[0].flag("contended")
        r.measurements[0].meta["contention"] = 0.45
    cmp = compare_runs(base, head)
    assert {r.verdict for r in cmp.gated_rows} == {"inconclusive"}
    called: list[list[str]] = []
    d = decide(cmp, confirm=lambda keys: called.append(keys) or [])
    assert d.exit_code == 2 and d.outcome == "inconclusive" and "2 inconclusive" in d.message
    assert not called  # nothing to confirm: no cell was flagged as a regression
    md = to_markdown(d)
    assert "head contended (45% run-queue wait)" in md
    assert "flagged figures are never a regression" in md


def test_flagged_confirmation_run_is_not_a_confirmed_regression(rng):
    cmp = compare_runs([speed(rng, "a")], [speed(rng, "a", 0.8)])

    def contended_rerun(keys: list[str]) -> list[Result]:
        r = speed(rng, "a", 0.8)
        r.measurements[0].flag("contended")
        return [r]

    d = decide(cmp, confirm=contended_rerun)
    assert d.exit_code == 2 and not d.confirmed
    assert "head contended" in d.rows[0].reason


def test_markdown_says_why_the_drift_was_ignored(rng):
    base = [speed(rng, "a"), canary(rng)]
    hot = canary(rng, 0.8)
    hot.measurements[0].flag("contended")
    hot.measurements[0].meta["contention"] = 0.5
    cmp = compare_runs(base, [speed(rng, "a"), hot])
    md = to_markdown(decide(cmp))
    assert "ignored: head canary contended (50% run-queue wait)" in md
