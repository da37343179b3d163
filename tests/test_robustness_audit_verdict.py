"""The audit's three-valued verdict on planted gradient-masked models (Athalye et al. 2018):
shattered gradients (a high-frequency transform of the input), saturated softmax, randomised
inputs and a non-differentiable quantisation each get ``failed`` in the quick suite's robustness
configuration and in the default attack configuration; the honest model gets ``passed`` in
both; an attack list without fgsm and noise gets ``insufficient`` naming them; too few PGD steps
get a budget warning and an escalated PGD, not ``failed``. The planted models are
``tests/fixtures/masked_plugins``; the reports show a verdict that could not be reached grey."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dlbench.cell import Cell
from dlbench.report.base import RunData, RunInfo
from dlbench.report.html import audit_table
from dlbench.report.tables import figure_cell
from dlbench.report.terminal import verdict_lines
from dlbench.result import Result
from dlbench.robustness import audit
from dlbench.robustness.audit import Check

try:
    from tests.robustness_helpers import MASKED_PLUGINS, curve, run_cell
    from tests.robustness_helpers import audit as checks_of
except ImportError:  # pragma: no cover - run from the tests folder
    from robustness_helpers import MASKED_PLUGINS, curve, run_cell
    from robustness_helpers import audit as checks_of

SUITES = Path(__file__).resolve().parents[1] / "suites"
MASKED = ("torch_shattered", "torch_saturated", "torch_randomised", "torch_masked")


def quick_params() -> dict[str, Any]:
    """The quick suite's robustness cell, as the suite writes it (nested lists unwrapped)."""
    suite = yaml.load((SUITES / "quick.yaml").read_text(), Loader=yaml.CSafeLoader)
    block = next(b for b in suite["matrix"] if b["scenario"] == "robustness")
    params = {k: v[0] if isinstance(v, list) and len(v) == 1 else v
              for k, v in block["params"].items()}
    return {"threads": 2, "dataset": "digits", **params}


QUICK = quick_params()
# The default attack list and epsilon grid, on a small evaluation set.
DEFAULT = {"threads": 2, "dataset": "digits", "epochs": QUICK["epochs"],
           "batch_size": QUICK["batch_size"], "eval_size": 50, "pgd_steps": 10,
           "square_queries": 30, "blackbox_size": 20, "corruptions": False}
CONFIGS = {"quick": QUICK, "default": DEFAULT}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "audit-verdict-artifacts"


_cache: dict[tuple[str, str, str], Result] = {}


def cell(framework: str, config: str, artifacts: Path, **over: Any) -> Result:
    key = (framework, config, repr(sorted(over.items())))
    if key not in _cache:
        _cache[key] = run_cell("vision", framework, {**CONFIGS[config], **over}, artifacts,
                               (str(MASKED_PLUGINS),))
    res = _cache[key]
    assert res.status == "ok", res.error
    return res


def verdict_of(res: Result) -> dict[str, Any]:
    return res.details["audit_verdict"]


# -- the verdict from checks -----------------------------------------------------------------------
def test_a_check_that_did_not_run_is_no_pass() -> None:
    ran = [Check("a", True, ""), Check("b", None, "needs noise", ("noise",)),
           Check("c", None, "needs fgsm and pgd", ("fgsm",))]
    v = audit.verdict(ran)
    assert v.verdict == "insufficient" and not v.passed and not audit.passed(ran)
    assert (v.ran, v.total) == (1, 3)
    assert "add `noise` and `fgsm` to attacks" in v.message and "1 of 3 checks ran" in v.message
    cannot = audit.verdict([Check("a", True, ""), Check("g", None, "no input gradients")])
    assert cannot.verdict == "insufficient" and "g cannot run: no input gradients" in cannot.message
    assert audit.verdict([Check("a", True, ""), Check("b", True, "")]).verdict == "passed"


def test_masking_outweighs_missing_checks_and_budget_alone_is_no_failure() -> None:
    masked = audit.verdict([Check("gradients_nonzero_finite", False, "all zero"),
                            Check("b", None, "needs noise", ("noise",))])
    assert masked.verdict == "failed" and masked.failed == ("gradients_nonzero_finite",)
    budget = audit.verdict([Check("a", True, ""), Check("pgd_converged", False, "moved 0.04")],
                           ["PGD re-ran"])
    assert budget.verdict == "insufficient" and "raise pgd_steps" in budget.message
    assert budget.warnings[0] == "PGD re-ran" and "pgd_converged failed" in budget.warnings[1]


# -- planted models, quick and default configurations ---------------------------------------------
def test_quick_runs_what_the_audit_needs() -> None:
    attacks = set(str(QUICK["attacks"]).replace(",", " ").split())
    assert {"fgsm", "pgd"} <= attacks and attacks & {"noise", "square"}
    assert max(QUICK["epsilons"]) >= 64  # where noise and the saturating budget bite


@pytest.mark.parametrize("config", ["quick", "default"])
def test_honest_model_passes(config: str, artifacts: Path) -> None:
    res = cell("torch", config, artifacts)
    v = verdict_of(res)
    assert v["verdict"] == "passed", v
    assert v["ran"] == v["total"] == 7
    assert res.metrics["audit_passed"] == 1.0 and res.metrics["audit_checks_ran"] == 7
    assert curve(res, "pgd")[-1]["metric"] < 0.2  # PGD breaks it


