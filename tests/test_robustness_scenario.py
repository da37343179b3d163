"""The robustness scenario end to end on digits: attack curves, corruptions, the audit, and a
planted gradient-masked model that the audit must flag instead of reporting it robust."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    from tests.robustness_helpers import FAST, MASKED_PLUGINS, audit, curve, run_cell
except ImportError:  # pragma: no cover - run from the tests folder
    from robustness_helpers import FAST, MASKED_PLUGINS, audit, curve, run_cell

pytest.importorskip("torch")
pytest.importorskip("art")

PARAMS = {**FAST, "attacks": "fgsm,pgd,square,noise", "epsilons": [0, 8, 16, 32, 64]}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "robustness-artifacts"


@pytest.fixture(scope="module")
def healthy(artifacts: Path):
    return run_cell("vision", "torch", PARAMS, artifacts)


@pytest.fixture(scope="module")
def masked(artifacts: Path):
    return run_cell("vision", "torch_masked", PARAMS, artifacts, (str(MASKED_PLUGINS),))


def test_fgsm_and_pgd_lower_accuracy_monotonically(healthy) -> None:
    assert healthy.status == "ok", healthy.error
    for attack in ("fgsm", "pgd"):
        accs = [p["metric"] for p in curve(healthy, attack)]
        assert [p["epsilon"] for p in curve(healthy, attack)] == [0, 8, 16, 32, 64]
        assert accs[0] == healthy.metrics["clean_accuracy"]
        for a, b in zip(accs, accs[1:], strict=False):
            assert b <= a + 0.01  # one example of tolerance (random start of PGD)
        assert accs[-1] < accs[0] - 0.3
    for fg, pg in zip(curve(healthy, "fgsm"), curve(healthy, "pgd"), strict=False):
        assert pg["metric"] <= fg["metric"] + 0.01
        assert pg["ci_low"] <= pg["metric"] <= pg["ci_high"]


def test_results_schema(healthy) -> None:
    m = healthy.metrics
    assert 0.8 < m["clean_accuracy"] <= 1.0
    lo, hi = healthy.details["metric_ci"]["clean_accuracy"]
    assert lo <= m["clean_accuracy"] <= hi
    for key in (
        "auc",
        "auc_pgd",
        "robust_pgd_eps16",
        "success_rate_pgd_eps16",
        "attack_time_s_pgd_eps16",
        "corruption_mean",
        "audit_passed",
    ):
        assert key in m, key
    assert m["auc"] <= m["auc_fgsm"] + 1e-9
    point = curve(healthy, "pgd")[2]
    assert set(point) >= {
        "attack",
        "epsilon",
        "metric",
        "ci_low",
        "ci_high",
        "success_rate",
        "time_s",
    }
    assert curve(healthy, "square")[0]["n"] == 30  # the black-box subset
    rows = healthy.details["corruptions"]
    assert {r["corruption"] for r in rows} >= {"gaussian_noise", "blur", "contrast", "pixelate"}
    assert all(set(r) >= {"corruption", "severity", "metric"} for r in rows)


def test_audit_passes_on_a_healthy_model(healthy) -> None:
    checks = audit(healthy)
    assert set(checks) == {
        "monotone_in_epsilon",
        "pgd_stronger_than_fgsm",
        "large_epsilon_reaches_chance",
        "blackbox_and_noise_below_whitebox",
        "pgd_converged",
        "gradients_nonzero_finite",
        "outputs_logits_deterministic",
    }
    failed = {k: v["evidence"] for k, v in checks.items() if v["passed"] is False}
    assert not failed
    assert healthy.metrics["audit_passed"] == 1.0


def test_audit_flags_a_gradient_masked_model(masked) -> None:
    assert masked.status == "ok", masked.error  # a failed audit does not fail the cell
    assert masked.metrics["clean_accuracy"] > 0.8
    pgd = {p["epsilon"]: p["metric"] for p in curve(masked, "pgd")}
    square = {p["epsilon"]: p["metric"] for p in curve(masked, "square")}
    assert pgd[32] > 0.6  # gradient attacks fail: it would look robust...
    checks = audit(masked)
    assert masked.metrics["audit_passed"] == 0.0  # ...but the audit says why not to trust that
    assert checks["gradients_nonzero_finite"]["passed"] is False
    assert (
        "100 of 100 examples with an all-zero gradient"
        in checks["gradients_nonzero_finite"]["evidence"]
    )
    assert checks["blackbox_and_noise_below_whitebox"]["passed"] is False
    assert square[64] < pgd[64]
