"""Attack budgets in each domain's own units, and the random-noise baseline at the same budget.

Suites give epsilon in the unit of the task's :class:`~dlbench.task.PerturbationDomain`:

* ``pixel/255`` (images): an L-inf budget of ``eps`` grey levels out of 255, i.e.
  ``eps / 255 * (clip_max - clip_min)`` in input units; inputs stay within the clip range.
* ``dB`` (audio): the speech task's input is a log-mel spectrogram whose value is
  ``1 + dB / db_per_unit``, with dB measured relative to the utterance's loudest
  time-frequency bin (``Dataset.meta["db_per_unit"]``, 80 for the built-in task). An L-inf
  budget of ``eps`` dB therefore lets the attacker scale the mel power of every
  time-frequency bin by a factor between ``10**(-eps/10)`` and ``10**(eps/10)``: a change of at
  most ``eps`` dB *relative to the signal in that bin*. It is a budget on the features (the
  waveform is not exposed), clipped to the feature range (the -80 dB floor, the 0 dB peak).
* ``relative-norm`` (NLP and recommendation embeddings): an L2 budget of ``eps`` times the L2
  norm of the example's own embeddings (the real tokens of a text; the user and item vectors of
  a pair), as in adversarial personalised ranking (He et al., SIGIR 2018). The embedding-space
  attack space is normalised per example (see :mod:`dlbench.robustness.embedding`), so ``eps``
  is used as it is. Recommendation attacks perturb each shared embedding *row* instead (one
  delta per user and per item, :mod:`dlbench.robustness.shared_rows`): ``eps`` times that row's
  own norm.
* ``embedding-l2`` (the scenario's ``budget: absolute``, for shared-row attacks): an L2 budget of
  ``eps`` in embedding units per row, whatever the row's norm, so models whose embeddings grew to
  different sizes in training are attacked with the same budget (the trained tables' mean and
  median row norms are reported beside the figures).

The random-noise baseline spends the same budget without looking at the model: random signs
of size ``eps`` on every free feature (a vertex of the L-inf ball, the largest random move it
allows) or a uniformly random direction of L2 length ``eps``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlbench.errors import DlbenchError
from dlbench.task import Dataset, PerturbationDomain

UNITS = ("pixel/255", "dB", "relative-norm", "embedding-l2")
BUDGETS = ("relative", "absolute")
"""What an embedding-space ``eps`` is relative to: the norm (``relative-norm``) or nothing."""


@dataclass(frozen=True)
class Budget:
    """How a domain's epsilon maps to the attack space."""

    unit: str
    norm: float
    """``inf`` (L-inf) or ``2.0`` (L2), the norm attacks use."""
    scale: float
    """Attack-space units per domain unit."""
    clip: tuple[float, float] | None
    defaults: tuple[float, ...]
    """Default epsilon grid (domain units, 0 first)."""
    large: float
    """An epsilon at which any model should fall to chance (the audit's saturation check)."""
    train_default: float
    """Default ``train_epsilon`` of adversarial training."""

    def to_attack(self, eps: float) -> float:
        return float(eps) * self.scale

    @property
    def norm_name(self) -> str:
        return "Linf" if np.isinf(self.norm) else f"L{self.norm:g}"


def budget_for(
    domain: PerturbationDomain, dataset: Dataset | None = None, mode: str = "relative"
) -> Budget:
    """The budget of a task's perturbation domain (``dataset.meta`` supplies the dB scale);
    ``mode="absolute"`` turns a ``relative-norm`` domain's budget into ``embedding-l2``."""
    if mode not in BUDGETS:
        raise DlbenchError(f"budget={mode!r}: choose one of {', '.join(BUDGETS)}")
    if mode == "absolute" and domain.unit != "relative-norm":
        raise DlbenchError(
            f"budget='absolute' is for embedding-space tasks; this task's budget is in "
            f"{domain.unit}: leave budget at 'relative'"
        )
    clip = None
    if domain.clip_min is not None and domain.clip_max is not None:
        clip = (float(domain.clip_min), float(domain.clip_max))
    if domain.unit == "pixel/255":
        width = clip[1] - clip[0] if clip else 1.0
        return Budget("pixel/255", np.inf, width / 255.0, clip, (0, 4, 8, 16, 32, 64), 128.0, 16.0)
    if domain.unit == "dB":
        per_unit = dataset.meta.get("db_per_unit") if dataset is not None else None
        if not per_unit:
            raise DlbenchError(
                "perturbation unit 'dB' needs Dataset.meta['db_per_unit'] (dB per input "
                "unit) from the task's load(); add it there"
            )
        return Budget(
            "dB",
            np.inf,
            1.0 / float(per_unit),
            clip,
            (0, 0.5, 1, 2, 4, 8),
            float(per_unit) / 2.0,
            2.0,
        )
    if domain.unit == "relative-norm":
        if domain.space != "embedding":
            raise DlbenchError(
                "perturbation unit 'relative-norm' is for space 'embedding', not "
                f"{domain.space!r}: use pixel/255 or dB for input space"
            )
        if mode == "absolute":
            return Budget("embedding-l2", 2.0, 1.0, None, (0, 0.05, 0.1, 0.2, 0.5, 1.0), 10.0, 0.1)
        return Budget("relative-norm", 2.0, 1.0, None, (0, 0.05, 0.1, 0.2, 0.5, 1.0), 10.0, 0.1)
    raise DlbenchError(
        f"unknown perturbation unit {domain.unit!r}: choose one of {', '.join(UNITS)}"
    )


def random_noise(
    x: np.ndarray,
    eps: float,
    norm: float,
    rng: np.random.Generator,
    mask: np.ndarray | None = None,
    clip: tuple[float, float] | None = None,
) -> np.ndarray:
    """``x`` moved by random noise of size ``eps`` (attack units) in ``norm``; ``mask`` (broadcast
    to ``x``) marks the free features, ``clip`` the valid range."""
    x = np.asarray(x, dtype=np.float32)
    free = np.ones_like(x) if mask is None else np.broadcast_to(mask, x.shape).astype(np.float32)
    if np.isinf(norm):
        delta = rng.choice(np.array([-1.0, 1.0], np.float32), size=x.shape) * eps
    else:
        delta = rng.standard_normal(x.shape).astype(np.float32)
    delta = delta * free
    if not np.isinf(norm):
        axes = tuple(range(1, x.ndim))
        length = np.sqrt(np.sum(delta.astype(np.float64) ** 2, axis=axes, keepdims=True))
        delta = (delta / np.maximum(length, 1e-12) * eps).astype(np.float32)
    out = x + delta
    if clip is not None:
        out = np.clip(out, clip[0], clip[1])
    return out.astype(np.float32)
