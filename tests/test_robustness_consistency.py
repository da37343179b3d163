"""Cross-framework consistency: from identical weights, robust accuracy on the same examples
agrees across frameworks within its 95% confidence interval (vision digits).

PyTorch, JAX and TensorFlow run in this process; Keras needs its backend chosen before import,
so it is covered by cells in suites/robustness.yaml instead.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from dlbench.framework import BuildOptions
from dlbench.robustness.attacks import FGSM, PGD, AttackSettings
from dlbench.robustness.budgets import budget_for
from dlbench.robustness.estimator import InputCodec, make_estimator
from dlbench.robustness.target import Target
from dlbench.stats import proportion_ci
from tests.robustness_helpers import trained_digits

pytest.importorskip("torch")
pytest.importorskip("art")

FRAMEWORKS = [
    f
    for f in ("torch", "jax", "tensorflow")
    if importlib.util.find_spec({"torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}[f])
]
N = 150


@pytest.fixture(scope="module")
def setting():
    plugins, task, params, data, spec, model = trained_digits(4)
    return plugins, task, params, data, spec, model.get_weights()


def _robust(plugins, task, params, data, spec, weights, framework: str) -> dict[str, np.ndarray]:
    fw = plugins.frameworks.get(framework)
    fw.setup(None, 0, {})  # threads stay as the process has them (TF fixes them at start)
    model = fw.build(spec, weights, BuildOptions(train=task.train_config(params)))
    budget = budget_for(task.perturbation(params), data)
    codec = InputCodec("image", (8, 8, 1))
    est = make_estimator(model, codec, 10, budget.clip)
    x = codec.encode({"image": data.x_test["image"][:N]})
    y = data.y_test[:N]
    target = Target(est, x, y, budget, "input", True)
    out = {"clean": est.predict(x).argmax(1) == y}
    settings = AttackSettings(steps=10, restarts=1, seed=0)
    for attack in (FGSM(), PGD()):
        for eps in (16, 32):
            adv = attack.generate(target, x, y, budget.to_attack(eps), settings, None)
            out[f"{attack.name}@{eps}"] = est.predict(adv).argmax(1) == y
    return out


def test_robust_accuracy_agrees_across_frameworks(setting) -> None:
    if len(FRAMEWORKS) < 2:
        pytest.skip("needs two installed frameworks")
    results = {fw: _robust(*setting, fw) for fw in FRAMEWORKS}
    ref = results["torch"]
    assert ref["pgd@32"].mean() < ref["clean"].mean() - 0.2  # the attacks bite
    for fw, res in results.items():
        np.testing.assert_array_equal(res["clean"], ref["clean"])  # same weights, same predictions
        for key, correct in res.items():
            lo, hi = proportion_ci(int(ref[key].sum()), N)
            assert lo <= correct.mean() <= hi, (
                f"{fw} {key}: {correct.mean():.3f} outside torch CI [{lo:.3f}, {hi:.3f}]"
            )
            # examples decided differently (ties at float precision at most): a few per cent
            assert np.mean(correct != ref[key]) <= 0.05, f"{fw} {key}"
