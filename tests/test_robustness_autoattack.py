"""AutoAttack (issue 12, item 5): ART's AutoAttack on dlbench's estimator is the worst case per
example over its components, so on the small trained digits model it leaves no example correct
that PGD, APGD-CE or Square breaks; the RobustBench preset runs at 8/255 L-inf whatever the suite's
grid, and only on pixel/255 budgets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dlbench.plugins import get_plugins
from dlbench.robustness.attacks import APGD, PGD, AttackSettings, Square
from dlbench.robustness.autoattack import AutoAttack, AutoAttackRobustBench, dlr_estimator
from dlbench.robustness.budgets import budget_for
from dlbench.robustness.estimator import InputCodec, make_estimator
from dlbench.robustness.target import Target
from tests.robustness_helpers import FAST, curve, run_cell, trained_digits

pytest.importorskip("torch")
pytest.importorskip("art")

N = 24
EPS = 16  # pixel/255: where the attacks break some examples and not others
SETTINGS = AttackSettings(steps=5, square_queries=30)


@pytest.fixture(scope="module")
def target() -> Target:
    _, task, params, data, _, model = trained_digits(2)
    budget = budget_for(task.perturbation(params), data)
    name = task.perturbation(params).inputs[0]
    x = np.asarray(data.x_test[name][:N], np.float32)
    y = np.asarray(data.y_test[:N]).astype(np.int64)
    codec = InputCodec(name, x.shape[1:])
    est = make_estimator(model, codec, data.num_classes, budget.clip, None, 32)
    return Target(est, codec.encode({name: x}), y, budget, "input", True)


def _correct(target: Target, attack) -> np.ndarray:
    eps = target.budget.to_attack(EPS)
    adv = attack.generate(target, target.x, target.labels, eps, SETTINGS, None)
    assert np.abs(adv - target.x).max() <= eps * (1 + 1e-5)
    return np.argmax(target.outputs(adv), axis=1) == target.labels


def test_autoattack_is_the_worst_case_per_example(target) -> None:
    clean = np.argmax(target.outputs(target.x), axis=1) == target.labels
    each = {a.name: _correct(target, a) for a in (PGD(), APGD(), Square())}
    auto = _correct(target, AutoAttack())
    print({k: float(v.mean()) for k, v in each.items()}, "autoattack", float(auto.mean()))
    assert clean.mean() > auto.mean()  # it attacks at all
    for name, ok in each.items():
        assert not np.any(auto & ~ok), f"autoattack leaves correct what {name} breaks"
    assert auto.mean() <= min(v.mean() for v in each.values())
    assert not np.any(auto & ~clean)


def test_dlr_gradient_is_the_gradient_of_the_dlr_loss(target) -> None:
    """The DLR loss (untargeted and targeted) and its gradient from class gradients agree with
    central differences of the loss (along single pixels inside the range: max-pooling over
    the digits' many zero pixels has ties, where random directions see kinks), so APGD-T ascends
    what AutoAttack's APGD-T ascends."""
    est = dlr_estimator(target.estimator)
    x = target.x[:4]
    onehot = np.eye(10, dtype=np.float32)
    z = target.estimator.predict(x)
    t = np.argsort(-z, axis=1)[:, 2]  # the third most likely class as target
    rows = np.arange(4)
    checked = 0
    for y in (onehot[target.labels[:4]], onehot[t] + 0.5 * onehot[target.labels[:4]]):
        g = est.loss_gradient(x, y)
        for k in range(3):
            inside = np.argwhere((x > 0.2) & (x < 0.8))
            cells = [inside[inside[:, 0] == i][k][1:] for i in rows]
            d = np.zeros_like(x)
            for i, c in zip(rows, cells, strict=True):
                d[(i, *c)] = 1.0
            h = 1e-3
            fd = (est.compute_loss(x + h * d, y, reduction="none")
                  - est.compute_loss(x - h * d, y, reduction="none")) / (2 * h)
            np.testing.assert_allclose((g * d).reshape(4, -1).sum(1), fd, rtol=0.05, atol=2e-3)
            checked += int(np.sum(np.abs(fd) > 1e-2))
    assert checked > 0  # some checked derivative is not trivially zero


def test_the_robustbench_preset_selects_8_of_255_linf(tmp_path, monkeypatch) -> None:
    preset = get_plugins().attacks.get("autoattack-robustbench")
    assert isinstance(preset, AutoAttackRobustBench)
    assert preset.grid([0.0, 4.0, 16.0]) == [0.0, 8.0]  # the suite's grid does not apply
    c = preset.config
    assert (c.steps, c.restarts, c.target_classes, c.square_queries, c.deepfool_steps) == (
        100, 1, 9, 5000, 100)
    # the cell below checks the selection (grid, norm, unit), not the 5000 queries: cheap parts
    monkeypatch.setattr(AutoAttackRobustBench, "config", replace(
        c, steps=2, square_queries=3, deepfool_steps=2))
    result = run_cell(
        "vision", "torch",
        {**FAST, "attacks": "autoattack-robustbench", "eval_size": 12, "corruptions": False,
         "audit": False, "epsilons": [0, 16]},
        tmp_path,
    )
    assert result.status == "ok", result.error
    assert result.details["budget"]["norm"] == "Linf"
    assert result.details["budget"]["unit"] == "pixel/255"
    assert [p["epsilon"] for p in curve(result, "autoattack-robustbench")] == [0.0, 8.0]
    assert "robust_autoattack-robustbench_eps8" in result.metrics


def test_the_preset_is_skipped_outside_pixel_budgets() -> None:
    budget = budget_for(get_plugins().tasks.get("nlp").perturbation({}))
    t = Target(None, np.zeros((1, 2, 2, 1), np.float32), np.zeros(1), budget, "embedding", True)
    reason = AutoAttackRobustBench().skip_reason(t)
    assert reason is not None and "pixel/255" in reason and "'autoattack'" in reason
