"""AutoAttack (Croce & Hein, ICML 2020) through ART's ``AutoAttack``, on dlbench's estimator.

ART's ``AutoAttack`` runs a list of attacks in turn on the examples still classified correctly
and keeps, per example, the first adversarial point within the budget: the worst case over its
components, which is what AutoAttack reports. Its default list does not work here (ART builds
APGD's cross-entropy and DLR losses only for its own PyTorch and TensorFlow classifiers), so
:class:`AutoAttack` hands it the components explicitly:

* **APGD-CE**: dlbench's ``apgd`` (ART ``AutoProjectedGradientDescent`` on the estimator's
  cross-entropy), same settings and seed, so AutoAttack is never weaker than ``apgd`` on any
  example;
* **APGD-T**: the same APGD, targeted, on the targeted DLR loss
  ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` (:func:`dlr_estimator`; computed from
  dlbench's class gradients, exact because the loss depends on logit differences only), against
  the ``target_classes`` classes with the highest clean logits after the true one;
* **FAB-T substitute**: ART has no FAB; ART ``DeepFool`` (FAB's untargeted, L2 ancestor: the
  same linearisation of the decision boundary, and what ART's own AutoAttack puts in FAB's place),
  counted only where its point lies within the budget;
* **Square**: dlbench's ``square`` (ART ``SquareAttack``, ``p_init`` 0.8, one restart) with
  AutoAttack's query budget.

ART runs every component of its list in an untargeted pass and, with ``targeted=True``, again in
a targeted pass for each other class; :func:`phase` wraps each component so that it runs in its
own pass only and skips targets outside the top ``target_classes``.

``autoattack`` takes its iterations, restarts and queries from the suite (``pgd_steps``,
``restarts``, ``square_queries``) and runs over the suite's epsilon grid, in any norm and space;
``autoattack-robustbench`` is RobustBench's convention (standard version, L-inf, 8/255 on
images: 100 APGD iterations, 1 restart, 9 target classes, 5000 Square queries) whatever the suite
says; docs/robustness.md says what is identical and what differs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dlbench.robustness.attacks import APGD, ArtAttack, Attack, AttackSettings, Square
from dlbench.robustness.attacks import BUILTIN as ATTACKS

if TYPE_CHECKING:
    from dlbench.robustness.target import Target


@dataclass(frozen=True)
class AutoAttackConfig:
    """What an AutoAttack variant fixes; ``None`` takes the suite's setting."""

    steps: int | None = None
    """APGD-CE and APGD-T iterations (None: ``pgd_steps``)."""
    restarts: int | None = None
    """APGD restarts (None: ``restarts``)."""
    square_queries: int | None = None
    """Square iterations, one query each (None: ``square_queries``)."""
    target_classes: int = 9
    """APGD-T targets: the classes with the highest clean logits after the true one."""
    deepfool_steps: int | None = None
    """DeepFool iterations (None: ``pgd_steps``)."""
    epsilons: tuple[float, ...] | None = None
    """Fixed epsilons (domain units) instead of the suite's grid."""
    unit: str | None = None
    """The budget unit the variant is defined in (None: any)."""


