"""Accuracy: train from the shared initial weights for a fixed budget, with a seeded data order.

Every framework starts from the same NumPy-initialised weights and sees the same batches in the
same order (epoch ``e`` uses the permutation drawn from ``(seed, e)``), so what differs is the
framework. Reports test metrics, a per-epoch learning curve, training time apart from evaluation
time, and time-to-accuracy for the task's target. Trained weights are stored as an ``.npz``
artifact; ``reuse: true`` (and the robustness scenario) reload them instead of retraining.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dlbench.errors import UnsupportedError
from dlbench.measure.memory import peak_host_memory_mb
from dlbench.params import COMMON_PARAMS, Param
from dlbench.result import Measurement, Result
from dlbench.robustness.training import adversarial_epoch_fn
from dlbench.run.context import FRAMEWORK_LEVEL
from dlbench.scenarios.base import Scenario
from dlbench.scenarios.figures import (
    Column,
    Figure,
    as_float,
    metric_direction,
    metric_figure,
    task_metrics,
)
from dlbench.spec import weights_digest
from dlbench.stats import proportion_ci

if TYPE_CHECKING:
    from dlbench.framework import Model
    from dlbench.run.context import CellContext
    from dlbench.spec import ModelSpec
    from dlbench.task import Dataset

TRAINING_PARAMS: dict[str, Param] = {
    "epochs": Param(None, "training epochs (None: the task's default)", type=int, min=1, max=100_000),
    "batch_size": Param(None, "training batch size (None: the task's default)", type=int, min=1),
    "train_fraction": Param(1.0, "fraction of the training split used (seeded subset)", type=float,
                            min=0, exclusive_min=True, max=1),
    "learning_rate": Param(None, "override the task's learning rate", type=float, min=0,
                           exclusive_min=True),
    "reuse": Param(False, "reload trained weights stored by an earlier identical cell", type=bool),
    "train_attack": Param("none", "adversarial training: none, fgsm (fast FGSM) or pgd (see "
                          "dlbench.robustness.training)", ("none", "fgsm", "pgd")),
    "train_epsilon": Param(None, "adversarial-training budget in the task's perturbation unit "
                           "(None: the domain's default)", type=float, min=0),
}


@dataclass
class Trained:
    """A trained model and how it got there."""

    model: Model
    spec: ModelSpec | None
    initial: dict[str, np.ndarray] | None
    curve: list[dict[str, Any]] = field(default_factory=list)
    train_time: float = 0.0
    time_to_target: float = math.nan
    reused: bool = False
    artifact: str | None = None
    trained_digest: str | None = None


def training_data(ctx: CellContext) -> Dataset:
    """The cell's dataset, its training split cut to ``train_fraction`` (seeded, nested) below 1."""
    dataset = ctx.dataset
    frac = float(ctx.params.get("train_fraction", 1.0))
    return dataset.subset(frac, ctx.seed) if frac < 1.0 else dataset


