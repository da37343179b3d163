"""What a robustness cell attacks: the ART estimator over the trained model, the evaluation
subset in attack space, the budget, and the task metric of any outputs with its 95% CI.

The evaluation subset is the same for every framework (a permutation of the test split drawn
from the cell's seed). Tasks whose test split comes in groups of rows scored together
(``Dataset.meta["candidates"]``, e.g. 100 candidate items per user for top-10 ranking) are
subset by whole groups, and ``eval_size`` counts groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from dlbench.errors import DlbenchError, UnsupportedError
from dlbench.robustness.budgets import Budget, budget_for
from dlbench.robustness.embedding import EmbeddingCodec, lookup, split_spec
from dlbench.robustness.estimator import InputCodec, is_classifier, make_estimator
from dlbench.robustness.shared_rows import RowCodec, norm_stats, row_estimator
from dlbench.stats import proportion_ci

if TYPE_CHECKING:
    from dlbench.framework import Model
    from dlbench.run.context import CellContext
    from dlbench.spec import ModelSpec
    from dlbench.task import Dataset, Task

BOOTSTRAP = 200
DEFENCES = ("none", "feature_squeezing", "spatial_smoothing")
S = TypeVar("S")


@dataclass
class EvalSet:
    """The evaluation examples: original model inputs, targets and their test-split rows."""

    inputs: dict[str, np.ndarray]
    y: np.ndarray
    rows: np.ndarray
    group: int = 1
    """Rows per scored unit (1, or the candidates per user of a ranking task)."""

    @property
    def units(self) -> int:
        return len(self.y) // self.group

    def unit_rows(self, units: np.ndarray) -> np.ndarray:
        """Row positions (within this set) of the given units."""
        return (np.asarray(units)[:, None] * self.group + np.arange(self.group)[None, :]).reshape(
            -1
        )


def eval_subset(dataset: Dataset, size: int, seed: int) -> EvalSet:
    group = int(dataset.meta.get("candidates", 1) or 1)
    n_units = dataset.n_test // group
    units = np.sort(np.random.default_rng([seed, 11]).permutation(n_units)[: max(1, int(size))])
    rows = (units[:, None] * group + np.arange(group)[None, :]).reshape(-1)
    return EvalSet(
        {k: np.asarray(v)[rows] for k, v in dataset.x_test.items()},
        np.asarray(dataset.y_test)[rows],
        rows,
        group,
    )


@dataclass
class Score:
    """A metric on a set of examples with its 95% CI and per-unit scores (when the task has
    them: 1/0 correct for classifiers, hit@10 per user for ranking)."""

    value: float
    ci_low: float
    ci_high: float
    per_unit: np.ndarray | None
    n: int


def score(
    task: Task,
    params: Mapping[str, Any],
    metric: str,
    y: np.ndarray,
    outputs: np.ndarray,
    group: int = 1,
    seed: int = 0,
) -> Score:
    """``metric`` of ``outputs``; Wilson CI when it is the mean of the per-unit 0/1 scores, else a
    seeded percentile bootstrap over units."""
    value = float(task.evaluate(y, outputs, params)[metric])
    per = task.per_example(y, outputs, params)
    n = len(y) // group
    if (
        per is not None
        and len(per) == n
        and abs(float(np.mean(per)) - value) < 1e-9
        and np.all((per == 0) | (per == 1))
    ):
        lo, hi = proportion_ci(int(per.sum()), n)
        return Score(value, lo, hi, per.astype(np.float64), n)
    rng = np.random.default_rng([seed, 13])
    draws = []
    for _ in range(BOOTSTRAP):
        units = rng.integers(0, n, size=n)
        rows = (units[:, None] * group + np.arange(group)[None, :]).reshape(-1)
        draws.append(task.evaluate(y[rows], outputs[rows], params)[metric])
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return Score(value, float(lo), float(hi), None if per is None else per.astype(np.float64), n)


@dataclass
class Target:
    """An attackable model: ART estimator, clean examples ``x`` in attack space, labels."""

    estimator: Any
    x: np.ndarray
    labels: np.ndarray
    """What ART attacks get as ``y``: class ids (classifiers) or float targets (regressors)."""
    budget: Budget
    space: str
    gradients: bool
    no_gradient_reason: str = ""
    headline: str = "accuracy"
    mask: np.ndarray | None = None
    """Per-example mask of the features FGSM, PGD and noise may move (None: all)."""
    common_mask: np.ndarray | None = None
    """One mask for all examples (APGD)."""
    extras: dict[str, float] = field(default_factory=dict)
    """Figures to report beside the attack results (e.g. the trained embeddings' norms)."""

    @property
    def classifier(self) -> bool:
        return is_classifier(self.estimator)

    def select(self, rows: np.ndarray) -> Target:
        """The target restricted to evaluation rows ``rows`` (what one attack run attacks)."""
        return replace(self, x=self.x[rows], labels=self.labels[rows], mask=self.mask_rows(rows))

    def settings(self, settings: S) -> S:
        """The attack settings this target needs (unchanged here)."""
        return settings

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Model outputs (after the defence) of attack-space examples ``x``."""
        return self.estimator.model_outputs(x)

    def mask_rows(self, rows: np.ndarray) -> np.ndarray | None:
        return None if self.mask is None else self.mask[rows]


@dataclass
class RowTarget(Target):
    """A shared-row embedding target (:mod:`dlbench.robustness.shared_rows`): ``x`` holds the
    embedding rows the evaluation pairs read, :meth:`outputs` gives one output per pair."""

    def select(self, rows: np.ndarray) -> RowTarget:
        codec = self.estimator.codec.subset(rows)
        est = row_estimator(self.estimator.dl_model, codec, self.estimator.max_batch)
        return replace(
            self, estimator=est, x=codec.x0, labels=np.zeros(codec.rows, np.float32),
            mask=codec.valid, common_mask=codec.valid,
        )

    def settings(self, settings: S) -> S:
        """Every row in one ART batch, so all rows move together (one joint perturbation)."""
        return replace(settings, batch_size=max(1, len(self.x)))  # type: ignore[type-var]


def make_defence(name: str, budget: Budget) -> Any:
    """An ART input-preprocessing defence (applied in the forward pass; BPDA for gradients)."""
    if name == "none":
        return None
    if budget.clip is None:
        raise UnsupportedError(
            f"defence {name!r} works on bounded inputs (images, spectrograms); "
            f"this task is attacked in unbounded {budget.unit} space"
        )
    if name == "feature_squeezing":
        from art.defences.preprocessor import FeatureSqueezing

        return FeatureSqueezing(clip_values=budget.clip, bit_depth=4)
    if name == "spatial_smoothing":
        from art.defences.preprocessor import SpatialSmoothing

        return SpatialSmoothing(window_size=3, channels_first=False, clip_values=budget.clip)
    raise UnsupportedError(f"unknown defence {name!r}: choose one of {', '.join(DEFENCES)}")


def build_target(
    ctx: CellContext,
    model: Model,
    spec: ModelSpec | None,
    weights: Mapping[str, np.ndarray] | None,
    dataset: Dataset,
    evalset: EvalSet,
    defence: str,
    max_eps: float,
    max_batch: int = 128,
    mode: str = "relative",
) -> Target:
    """The attackable view of the cell's trained ``model`` (input or embedding space; ``mode``:
    embedding budgets relative to the norm or absolute, see :mod:`dlbench.robustness.budgets`)."""
    domain = ctx.task.perturbation(ctx.params)
    budget = budget_for(domain, dataset, mode)
    headline = ctx.task.headline(ctx.params)
    nb_classes = dataset.num_classes or (
        spec.shapes()[spec.output][-1] if spec is not None else None
    )
    classic = ctx.framework.kind == "classic"
    no_grad = (
        f"{ctx.framework.name} is a classic baseline without input gradients" if classic else ""
    )
    if not classic and not ctx.framework.trains:
        no_grad = f"{ctx.framework.name} is an inference runtime without input gradients"
    if domain.space == "input":
        if len(domain.inputs) != 1 or (spec is not None and len(spec.inputs) != 1):
            raise UnsupportedError(
                f"input-space attacks need one float input, task {ctx.task.name!r} "
                f"perturbs {list(domain.inputs)}"
            )
        name = domain.inputs[0]
        codec = InputCodec(name, tuple(np.shape(evalset.inputs[name])[1:]))
        defences = make_defence(defence, budget)
        est = make_estimator(model, codec, nb_classes, budget.clip, defences, max_batch)
        return Target(
            est,
            codec.encode(evalset.inputs),
            _labels(est, evalset.y),
            budget,
            "input",
            not no_grad,
            no_grad,
            headline,
        )
    if domain.space != "embedding":
        raise UnsupportedError(
            f"unknown perturbation space {domain.space!r}: choose input or embedding"
        )
    if classic or spec is None or weights is None:
        raise UnsupportedError(
            f"{ctx.framework.name} has no embeddings to attack (classic baseline): "
            "only corruptions apply"
        )
    if defence != "none":
        make_defence(defence, budget)  # raises: defences need bounded inputs
    split = split_spec(spec, domain.embedding_nodes)
    derived = ctx.build(split.spec, split.weights(weights))
    if domain.shared_rows:
        rcodec = RowCodec(split, weights, evalset.inputs, evalset.y, mode)
        est = row_estimator(derived, rcodec, max_batch)
        return RowTarget(
            est, rcodec.x0, np.zeros(rcodec.rows, np.float32), budget, "embedding", True, "",
            headline, rcodec.valid, rcodec.valid, norm_stats(weights, split),
        )
    if mode != "relative":
        raise DlbenchError(
            f"budget={mode!r} is implemented for shared-row embedding attacks "
            f"(recommendation); task {ctx.task.name!r} is attacked per example relative to "
            "each example's embedding norm: leave budget at 'relative'"
        )
    ecodec = EmbeddingCodec(split, lookup(split, weights, evalset.inputs), max_eps)
    est = make_estimator(
        derived, ecodec, nb_classes, (-ecodec.bound, ecodec.bound), None, max_batch
    )
    return Target(
        est,
        ecodec.x0,
        _labels(est, evalset.y),
        budget,
        "embedding",
        True,
        "",
        headline,
        ecodec.attack_mask(True),
        ecodec.attack_mask(False),
    )


def _labels(estimator: Any, y: np.ndarray) -> np.ndarray:
    if is_classifier(estimator):
        return np.asarray(y).reshape(-1).astype(np.int64)
    return np.asarray(y, np.float32).reshape(-1)