def dlr_estimator(estimator: Any) -> Any:
    """A shallow copy of ``estimator`` whose loss is DLR (Croce & Hein 2020) instead of the
    cross-entropy: ``loss_gradient`` and ``compute_loss`` for ART's APGD with ``loss_type=None``.

    Labels ``y`` (one-hot rows) name the true class; a row ``onehot(t) + 0.5 onehot(y)`` asks for
    the targeted loss ``(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, which targeted APGD
    minimises (it maximises AutoAttack's ``-`` that). Logits are taken as the estimator's
    log-probabilities: DLR depends on logit differences only, so the two give the same loss and,
    with class gradients, the same gradient.
    """
    est = copy.copy(estimator)

    def weights(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-example loss and its gradient w.r.t. the logits (N, C)."""
        z = np.asarray(estimator.predict(x), np.float64)
        y = np.asarray(y, np.float64).reshape(len(z), -1)
        n, c = z.shape
        rows = np.arange(n)
        first = np.argmax(y, axis=1)
        rest = y.copy()
        rest[rows, first] = 0.0
        targeted = rest.max(axis=1) > 0
        true = np.where(targeted, np.argmax(rest, axis=1), first)
        order = np.argsort(-z, axis=1)
        p1, p3 = order[:, 0], order[:, min(2, c - 1)]
        p4 = order[:, min(3, c - 1)]
        other = z.copy()
        other[rows, true] = -np.inf
        best_other = np.argmax(other, axis=1)
        # untargeted: -(z_y - z_o) / (z_p1 - z_p3); targeted: (z_y - z_t) / (z_p1 - (z_p3+z_p4)/2)
        opponent = np.where(targeted, first, best_other)
        sign = np.where(targeted, 1.0, -1.0)
        num = sign * (z[rows, true] - z[rows, opponent])
        den_t = z[rows, p1] - (z[rows, p3] + z[rows, p4]) / 2
        den = np.where(targeted, den_t, z[rows, p1] - z[rows, p3]) + 1e-12
        w = np.zeros((n, c))
        np.add.at(w, (rows, true), sign / den)
        np.add.at(w, (rows, opponent), -sign / den)
        d = -num / den**2
        np.add.at(w, (rows, p1), d)
        half = np.where(targeted, 0.5, 1.0)
        np.add.at(w, (rows, p3), -d * half)
        np.add.at(w, (rows, p4), -d * np.where(targeted, 0.5, 0.0))
        return num / den, w

    def loss_gradient(x: np.ndarray, y: np.ndarray, **kwargs: Any) -> np.ndarray:
        _, w = weights(x, y)
        n = len(w)
        cols = np.argsort(-np.abs(w), axis=1)[:, :5]  # at most 5 classes carry weight
        cols = cols[:, np.any(np.take_along_axis(w, cols, axis=1) != 0, axis=0)]
        k = cols.shape[1]
        if k == 0:
            return np.zeros(np.shape(x), np.float32)
        # one class-gradient call for all k classes: x repeated k times, one class per copy
        g = estimator.class_gradient(np.concatenate([x] * k), label=cols.T.reshape(-1))[:, 0]
        g = g.reshape((k, n, *np.shape(x)[1:]))
        wk = np.take_along_axis(w, cols, axis=1).T.reshape((k, n) + (1,) * (g.ndim - 2))
        return np.sum(wk * g, axis=0).astype(np.float32)

    def compute_loss(
        x: np.ndarray, y: np.ndarray, reduction: str = "mean", **kwargs: Any
    ) -> np.ndarray | float:
        loss, _ = weights(x, y)
        if reduction == "none":
            return loss.astype(np.float32)
        return float(loss.sum() if reduction == "sum" else loss.mean())

    est.loss_gradient = loss_gradient
    est.compute_loss = compute_loss
    return est


def phase(estimator: Any, inner: Any, targeted: bool, seed: int, targets: int = 0,
          mask: bool = False) -> Any:
    """An ART evasion attack that runs ``inner`` only in ART AutoAttack's untargeted
    (``targeted=False``) or targeted pass, seeding NumPy's generator first. In the targeted pass
    it attacks only the rows whose target is among their top ``targets`` classes after the true
    one, handing ``inner`` labels ``onehot(t) + 0.5 onehot(y)`` (see :func:`dlr_estimator`);
    ``mask`` passes AutoAttack's mask on to ``inner``."""
    from art.attacks.attack import EvasionAttack
    from art.estimators.classification.classifier import ClassifierMixin
    from art.estimators.estimator import BaseEstimator

    class Phase(EvasionAttack):  # type: ignore[misc]
        attack_params = [*EvasionAttack.attack_params, "targeted"]
        _estimator_requirements = (BaseEstimator, ClassifierMixin)

        def __init__(self) -> None:
            super().__init__(estimator=estimator)
            self.inner, self.phase, self.seed, self.targets = inner, targeted, seed, targets

        def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
            x = np.asarray(x, np.float32)
            if self.targeted != self.phase or len(x) == 0 or y is None:
                return x.copy()
            extra = {"mask": kwargs["mask"]} if mask and kwargs.get("mask") is not None else {}
            np.random.seed(self.seed)
            if not self.phase:
                with np.errstate(divide="ignore", invalid="ignore"):  # Square's L2 windows
                    return np.asarray(self.inner.generate(x, y, **extra), np.float32)
            # targeted pass: the rows it attacks are still classified correctly (clean points)
            z = np.asarray(self.estimator.predict(x))
            true = np.argmax(z, axis=1)
            target = np.argmax(np.asarray(y), axis=1)
            rank = np.sum(z > z[np.arange(len(z)), target][:, None], axis=1)
            rows = np.flatnonzero((rank >= 1) & (rank <= self.targets) & (target != true))
            out = x.copy()
            if len(rows):
                labels = np.zeros((len(rows), z.shape[1]), np.float32)
                labels[np.arange(len(rows)), target[rows]] = 1.0
                labels[np.arange(len(rows)), true[rows]] = 0.5
                out[rows] = self.inner.generate(x[rows], labels, **extra)
            return out

        def _check_params(self) -> None:
            pass

    return Phase()


class AutoAttack(ArtAttack):
    name = "autoattack"
    description = (
        "AutoAttack (ART): APGD-CE, APGD-T (targeted DLR), DeepFool for FAB-T, Square; "
        "worst case per example"
    )
    needs_classifier = True
    config: ClassVar[AutoAttackConfig] = AutoAttackConfig()

    def skip_reason(self, target: Target) -> str | None:
        unit = self.config.unit
        if unit is not None and target.budget.unit != unit:
            return (
                f"{self.name} is defined for {unit} budgets; this task's budget is "
                f"{target.budget.unit}: use 'autoattack' instead"
            )
        return super().skip_reason(target)

    def settings(self, settings: AttackSettings) -> AttackSettings:
        c = self.config
        steps = c.steps or settings.steps
        return replace(
            settings,
            steps=steps,
            step_steps=steps,
            restarts=c.restarts or settings.restarts,
            square_queries=c.square_queries or settings.square_queries,
        )

    def art_attack(self, target: Target, eps: float, settings: AttackSettings) -> Any:
        from art.attacks.evasion import AutoAttack as ArtAutoAttack
        from art.attacks.evasion import DeepFool

        s = self.settings(settings)
        est = target.estimator
        apgd_t = APGD().art_attack(replace(target, estimator=dlr_estimator(est)), eps, s)
        apgd_t.set_params(targeted=True)
        deepfool = DeepFool(
            est, max_iter=self.config.deepfool_steps or s.steps, epsilon=1e-3, nb_grads=10,
            batch_size=s.batch_size, verbose=False,
        )
        parts = [
            phase(est, APGD().art_attack(target, eps, s), False, s.seed, mask=True),
            phase(est, deepfool, False, s.seed),
            phase(est, Square().art_attack(target, eps, s), False, s.seed),
        ]
        if est.nb_classes > 2:  # two classes: the one target is the untargeted pass, DLR constant
            parts.insert(1, phase(est, apgd_t, True, s.seed, self.config.target_classes, mask=True))
        return ArtAutoAttack(
            est, norm=self._norm(target), eps=eps, eps_step=2 * eps, attacks=parts,
            batch_size=s.batch_size, targeted=est.nb_classes > 2,
        )

    def art_mask(self, target: Target, mask: np.ndarray | None) -> np.ndarray | None:
        return target.common_mask  # ART's APGD broadcasts one mask only (see APGD)


class AutoAttackRobustBench(AutoAttack):
    name = "autoattack-robustbench"
    description = (
        "AutoAttack as RobustBench runs it (standard version, L-inf 8/255, 100 iterations, "
        "9 targets, 5000 Square queries; DeepFool for FAB-T)"
    )
    config = AutoAttackConfig(
        steps=100, restarts=1, square_queries=5000, target_classes=9, deepfool_steps=100,
        epsilons=(8.0,), unit="pixel/255",
    )
    epsilons = config.epsilons


BUILTIN: tuple[Attack, ...] = (*ATTACKS, AutoAttack(), AutoAttackRobustBench())
"""Every built-in attack: :data:`dlbench.robustness.attacks.BUILTIN` and the AutoAttack variants
(``dlbench.api.BUILTIN_ATTACKS``, registered by ``plugins/attacks.py``)."""
