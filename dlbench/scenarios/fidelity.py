"""Harness fidelity: does dlbench report the throughput a hand-written loop would see?

In one process, on one model and one batch, the throughput from dlbench's sampler (first call
apart, warm-up, synchronised adaptive windows through the :class:`~dlbench.framework.Model`
wrapper) is divided by the throughput of a plain loop over the framework's own native callable
(``Model.native_step``: the nn.Module call, the jitted function, the tf.function), timed as a
developer would by hand: ``t0; for _ in range(n): step(); sync(); t1``. The two are interleaved
in rounds so machine drift hits both alike. A ratio near 1 means the harness adds no overhead and
hides no asynchronous work. ``fidelity_ratio`` divides the reported median by the plain loop's
total (a mean); ``fidelity_ratio_mean`` divides the mean over dlbench's windows by it, so the two
sides use one statistic and only the harness's machinery differs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dlbench.measure.sampler import Budget, sample
from dlbench.params import Param
from dlbench.result import Measurement, Result
from dlbench.scenarios.base import Scenario
from dlbench.scenarios.figures import Column, Figure, measurement_figure

if TYPE_CHECKING:
    from dlbench.cell import Cell
    from dlbench.framework import Framework
    from dlbench.run.context import CellContext
    from dlbench.task import Task


class FidelityScenario(Scenario):
    name = "fidelity"
    warm_ok = True  # no first-call or compile time: a warm worker may run it
    description = "dlbench's reported throughput / a hand-written timing loop's, same model and process"
    params: ClassVar[dict[str, Param]] = {
        "mode": Param("infer", "infer or train", ("infer", "train")),
        "batch_size": Param(64, "examples per step", type=int, min=1),
        "rounds": Param(5, "interleaved rounds of (dlbench sampling, plain loop)", type=int, min=1,
                        max=1000),
    }
    budget: ClassVar[dict[str, Any]] = {"max_time": 1.0, "target_ci": 0.01, "warmup_time": 0.5}
    needs_data = False

    def skip_reason(self, cell: Cell, task: Task, framework: Framework) -> str | None:
        if framework.kind == "classic":
            return f"{framework.name} is a classic baseline: fidelity is measured on neural frameworks"
        return None

    def run(self, ctx: CellContext) -> None:
        p = ctx.params
        bs, mode = int(p.get("batch_size", 64)), p.get("mode", "infer")
        spec = ctx.spec()
        weights = spec.init_weights(ctx.seed)
        model = ctx.build(spec, weights)
        xs, y = ctx.task.synthetic_batch(spec, bs, np.random.default_rng(ctx.seed), p)
        nx, ny = model.to_device(xs), model.to_device(y)
        harness_step = (lambda: model.train_step(nx, ny)) if mode == "train" else (lambda: model.forward(nx))
        native_step, native_sync = model.native_step(nx, ny, mode)
        budget = Budget.from_dict({**self.budget, **ctx.cell.budget})
        harness: list[float] = []
        harness_mean: list[float] = []
        plain: list[float] = []
        for _ in range(int(p.get("rounds", 5))):
            s = sample(harness_step, model.synchronize, budget)
            harness.append(bs / float(np.median(s.samples)))
            harness_mean.append(bs / float(np.mean(s.samples)))  # windows are equal: total/total
            n = max(1, int(round(s.sampling_time / float(np.median(s.samples)))))
            plain.append(bs / plain_loop(native_step, native_sync, n))
        ratio = [h / q for h, q in zip(harness, plain, strict=True)]
        ratio_mean = [h / q for h, q in zip(harness_mean, plain, strict=True)]
        r = ctx.result
        r.measurements += [Measurement("throughput", "samples/s", harness),
                           Measurement("throughput_mean", "samples/s", harness_mean),
                           Measurement("plain_throughput", "samples/s", plain),
                           Measurement("fidelity_ratio", "ratio", ratio),
                           Measurement("fidelity_ratio_mean", "ratio", ratio_mean)]
        # what dlbench reports (the median window) over the plain loop (one total: a mean)...
        r.metrics["fidelity_ratio"] = float(np.median(ratio))
        # ...and the same statistic on both sides: the harness's machinery alone. Where the first
        # exceeds 1 and the second does not, the median left out stalls the plain total counts.
        r.metrics["fidelity_ratio_mean"] = float(np.median(ratio_mean))
        r.details["native_step"] = getattr(native_step, "__qualname__", str(native_step))


    # -- reports -----------------------------------------------------------------------------------
    def headline(self, result: Result) -> Figure | None:
        """dlbench's throughput over the hand-written loop's."""
        return measurement_figure(result, "fidelity_ratio")

    def columns(self, results: Sequence[Result]) -> list[Column]:
        """None: the cells table shows each ratio."""
        return []

def plain_loop(step: Any, sync: Any, iterations: int) -> float:
    """Seconds per iteration of the simplest correct hand-written timing loop (after one warm call)."""
    step()
    sync()
    t0 = time.perf_counter()
    for _ in range(iterations):
        step()
    sync()
    return (time.perf_counter() - t0) / iterations
