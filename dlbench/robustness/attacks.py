"""The attacks of the robustness scenario, through the Adversarial Robustness Toolbox.

Each attack is an object with a ``name`` (what suites write), a ``kind`` (``white-box``,
``black-box`` or ``baseline``) and :meth:`Attack.generate`, which turns clean examples of a
:class:`~dlbench.robustness.target.Target` into adversarial ones within a budget ``eps`` (attack
units, see :mod:`dlbench.robustness.budgets`). ``plugins/attacks.py`` registers them through
``dlbench_register_attacks``; third-party plugins may register more of the same shape.

* ``fgsm``: ART ``FastGradientMethod``, one step of size ``eps`` (sign of the gradient in L-inf,
  the normalised gradient in L2);
* ``pgd``: ART ``ProjectedGradientDescent``, ``steps`` steps of ``2.5 eps / steps`` (Madry et
  al.) from ``restarts`` random starts, keeping the successful one (classifiers; regressors
  start at the clean point, as ART allows);
* ``apgd``: ART ``AutoProjectedGradientDescent`` on the cross-entropy (APGD-CE, Croce & Hein
  2020): adaptive step from ``2 eps``, ``steps`` iterations, ``restarts`` restarts;
* ``square``: ART ``SquareAttack`` (Andriushchenko et al. 2020), score-based black-box, on the
  first ``blackbox_size`` examples, ``square_queries`` iterations;
* ``pgd-eot``, ``pgd-bpda``: adaptive PGD for defended models (Athalye et al. 2018; Tramer et
  al. 2020): EOT averages the loss gradient over :attr:`PGDEOT.samples` draws of a randomised
  model or preprocessing; BPDA takes the gradient straight through the estimator's
  preprocessing defences (the model's gradient at the preprocessed point);
* ``noise``: random noise of the same budget (see :func:`dlbench.robustness.budgets.random_noise`);
* ``autoattack``, ``autoattack-robustbench``: see :mod:`dlbench.robustness.autoattack`.

Padding masks hold per example for every attack: whatever ART does inside (APGD's random start
ignores its mask, Square takes none, and ART's APGD only broadcasts one mask shared by all
examples), :func:`keep_fixed` resets each example's fixed features (padding tokens, layout
cells) to their clean values afterwards, and the figure reported is the model on that
projected input (the scenario scores what ``generate`` returns).

ART's random draws use NumPy's global generator: it is seeded before every attack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dlbench.robustness.budgets import random_noise

if TYPE_CHECKING:
    from dlbench.robustness.target import Target


@dataclass(frozen=True)
class AttackSettings:
    steps: int = 20
    restarts: int = 1
    batch_size: int = 128
    square_queries: int = 200
    seed: int = 0
    step_steps: int | None = None
    """PGD's step is ``2.5 eps / step_steps`` (default: ``steps``); the audit doubles ``steps``
    with the step size kept, so the longer attack continues the shorter one."""


class Attack:
    """An attack the robustness scenario can run."""

    name: ClassVar[str]
    kind: ClassVar[str] = "white-box"
    description: ClassVar[str] = ""
    needs_gradients: ClassVar[bool] = True
    needs_classifier: ClassVar[bool] = False
    subset: ClassVar[bool] = False
    """Black-box attacks run on the first ``blackbox_size`` evaluation examples only."""
    epsilons: ClassVar[tuple[float, ...] | None] = None
    """A preset's own epsilons (domain units), run instead of the suite's grid."""

    def grid(self, epsilons: list[float]) -> list[float]:
        """The epsilons (domain units, 0 first) this attack runs at, given the suite's grid."""
        return list(epsilons) if self.epsilons is None else sorted({0.0, *self.epsilons})

    def skip_reason(self, target: Target) -> str | None:
        if self.needs_gradients and not target.gradients:
            return f"{self.name} needs input gradients: {target.no_gradient_reason}"
        if self.needs_classifier and not target.classifier:
            return (
                f"{self.name} attacks classifiers; this task's model is scored by {target.headline}"
            )
        return None

    def generate(
        self,
        target: Target,
        x: np.ndarray,
        y: np.ndarray,
        eps: float,
        settings: AttackSettings,
        mask: np.ndarray | None,
    ) -> np.ndarray:
        raise NotImplementedError

    def _norm(self, target: Target) -> Any:
        return np.inf if np.isinf(target.budget.norm) else int(target.budget.norm)