def train_or_load(ctx: CellContext, dataset: Dataset, reuse: bool,
                  key_extra: dict[str, Any] | None = None) -> Trained:
    """Train the cell's model on ``dataset`` (or reload identical trained weights when ``reuse``).

    ``train_attack`` other than ``none`` trains on adversarial batches (see
    :mod:`dlbench.robustness.training`). ``key_extra`` joins the training key when the data
    differs from the task's own (e.g. corrupted training interactions), so it never collides
    with the clean model's artifact.
    """
    p = ctx.params
    if not ctx.framework.trains:
        return trained_elsewhere(ctx, dataset, key_extra)
    classic = ctx.framework.kind == "classic"
    epochs = 1 if classic else int(p.get("epochs") or ctx.task.default_epochs(p))
    bs = int(p.get("batch_size") or ctx.task.default_batch_size(p))
    spec = None if classic else ctx.spec(dataset)
    initial = spec.init_weights(ctx.seed) if spec is not None else None
    model = ctx.build(spec, initial)
    attack = p.get("train_attack") or "none"
    epoch_fn = None
    train_eps = None
    if attack != "none":
        if classic:
            raise UnsupportedError(f"{ctx.framework.name} has no input gradients for adversarial "
                                   f"training: use train_attack=none")
        epoch_fn, train_eps = adversarial_epoch_fn(ctx.task, p, dataset, attack, p.get("train_epsilon"),
                                                   ctx.seed)
    key = ctx.training_key(spec, epochs=epochs, batch_size=bs, fraction=p.get("train_fraction", 1.0),
                           lr=p.get("learning_rate"), attack=None if attack == "none" else attack,
                           train_epsilon=train_eps, **(key_extra or {}))
    if reuse and not classic:
        loaded = ctx.load_weights(key)
        if loaded is not None:
            weights, meta = loaded
            model.set_weights(weights)
            ctx.log(f"reloaded trained weights {key} (trained in {meta.get('train_time_s', '?')} s)")
            return Trained(model, spec, initial, list(meta.get("curve", [])), float(meta.get("train_time_s", 0)),
                           float(meta.get("time_to_target_s", math.nan)), True,
                           str(ctx.artifact_path(key).relative_to(ctx.artifacts_dir)), weights_digest(weights))
    out = Trained(model, spec, initial)
    headline = ctx.task.headline(p)
    target = ctx.task.target(p)
    for epoch in range(1, epochs + 1):
        order = np.random.default_rng([ctx.seed, epoch]).permutation(dataset.n_train)
        t0 = time.perf_counter()
        if epoch_fn is not None:
            loss = epoch_fn(model, bs, order)
        else:
            loss = model.fit_epoch(dataset.x_train, dataset.y_train, bs, order)
        dt = time.perf_counter() - t0
        out.train_time += dt
        metrics = ctx.task.evaluate(dataset.y_test, model.predict(dataset.x_test), p)
        point = {"epoch": epoch, "time_s": out.train_time, "epoch_time_s": dt, "train_loss": loss, **metrics}
        out.curve.append(point)
        ctx.log(f"epoch {epoch}/{epochs}: loss {loss:.4f} {headline} {metrics.get(headline, math.nan):.4f} ({dt:.2f} s)")
        if target is not None and math.isnan(out.time_to_target) and headline in metrics \
                and ctx.task.is_better(headline, metrics[headline], target):
            out.time_to_target = out.train_time
    if not classic:
        weights = model.get_weights()
        out.trained_digest = weights_digest(weights)
        out.artifact = ctx.save_weights(key, weights, {"train_time_s": out.train_time, "curve": out.curve,
                                                       "time_to_target_s": out.time_to_target,
                                                       "cell": ctx.cell.key})
    return out


def trained_elsewhere(ctx: CellContext, dataset: Dataset, key_extra: dict[str, Any] | None) -> Trained:
    """For a framework that cannot train (``Framework.trains`` False): the weights that the
    framework named by ``trained_by`` trains in the identical cell (its default variant and
    precision), reloaded from the store when they are there, else trained here with it and
    stored; then the cell's own framework runs them."""
    name = str(ctx.params.get("trained_by") or "")
    if not name:
        raise UnsupportedError(f"{ctx.framework.name} cannot train: set trained_by to the framework "
                               "whose trained weights it runs")
    trainer = ctx.plugins.frameworks.get(name, "trained_by")
    why = f"{ctx.framework.name} cannot train: it runs weights trained by {name} (trained_by)"
    if trainer.kind != "neural" or not trainer.trains:
        raise UnsupportedError(f"{why}, which does not train the neural spec: name a training "
                               "framework such as torch")
    avail = trainer.availability()
    if not avail.installed:
        raise UnsupportedError(f"{why}, which is not installed: {avail.reason}")
    own = {k: q.default for k, q in {**COMMON_PARAMS, **trainer.params}.items()
           if k in FRAMEWORK_LEVEL or k in trainer.params}  # the trainer's defaults, as its cell has
    params = {**{k: v for k, v in ctx.params.items()
                 if k not in FRAMEWORK_LEVEL and k not in ctx.framework.params}, **own}
    cell = replace(ctx.cell, framework=name, params=params)
    sub = replace(ctx, cell=cell, framework=trainer, result=Result(cell))
    threads = ctx.params.get("threads")
    trainer.setup(int(threads) if threads else None, ctx.seed, {})
    trained = train_or_load(sub, dataset, True, key_extra)
    ctx.log(f"{ctx.framework.name} runs the weights {name} trained ({trained.artifact})")
    model = ctx.build(trained.spec, trained.model.get_weights())
    return replace(trained, model=model)


