"""Adversarial training, a training option of the accuracy scenario (``train_attack``).

Every training batch is replaced by adversarial examples crafted against the current weights
(through :meth:`dlbench.framework.Model.loss_and_input_gradient`, so every framework trains the
same way), then one optimizer step is taken on them:

* ``fgsm``: "fast is better than free" FGSM training (Wong, Rice & Kolter, ICLR 2020): a random
  start uniform in the L-inf ball, one signed-gradient step of ``1.25 eps``, projected back;
* ``pgd``: PGD training (Madry et al., ICLR 2018): a random start and :data:`PGD_STEPS` steps of
  ``2.5 eps / PGD_STEPS``, projected onto the ball and the valid input range.

``train_epsilon`` is in the task's perturbation unit (see :mod:`dlbench.robustness.budgets`);
input-space tasks only (embedding-space adversarial training would need gradients into the
embedding tables through the split model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from dlbench.errors import UnsupportedError
from dlbench.robustness.budgets import budget_for

if TYPE_CHECKING:
    from dlbench.framework import Model
    from dlbench.task import Dataset, Task

TRAIN_ATTACKS = ("none", "fgsm", "pgd")
PGD_STEPS = 5
FGSM_STEP = 1.25

EpochFn = Callable[["Model", int, np.ndarray], float]


def adversarial_epoch_fn(
    task: Task,
    params: dict[str, Any],
    dataset: Dataset,
    attack: str,
    epsilon: float | None,
    seed: int,
) -> tuple[EpochFn, float]:
    """An epoch function ``(model, batch_size, order) -> mean loss`` training on adversarial
    batches, and the epsilon used (domain units; ``None`` picks the domain's default)."""
    if attack not in TRAIN_ATTACKS or attack == "none":
        raise UnsupportedError(f"train_attack={attack!r}: choose one of {', '.join(TRAIN_ATTACKS)}")
    domain = task.perturbation(params)
    if domain.space != "input" or len(domain.inputs) != 1:
        raise UnsupportedError(
            f"adversarial training needs an input-space task; {task.name!r} is "
            f"attacked in {domain.space} space (train_attack=none there)"
        )
    budget = budget_for(domain, dataset)
    eps_units = budget.train_default if epsilon is None else float(epsilon)
    if eps_units <= 0:
        raise UnsupportedError(f"train_epsilon={epsilon!r} must be positive")
    eps = budget.to_attack(eps_units)
    name = domain.inputs[0]
    lo, hi = budget.clip if budget.clip else (-np.inf, np.inf)

    def craft(
        model: Model, xb: dict[str, np.ndarray], yb: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        x = np.asarray(xb[name], np.float32)
        delta = rng.uniform(-eps, eps, size=x.shape).astype(np.float32)
        steps, step = (
            (1, FGSM_STEP * eps) if attack == "fgsm" else (PGD_STEPS, 2.5 * eps / PGD_STEPS)
        )
        for _ in range(steps):
            adv = np.clip(x + delta, lo, hi)
            _, grads = model.loss_and_input_gradient({**xb, name: adv}, yb)
            delta = np.clip(delta + step * np.sign(grads[name]), -eps, eps).astype(np.float32)
        return np.clip(x + delta, lo, hi).astype(np.float32)

    def epoch(model: Model, batch_size: int, order: np.ndarray) -> float:
        rng = np.random.default_rng([seed, 17, int(order[0]) if len(order) else 0])
        losses = []
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            xb = {k: np.asarray(v)[idx] for k, v in dataset.x_train.items()}
            yb = np.asarray(dataset.y_train)[idx]
            xb[name] = craft(model, xb, yb, rng)
            losses.append(model.train_step(model.to_device(xb), model.to_device(yb)))
        model.synchronize()
        return (
            float(np.mean([float(model.to_numpy(v)) for v in losses])) if losses else float("nan")
        )

    return epoch, eps_units