def keep_fixed(x: np.ndarray, x_adv: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``x_adv`` with every feature outside ``mask`` (per example, broadcast to ``x``) reset to
    its clean value in ``x``: padding never moves, whatever the attack did."""
    if mask is None:
        return x_adv
    free = np.broadcast_to(np.asarray(mask), np.shape(x)) > 0
    return np.where(free, x_adv, x).astype(np.asarray(x).dtype)


class ArtAttack(Attack):
    """An attack that ART carries out: subclasses build the ART attack object; seeding NumPy's
    global generator (ART draws from it) and the call are here, once."""

    def generate(
        self,
        target: Target,
        x: np.ndarray,
        y: np.ndarray,
        eps: float,
        settings: AttackSettings,
        mask: np.ndarray | None,
    ) -> np.ndarray:
        np.random.seed(settings.seed)
        attack = self.art_attack(target, eps, settings)
        art_mask = self.art_mask(target, mask)
        x_adv = attack.generate(x, y, **({} if art_mask is None else {"mask": art_mask}))
        return keep_fixed(x, x_adv, mask)

    def art_attack(self, target: Target, eps: float, settings: AttackSettings) -> Any:
        raise NotImplementedError

    def art_mask(self, target: Target, mask: np.ndarray | None) -> np.ndarray | None:
        """The mask handed to ART (the caller's per-example one by default); the result is
        projected onto the caller's mask afterwards in any case (:func:`keep_fixed`)."""
        return mask


class FGSM(ArtAttack):
    name = "fgsm"
    description = (
        "fast gradient sign method (one step; L2: normalised gradient), ART FastGradientMethod"
    )

    def art_attack(self, target: Target, eps: float, settings: AttackSettings) -> Any:
        from art.attacks.evasion import FastGradientMethod

        return FastGradientMethod(
            target.estimator,
            norm=self._norm(target),
            eps=eps,
            eps_step=eps,
            batch_size=settings.batch_size,
        )


class PGD(ArtAttack):
    name = "pgd"
    description = "projected gradient descent, steps x 2.5 eps/steps, random restarts (ART)"

    def art_attack(self, target: Target, eps: float, settings: AttackSettings) -> Any:
        from art.attacks.evasion import ProjectedGradientDescent

        steps = max(1, int(settings.steps))
        step = 2.5 * eps / max(1, int(settings.step_steps or steps))
        return ProjectedGradientDescent(
            target.estimator,
            norm=self._norm(target),
            eps=eps,
            eps_step=step,
            max_iter=steps,
            num_random_init=int(settings.restarts) if target.classifier else 0,
            batch_size=settings.batch_size,
            verbose=False,
        )


def adaptive_estimator(estimator: Any, eot: int = 1, bpda: bool = False) -> Any:
    """A shallow copy of ``estimator`` whose ``loss_gradient`` is the mean over ``eot`` draws
    and, with ``bpda``, skips the preprocessing defences' gradient (straight-through)."""
    import copy

    est = copy.copy(estimator)
    draws = max(1, int(eot))

    def loss_gradient(x: np.ndarray, y: np.ndarray, **kwargs: Any) -> np.ndarray:
        total = None
        for _ in range(draws):
            g = (
                estimator.straight_through_loss_gradient(x, y)
                if bpda
                else estimator.loss_gradient(x, y, **kwargs)
            )
            total = g if total is None else total + g
        return np.asarray(total, np.float32) / draws

    est.loss_gradient = loss_gradient
    return est


class PGDEOT(PGD):
    name = "pgd-eot"
    description = "PGD with expectation over transformation: gradient averaged over 10 draws"
    samples: ClassVar[int] = 10
    bpda: ClassVar[bool] = False

    def art_attack(self, target: Target, eps: float, settings: AttackSettings) -> Any:
        from dataclasses import replace

        proxy = replace(
            target, estimator=adaptive_estimator(target.estimator, self.samples, self.bpda)
        )
        return super().art_attack(proxy, eps, settings)


class PGDBPDA(PGDEOT):
    name = "pgd-bpda"
    description = "PGD with BPDA: gradient straight through the preprocessing defences"
    samples = 1
    bpda = True


class APGD(ArtAttack):
    name = "apgd"
    description = "auto-PGD on the cross-entropy (APGD-CE), ART AutoProjectedGradientDescent"
    needs_classifier = True

    def art_attack(self, target: Target, eps: float, settings: AttackSettings) -> Any:
        from art.attacks.evasion import AutoProjectedGradientDescent

        return AutoProjectedGradientDescent(
            target.estimator,
            norm=self._norm(target),
            eps=eps,
            eps_step=2 * eps,
            max_iter=max(1, int(settings.steps)),
            nb_random_init=max(1, int(settings.restarts)),
            batch_size=settings.batch_size,
            loss_type=None,
            verbose=False,
        )

    def art_mask(self, target: Target, mask: np.ndarray | None) -> np.ndarray | None:
        # ART's APGD applies its mask to batches of the examples it still attacks, so only a mask
        # shared by all examples broadcasts; its random start ignores the mask (keep_fixed).
        return target.common_mask


class Square(ArtAttack):
    name = "square"
    kind = "black-box"
    description = "Square attack, score-based black-box (ART SquareAttack), on a small subset"
    needs_gradients = False
    needs_classifier = True
    subset = True

    def generate(
        self,
        target: Target,
        x: np.ndarray,
        y: np.ndarray,
        eps: float,
        settings: AttackSettings,
        mask: np.ndarray | None,
    ) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):  # ART's L2 windows over zero cells
            return super().generate(target, x, y, eps, settings, mask)

    def art_attack(self, target: Target, eps: float, settings: AttackSettings) -> Any:
        from art.attacks.evasion import SquareAttack

        return SquareAttack(
            target.estimator,
            norm=self._norm(target),
            eps=eps,
            max_iter=max(1, int(settings.square_queries)),
            nb_restarts=1,
            batch_size=settings.batch_size,
            verbose=False,
        )

    def art_mask(self, target: Target, mask: np.ndarray | None) -> np.ndarray | None:
        return None  # ART's Square takes no mask: keep_fixed projects its result


class Noise(Attack):
    name = "noise"
    kind = "baseline"
    description = "random noise at the same budget (random signs in L-inf, random direction in L2)"
    needs_gradients = False

    def generate(
        self,
        target: Target,
        x: np.ndarray,
        y: np.ndarray,
        eps: float,
        settings: AttackSettings,
        mask: np.ndarray | None,
    ) -> np.ndarray:
        rng = np.random.default_rng([settings.seed, 7])
        noisy = random_noise(x, eps, target.budget.norm, rng, mask, target.budget.clip)
        return keep_fixed(x, noisy, mask)


BUILTIN: tuple[Attack, ...] = (FGSM(), PGD(), APGD(), Square(), Noise(), PGDEOT(), PGDBPDA())