@pytest.mark.parametrize("config", ["quick", "default"])
@pytest.mark.parametrize("framework", MASKED)
def test_masked_model_fails(framework: str, config: str, artifacts: Path) -> None:
    res = cell(framework, config, artifacts)
    honest = cell("torch", config, artifacts)
    assert res.metrics["clean_accuracy"] > 0.8  # predictions (nearly) unchanged...
    at16 = {p["epsilon"]: p["metric"] for p in curve(res, "pgd")}[16]
    honest16 = {p["epsilon"]: p["metric"] for p in curve(honest, "pgd")}[16]
    assert at16 > honest16 + 0.05  # ...and PGD makes it look robust...
    v = verdict_of(res)
    assert v["verdict"] == "failed", v  # ...which the audit does not believe
    assert res.metrics["audit_passed"] == 0.0
    checks = checks_of(res)
    assert set(v["failed"]) == {k for k, c in checks.items() if c["passed"] is False} - {
        "pgd_converged"}
    if framework == "torch_shattered" and config == "quick":
        assert checks["large_epsilon_reaches_chance"]["passed"] is False


def test_missing_attacks_make_the_verdict_insufficient(artifacts: Path) -> None:
    res = cell("torch", "quick", artifacts, attacks="pgd")
    v = verdict_of(res)
    assert v["verdict"] == "insufficient", v
    assert "add `fgsm` and `noise` to attacks" in v["message"]
    assert v["missing"] == ["fgsm", "noise"] and (v["ran"], v["total"]) == (5, 7)
    checks = checks_of(res)
    assert checks["pgd_stronger_than_fgsm"]["passed"] is None
    assert checks["pgd_stronger_than_fgsm"]["needs"] == ["fgsm"]
    assert checks["blackbox_and_noise_below_whitebox"]["needs"] == ["noise"]
    assert res.metrics["audit_passed"] == 0.0  # a check that did not run is no pass


@pytest.mark.parametrize(
    "over",
    [{"pgd_steps": 1},  # FGSM breaks examples a 1-step PGD misses at 64/255
     {"pgd_steps": 1, "epsilons": [0, 32]}],  # doubling the steps moves PGD at 32/255
    ids=["fgsm-beats-short-pgd", "pgd-not-converged"],
)
def test_too_few_pgd_steps_escalate_instead_of_failing(over: dict[str, Any],
                                                        artifacts: Path) -> None:
    res = cell("torch", "quick", artifacts, **over)
    v = verdict_of(res)
    assert v["verdict"] != "failed", v  # a short budget is no evidence of masking
    assert any(w.startswith("attack budget:") for w in v["warnings"]), v
    esc = res.details["pgd_escalation"]
    assert esc["steps"][0] == 1 and esc["steps"][-1] > 1 and esc["cap"] == 4
    for eps, by_steps in esc["metric"].items():  # the strongest figure per epsilon is reported
        assert len(by_steps) > 1
        assert res.metrics[f"robust_pgd_eps{eps}"] == min(by_steps.values())
    assert any(p.get("steps", 1) > 1 for p in curve(res, "pgd"))
    converged = checks_of(res)["pgd_converged"]
    assert converged["evidence"].startswith("escalated from 1 steps")
    if "epsilons" in over:
        assert "1 steps" in v["warnings"][0] and converged["passed"] is not None


# -- what the reports show -------------------------------------------------------------------------
def _result(fw: str, checks: list[Check]) -> Result:
    v = audit.verdict(checks)
    return Result(Cell("robustness", "vision", fw, "cpu", {}), "ok",
                  metrics={"clean_metric": 0.9, "clean_accuracy": 0.9,
                           "audit_passed": float(v.passed)},
                  details={"audit": [c.to_dict() for c in checks],
                           "audit_verdict": v.to_dict(),
                           "metric": {"name": "accuracy", "higher_is_better": True}})


def test_reports_show_insufficient_grey_with_the_checks_that_ran() -> None:
    short = _result("torch", [Check("monotone_in_epsilon", True, "ok"),
                              Check("blackbox_and_noise_below_whitebox", None, "needs noise",
                                    ("noise",))])
    masked = _result("jax", [Check("gradients_nonzero_finite", False, "all zero")])
    data = RunData(RunInfo(1, "t", 0.0, 1.0), [short, masked])
    table = audit_table(data.results)
    assert table is not None
    rows = {(r[1].text, r[2].text): r[3] for r in table.rows}
    assert rows[("torch", "verdict")].cls == "na"
    assert "insufficient" in rows[("torch", "verdict")].text
    assert "1 of 2 checks ran" in rows[("torch", "verdict")].text
    assert "add `noise` to attacks" in rows[("torch", "verdict")].text
    assert (rows[("torch", "blackbox_and_noise_below_whitebox")].cls,
            rows[("torch", "blackbox_and_noise_below_whitebox")].text) == ("na", "not run")
    assert rows[("jax", "verdict")].cls == "fail"
    from dlbench.report.common import scenario_of

    sc = scenario_of(short)
    assert sc is not None
    leaderboard = {c.title: c for c in sc.columns([short])}["Audit checks"]
    cell_ = figure_cell(leaderboard.figure(short))
    assert cell_.cls == "na" and cell_.text == "insufficient (1 of 2 checks ran)"
    lines = [line.plain for line in verdict_lines(data)]
    assert any("insufficient: 1 of 2 checks ran" in t and "torch" in t for t in lines)
    styles = {line.plain.split(":")[0]: line.spans[-1].style for line in verdict_lines(data)}
    assert "dim" in styles.values() and "bold red" in styles.values()


def test_results_stored_before_verdicts_are_summed_up_again() -> None:
    old = _result("torch", [Check("a", True, ""), Check("b", None, "needs both fgsm and pgd")])
    del old.details["audit_verdict"]
    from dlbench.report.common import scenario_of

    sc = scenario_of(old)
    assert sc is not None
    f = sc.verdict(old)
    assert f is not None and f.inconclusive and f.passed is None
