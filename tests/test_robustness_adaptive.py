"""Adaptive attacks (EOT, BPDA) on planted defended models: a randomised input transform whose
single-draw gradient is noise, and a non-differentiable quantisation in front of an honest model.
Plain PGD leaves them looking robust; the adaptive attack brings them to the honest model's level."""

from __future__ import annotations

import numpy as np
import pytest

from dlbench.robustness.attacks import PGD, PGDBPDA, PGDEOT, AttackSettings
from dlbench.robustness.budgets import budget_for
from dlbench.robustness.estimator import InputCodec, make_estimator
from dlbench.robustness.target import Target
from tests.robustness_helpers import trained_digits

pytest.importorskip("torch")
art = pytest.importorskip("art")
from art.defences.preprocessor import Preprocessor  # noqa: E402

N = 60
EPS = 32 / 255


class Quantise(Preprocessor):
    """Rounds to 1/8 steps; its backward pass is what autograd gives through round: zero."""

    def __init__(self) -> None:
        super().__init__(is_fitted=True, apply_fit=False, apply_predict=True)

    def __call__(self, x, y=None):
        return np.round(x * 8) / 8, y

    def estimate_gradient(self, x, grad):
        return np.zeros_like(grad)


class Shatter(Preprocessor):
    """x + a sin(w x + phi), phi random per call: predictions barely move, the single-draw
    Jacobian 1 + a w cos(.) has a random sign; its expectation is the identity."""

    def __init__(self) -> None:
        super().__init__(is_fitted=True, apply_fit=False, apply_predict=True)
        self.rng = np.random.default_rng(0)
        self.phase = None

    def __call__(self, x, y=None):
        self.phase = self.rng.uniform(0, 2 * np.pi, size=x.shape).astype(np.float32)
        return (x + 0.002 * np.sin(2000 * x + self.phase)).astype(np.float32), y

    def estimate_gradient(self, x, grad):
        return grad * (1 + 4 * np.cos(2000 * x + self.phase))


@pytest.fixture(scope="module")
def setting():
    _, task, params, data, _, model = trained_digits(3)
    return task, params, data, model


def _robust(setting, defence, attack) -> float:
    task, params, data, model = setting
    budget = budget_for(task.perturbation(params), data)
    name = task.perturbation(params).inputs[0]
    x = np.asarray(data.x_test[name][:N], np.float32)
    y = np.asarray(data.y_test[:N]).astype(np.int64)
    codec = InputCodec(name, x.shape[1:])
    est = make_estimator(model, codec, data.num_classes, budget.clip, defence, 64)
    target = Target(est, codec.encode({name: x}), y, budget, "input", True)
    adv = attack.generate(target, target.x, y, EPS, AttackSettings(steps=10), None)
    return float(np.mean(np.argmax(target.outputs(adv), axis=1) == y))


def test_bpda_and_eot_break_planted_defences(setting) -> None:
    honest = _robust(setting, None, PGD())
    quant_pgd = _robust(setting, [Quantise()], PGD())
    quant_bpda = _robust(setting, [Quantise()], PGDBPDA())
    shat_pgd = _robust(setting, [Shatter()], PGD())
    shat_eot = _robust(setting, [Shatter()], PGDEOT())
    print(
        f"honest {honest} quant pgd {quant_pgd} bpda {quant_bpda} shatter pgd {shat_pgd} eot {shat_eot}"
    )
    assert quant_pgd > honest + 0.3 and quant_bpda <= honest + 0.1
    assert shat_pgd > honest + 0.2 and shat_eot <= honest + 0.1
