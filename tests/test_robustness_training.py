"""Hardening: adversarial training (an accuracy-scenario training option) raises robust accuracy
at the training epsilon; an input-preprocessing defence runs with the audit."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    from tests.robustness_helpers import FAST, audit, curve, run_cell
except ImportError:  # pragma: no cover
    from robustness_helpers import FAST, audit, curve, run_cell

pytest.importorskip("torch")
pytest.importorskip("art")

PARAMS = {
    **FAST,
    "epochs": 8,
    "attacks": "pgd",
    "epsilons": [0, 32],
    "corruptions": False,
    "audit": False,
    "eval_size": 150,
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "robustness-artifacts"


def test_fgsm_training_improves_robust_accuracy(artifacts: Path) -> None:
    plain = run_cell("vision", "torch", PARAMS, artifacts)
    hard = run_cell(
        "vision", "torch", {**PARAMS, "train_attack": "fgsm", "train_epsilon": 32.0}, artifacts
    )
    assert plain.status == hard.status == "ok", (plain.error, hard.error)
    before, after = curve(plain, "pgd")[-1], curve(hard, "pgd")[-1]
    assert after["epsilon"] == 32
    assert after["metric"] > before["metric"] + 0.1, (before, after)
    assert hard.metrics["clean_accuracy"] > 0.85  # the price in clean accuracy stays small
    assert (
        hard.metrics["train_time_s"] > 0 and plain.model.trained_digest != hard.model.trained_digest
    )


def test_adversarial_training_reuses_its_own_weights(artifacts: Path) -> None:
    again = run_cell(
        "vision", "torch", {**PARAMS, "train_attack": "fgsm", "train_epsilon": 32.0}, artifacts
    )
    assert again.details["reused_trained_weights"] is True
    eps16 = run_cell(
        "vision",
        "torch",
        {**PARAMS, "epochs": 1, "train_attack": "fgsm", "train_epsilon": 16.0},
        artifacts,
    )
    assert eps16.details["reused_trained_weights"] is False  # train_epsilon is part of the key


def test_adversarial_training_needs_an_input_space_task(artifacts: Path) -> None:
    res = run_cell(
        "nlp",
        "torch",
        {"threads": 2, "epochs": 1, "train_attack": "pgd"},
        artifacts,
        scenario="accuracy",
    )
    assert res.status == "skipped" and "input-space" in res.error


def test_defended_model_is_audited(artifacts: Path) -> None:
    res = run_cell(
        "vision",
        "torch",
        {
            **PARAMS,
            "epochs": 4,
            "eval_size": 60,
            "attacks": "fgsm,pgd",
            "epsilons": [0, 16, 64],
            "audit": True,
            "defence": "feature_squeezing",
        },
        artifacts,
    )
    assert res.status == "ok", res.error
    assert res.details["budget"]["defence"] == "feature_squeezing"
    checks = audit(res)
    assert len(checks) == 7
    # BPDA through the squeezing: gradients exist and PGD still breaks the model at large eps
    assert checks["gradients_nonzero_finite"]["passed"] is True
    assert curve(res, "pgd")[-1]["metric"] < 0.2


def test_robustness_reuses_the_accuracy_cells_weights(artifacts: Path) -> None:
    common = {"threads": 2, "dataset": "digits", "model": "cnn", "epochs": 2, "batch_size": 32}
    acc = run_cell("vision", "torch", common, artifacts, scenario="accuracy")
    rob = run_cell(
        "vision",
        "torch",
        {
            **common,
            "attacks": "pgd",
            "epsilons": [0, 16],
            "eval_size": 50,
            "corruptions": False,
            "audit": False,
        },
        artifacts,
    )
    assert acc.status == rob.status == "ok"
    assert rob.details["reused_trained_weights"] is True
    assert rob.model.trained_digest == acc.model.trained_digest