class AccuracyScenario(Scenario):
    name = "accuracy"
    warm_ok = True  # no first-call or compile time: a warm worker may run it
    charts: ClassVar[tuple[str, ...]] = ("learning",)
    description = "train from shared initial weights; test metrics, learning curve, time-to-accuracy"
    params: ClassVar[dict[str, Param]] = dict(TRAINING_PARAMS)

    def run(self, ctx: CellContext) -> None:
        p = ctx.params
        dataset = training_data(ctx)
        trained = train_or_load(ctx, dataset, bool(p.get("reuse", False)))
        evaluate_into(ctx, trained.model, dataset)
        r = ctx.result
        r.metrics.update({"train_time_s": trained.train_time, "time_to_target_s": trained.time_to_target,
                          "epochs": float(len(trained.curve)), "n_train": float(dataset.n_train),
                          "peak_host_memory_mb": peak_host_memory_mb()})
        if trained.curve:
            r.metrics["first_epoch_s"] = trained.curve[0]["epoch_time_s"]
        r.series["learning_curve"] = trained.curve
        r.details["reused_trained_weights"] = trained.reused
        r.details["target"] = {"metric": ctx.task.headline(p), "value": ctx.task.target(p)}
        info = ctx.model_info(trained.spec, trained.initial)
        info.trained_digest = trained.trained_digest
        info.artifact = trained.artifact
        r.model = info


    # -- reports -----------------------------------------------------------------------------------
    def headline(self, result: Result) -> Figure | None:
        """The task's headline metric (the first of its metrics) with its 95% CI."""
        names = task_metrics(result)
        return metric_figure(result, names[0]) if names else None

    def columns(self, results: Sequence[Result]) -> list[Column]:
        """Ranked by the first task metric: every task metric (best marked), training time and
        time to the task's target."""
        metrics: list[str] = []
        for r in results:
            metrics += [m for m in task_metrics(r) if m not in metrics]
        cols = [Column(f"{m} {'↑' if metric_direction(m) else '↓'}", _metric_column(m),
                       rank=i == 0, best=True) for i, m in enumerate(metrics)]
        return [*cols, Column("Train time", _train_time), Column("Time to target", _time_to_target)]


def _metric_column(name: str) -> Callable[[Result], Figure | None]:
    return lambda r: metric_figure(r, name, sig=4)


def _train_time(r: Result) -> Figure | None:
    v = as_float(r.metrics.get("train_time_s"))
    return None if math.isnan(v) else Figure("train_time_s", v, "s", higher_is_better=False,
                                             fmt="duration")


def _time_to_target(r: Result) -> Figure | None:
    if "time_to_target_s" not in r.metrics:
        return None
    v = as_float(r.metrics["time_to_target_s"])
    return Figure("time_to_target_s", v, "s", higher_is_better=False, fmt="duration",
                  display="not reached" if math.isnan(v) else None)

def evaluate_into(ctx: CellContext, model: Model, dataset: Dataset) -> dict[str, float]:
    """Test metrics, per-example scores (raw samples for paired tests) and their 95% CIs."""
    outputs = model.predict(dataset.x_test)
    metrics = ctx.task.evaluate(dataset.y_test, outputs, ctx.params)
    ctx.result.metrics.update(metrics)
    headline = ctx.task.headline(ctx.params)
    ctx.result.details["task_metrics"] = [headline, *[m for m in metrics if m != headline]]
    ctx.result.details["headline"] = headline
    ctx.result.metrics["n_test"] = float(dataset.n_test)
    per = ctx.task.per_example(dataset.y_test, outputs, ctx.params)
    if per is not None:
        ctx.result.measurements.append(Measurement("test_correct", "fraction", per.tolist(), higher_is_better=True))
        lo, hi = proportion_ci(int(per.sum()), len(per))
        ctx.result.details.setdefault("metric_ci", {})["accuracy"] = [lo, hi]
    return metrics
