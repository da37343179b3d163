"""Scalability: throughput against batch size, intra-op threads and data-parallel workers, and
the task's headline metric against the training-set fraction (docs/scalability.md).

One cell sweeps one ``axis`` over ``values`` (a list; in a suite matrix it is nested,
``values: [[1, 2, 4]]``, since a plain list there expands into one cell per element):

* ``batch_size``: one model in this process, each batch sampled and recorded as the speed
  scenario does (:func:`dlbench.measure.sampler.sample`, :func:`dlbench.scenarios.speed.record`);
  running out of memory ends the sweep. Efficiency is the fraction of the peak throughput;
  ``saturation_batch_size`` is the smallest batch reaching ``saturation`` (0.9) of the peak.
* ``threads``: each point is a speed cell with ``threads=N`` in a fresh process (the subprocess
  launcher and :func:`dlbench.run.worker.execute`); efficiency ``T(N) / ((N / N0) * T(N0))``.
* ``workers``: :meth:`dlbench.framework.Framework.data_parallel_throughput` (DDP, JAX sharding,
  MirroredStrategy), ``batch_size`` per worker, ``worker_threads`` per worker on CPU (default 1:
  N workers need N cores, so ``[1, 2]`` is the most a 2-core machine can tell); same efficiency.
* ``train_fraction``: a seeded, nested subset of the training split (same optimizer steps per
  fraction with ``equal_steps``), neural or classic, tested on the whole test split.

``series["scaling"]`` holds one point per value (``axis``, ``value``, ``throughput``, ``ci_low``,
``ci_high``, ``efficiency``, ``metric``, ``error``); raw samples are measurements named for their
point (``throughput@bs=64``, ``throughput@threads=2``, ``throughput@workers=2``,
``test_correct@fraction=0.5``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dlbench.cell import Cell
from dlbench.errors import DlbenchError, UnsupportedError
from dlbench.framework import DataParallelRun, Framework, Model
from dlbench.measure.sampler import Budget, sample
from dlbench.params import Param
from dlbench.result import Measurement, Result
from dlbench.run.launch.base import LaunchConfig
from dlbench.run.launch.subprocess import SubprocessLauncher
from dlbench.scenarios.accuracy import TRAINING_PARAMS, evaluate_into, train_or_load
from dlbench.scenarios.base import Scenario
from dlbench.scenarios.figures import Column, Figure, as_float
from dlbench.scenarios.speed import record

if TYPE_CHECKING:
    from dlbench.cell import Cell
    from dlbench.run.context import CellContext
    from dlbench.task import Task

AXES = ("batch_size", "threads", "workers", "train_fraction")
DEFAULT_VALUES: dict[str, list[Any]] = {"batch_size": [1, 4, 16, 64, 256], "threads": [1, 2],
                                        "workers": [1, 2], "train_fraction": [0.1, 0.25, 0.5, 1.0]}
Point = dict[str, Any]


class ScalabilityScenario(Scenario):
    name = "scalability"
    charts: ClassVar[tuple[str, ...]] = ("scaling",)
    description = ("throughput vs batch size, intra-op threads and data-parallel workers; "
                   "accuracy vs training-set fraction")
    params: ClassVar[dict[str, Param]] = {
        "axis": Param("batch_size", "what one cell sweeps", AXES),
        "values": Param(None, "the sweep as a list (in a suite: values: [[1, 2, 4]]); None: "
                        f"the axis's default ({DEFAULT_VALUES})", type=list, min=0,
                        exclusive_min=True),
        "mode": Param("infer", "batch_size and threads axes: infer or train (workers: train)",
                      ("infer", "train")),
        "batch_size": Param(32, "threads axis: the batch; workers: per-worker batch; "
                            "train_fraction: the training batch", type=int, min=1),
        "worker_threads": Param(None, "workers axis: intra-op threads per worker on CPU (None: 1)",
                                type=int, min=1, max=4096),
        "saturation": Param(0.9, "batch_size axis: saturation_batch_size is the smallest batch "
                            "reaching this fraction of the peak throughput", type=float,
                            min=0, exclusive_min=True, max=1),
        "equal_steps": Param(True, "train_fraction axis: train every fraction for the same number "
                             "of optimizer steps (epochs / fraction, rounded up); false: the same "
                             "epochs (fewer steps on less data)", type=bool),
        "epochs": TRAINING_PARAMS["epochs"],
        "learning_rate": TRAINING_PARAMS["learning_rate"],
        "reuse": TRAINING_PARAMS["reuse"],
    }
    budget: ClassVar[dict[str, Any]] = {"max_time": 2.0, "target_ci": 0.03, "warmup_time": 0.5}
    needs_data = False  # only train_fraction reads data; a missing dataset skips it in the cell

    def skip_reason(self, cell: Cell, task: Task, framework: Framework) -> str | None:
        axis = cell.params.get("axis") or "batch_size"
        if framework.kind == "classic" and axis in ("batch_size", "workers"):
            return f"{framework.name} is a classic baseline: it has a train_fraction axis, no {axis} axis"
        if framework.kind == "classic" and cell.params.get("mode") == "train":
            return f"{framework.name} fits in one call and has no train step to time"
        if axis == "workers" and type(framework).data_parallel_throughput is Framework.data_parallel_throughput:
            return f"{framework.name} implements no data-parallel training (workers axis)"
        native = task.native_model(cell.params)
        if axis == "workers" and native is not None:
            return (f"task {task.name!r} runs native model {native.name!r}: data-parallel "
                    "training replicates the spec; the batch_size, threads and train_fraction "
                    "axes run it")
        return None

    def reuses_process(self, cell: Cell) -> bool:
        """The train_fraction axis (accuracies) may run in a warm worker; the throughput axes
        (batch size, threads, workers: first calls, thread pools) each get a fresh process."""
        return (cell.params.get("axis") or "batch_size") == "train_fraction"

    def check(self, params: Mapping[str, Any]) -> str | None:
        """The sweep's values suit its axis; ``threads`` is unset on the threads and workers axes."""
        axis = params.get("axis") or "batch_size"
        try:
            sweep_values(axis, params.get("values"))
        except DlbenchError as exc:
            return str(exc)
        if axis in ("threads", "workers") and params.get("threads"):
            return (f"threads={params['threads']} with axis={axis}: leave 'threads' unset "
                    "(it would pin this cell's own process); the workers axis takes worker_threads")
        return None

    def run(self, ctx: CellContext) -> None:
        problem = self.check(ctx.params)
        if problem:
            raise DlbenchError(problem)
        axis = ctx.params.get("axis") or "batch_size"
        values = sweep_values(axis, ctx.params.get("values"))
        runners: dict[str, Callable[..., list[Point]]] = {
            "batch_size": _batch_sweep, "threads": _threads_sweep, "workers": _workers_sweep,
            "train_fraction": _fraction_sweep}
        runner = runners[axis]
        budget = {**self.budget, **ctx.cell.budget}
        points = runner(ctx, values, budget)
        summarize_points(ctx.result, axis, points, float(ctx.params.get("saturation") or 0.9),
                         ctx.task.headline(ctx.params))


    # -- reports -----------------------------------------------------------------------------------
    def headline(self, result: Result) -> Figure | None:
        """The best throughput of the sweep (with that point's flags), else the metric at the
        largest value of a train_fraction sweep."""
        pts = [p for p in result.series.get("scaling", []) if not math.isnan(as_float(p.get("throughput")))]
        if pts:
            top = max(pts, key=lambda p: as_float(p["throughput"]))
            return Figure("max throughput", as_float(top["throughput"]), "samples/s", n=len(pts),
                          source=point_measurement(result, top))
        acc = [p for p in result.series.get("scaling", []) if not math.isnan(as_float(p.get("metric")))]
        if acc:
            last = max(acc, key=lambda p: as_float(p.get("value")))
            return Figure(f"metric@{last.get('axis', 'value')}={last.get('value')}",
                          as_float(last["metric"]), n=len(acc))
        return None

    def columns(self, results: Sequence[Result]) -> list[Column]:
        """None: the scaling charts show the sweeps."""
        return []


POINT_LABELS = {"batch_size": "bs"}
"""How a point's measurement names its axis (``throughput@bs=64``)."""


def point_measurement(result: Result, point: Point) -> Measurement | None:
    """The raw measurement of a scaling point (``throughput@bs=64`` for batch size 64)."""
    axis, value = str(point.get("axis", "")), point.get("value")
    v = f"{value:g}" if isinstance(value, float) else str(value)
    return result.measurement(f"throughput@{POINT_LABELS.get(axis, axis)}={v}")

def sweep_values(axis: str, raw: Any) -> list[Any]:
    """The swept values, validated: positive integers, or fractions in (0, 1]."""
    vals = DEFAULT_VALUES[axis] if raw is None else raw
    if isinstance(vals, (int, float)):
        vals = [vals]
    fraction = axis == "train_fraction"
    ok = isinstance(vals, (list, tuple)) and len(vals) > 0 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool)
        and ((0 < v <= 1) if fraction else (v >= 1 and float(v).is_integer())) for v in vals)
    if not ok:
        want = "fractions in (0, 1], e.g. [[0.1, 0.5, 1.0]]" if fraction else "positive integers, e.g. [[1, 2, 4]]"
        raise DlbenchError(f"values={raw!r} for axis {axis}: give a non-empty list of {want}")
    out = sorted({float(v) if fraction else int(v) for v in vals})
    return out


# -- the four sweeps ---------------------------------------------------------------------------------


def _batch_sweep(ctx: CellContext, values: list[int], budget: dict[str, Any]) -> list[Point]:
    mode = ctx.params.get("mode", "infer")
    spec = ctx.spec()
    weights = spec.init_weights(ctx.seed)
    model = ctx.build(spec, weights)
    ctx.result.model = ctx.model_info(spec, weights)
    points: list[Point] = []
    for bs in values:
        xs, y = ctx.task.synthetic_batch(spec, bs, np.random.default_rng([ctx.seed, bs]), ctx.params)
        try:
            nx, ny = model.to_device(xs), model.to_device(y)
            step = _step(model, mode, nx, ny)
            model.reset_peak_memory()
            sampling = sample(step, model.synchronize, Budget.from_dict(budget))
        except Exception as exc:  # noqa: BLE001 - running out of memory ends the sweep
            if not _out_of_memory(exc):
                raise
            points.append({"value": bs, "error": f"out of memory: {str(exc).splitlines()[0][:200]}"})
            ctx.log(f"batch size {bs}: out of memory, sweep stops")
            break
        scratch = replace(ctx, result=Result(ctx.cell))
        record(scratch, sampling, bs, model)
        m = _renamed(scratch.result.measurement("throughput"), "bs", bs)
        ctx.result.measurements.append(m)
        extra: dict[str, Any] = {k: scratch.result.metrics[k] for k in ("first_call_s", "peak_device_memory_mb")
                 if k in scratch.result.metrics}
        points.append({"value": bs, "measurement": m, **extra})
        ctx.log(f"batch size {bs}: {m.stats.median if m.stats else float('nan'):.1f} samples/s")
    return points


def _threads_sweep(ctx: CellContext, values: list[int], budget: dict[str, Any]) -> list[Point]:
    logs = ctx.artifacts_dir.parent / "logs"
    launcher = SubprocessLauncher(LaunchConfig(ctx.plugins.config, ctx.artifacts_dir, logs))
    own = set(ScalabilityScenario.params) - {"mode", "batch_size"}
    base = {k: v for k, v in ctx.params.items() if k not in own}
    started = ctx.result.started_at or time.time()
    points: list[Point] = []
    for n in values:
        remaining = ctx.cell.timeout - (time.time() - started) - 5.0
        child = Cell("speed", ctx.cell.task, ctx.cell.framework, ctx.cell.device, {**base, "threads": n},
                     max(remaining, 10.0), dict(budget), ("batch_size", "mode", "threads"))
        res = launcher.run(child)
        ctx.log(f"threads={n}: {child.key} {res.status}")
        m = res.measurement("throughput")
        if res.status != "ok" or m is None:
            points.append({"value": n, "error": f"{res.status}: {res.error}", "status": res.status,
                           "log_file": res.details.get("log_file")})
            continue
        m = _renamed(m, "threads", n, cell=child.key)
        ctx.result.measurements.append(m)
        points.append({"value": n, "measurement": m, "first_call_s": res.metrics.get("first_call_s")})
        if ctx.result.model is None:
            ctx.result.model = res.model
    return points


def _workers_sweep(ctx: CellContext, values: list[int], budget: dict[str, Any]) -> list[Point]:
    spec = ctx.spec()
    weights = spec.init_weights(ctx.seed)
    options = ctx.build_options()
    ctx.framework.check(options)
    ctx.result.model = ctx.model_info(spec, weights)
    bs = int(ctx.params.get("batch_size") or 32)
    per = ctx.params.get("worker_threads")
    points: list[Point] = []
    for n in values:
        xs, y = ctx.task.synthetic_batch(spec, n * bs, np.random.default_rng([ctx.seed, n]), ctx.params)
        run = DataParallelRun(n, bs, xs, y, dict(budget), int(per) if per else None)
        try:
            samples = ctx.framework.data_parallel_throughput(spec, weights, options, run)
        except UnsupportedError as exc:
            points.append({"value": n, "error": str(exc), "status": "skipped"})
            continue
        m = Measurement(f"throughput@workers={n}", "samples/s", samples, higher_is_better=True,
                        meta={"workers": n, "batch_size_per_worker": bs, "global_batch": n * bs,
                              "worker_threads": run.threads_per_worker or 1})
        ctx.result.measurements.append(m)
        points.append({"value": n, "measurement": m, "global_batch": n * bs})
        ctx.log(f"workers={n}: {m.stats.median if m.stats else float('nan'):.1f} samples/s")
    return points


def _fraction_sweep(ctx: CellContext, values: list[float], budget: dict[str, Any]) -> list[Point]:
    full = ctx.dataset
    headline = ctx.task.headline(ctx.params)
    reuse = bool(ctx.params.get("reuse", False))
    points: list[Point] = []
    epochs = int(ctx.params.get("epochs") or ctx.task.default_epochs(ctx.params))
    equal_steps = bool(ctx.params.get("equal_steps", True))
    for f in values:
        data = full if f >= 1.0 else full.subset(f, ctx.seed)
        n_epochs = math.ceil(epochs / f - 1e-9) if equal_steps else epochs
        cell = ctx.cell.with_params(train_fraction=f, epochs=n_epochs)
        sub = replace(ctx, cell=cell, result=Result(cell))
        trained = train_or_load(sub, data, reuse)
        metrics = evaluate_into(sub, trained.model, data)
        lo, hi = (sub.result.details.get("metric_ci", {}).get(headline) or (math.nan, math.nan))
        correct = sub.result.measurement("test_correct")
        if correct is not None:
            ctx.result.measurements.append(_renamed(correct, "fraction", f))
        if ctx.result.model is None:
            info = ctx.model_info(trained.spec, trained.initial)
            ctx.result.model = info
        points.append({"value": f, "metric": metrics.get(headline, math.nan), "metric_name": headline,
                       "ci_low": lo, "ci_high": hi, "n_train": data.n_train,
                       "epochs": len(trained.curve), "train_time_s": trained.train_time,
                       "metrics": metrics})
        ctx.log(f"train_fraction={f:g} (n={data.n_train}): {headline} {metrics.get(headline, math.nan):.4f}")
    return points


# -- summaries --------------------------------------------------------------------------------------


def summarize_points(result: Result, axis: str, points: list[Point], saturation: float,
                     headline: str) -> None:
    """Fill ``series["scaling"]``, efficiencies and the axis's metrics from the sweep's points."""
    if not any("error" not in p for p in points):
        errors = [p["error"] for p in points]
        if points and all(p.get("status") == "skipped" for p in points):
            raise UnsupportedError(errors[0])
        raise DlbenchError(f"every point of the {axis} sweep failed: {errors[0] if errors else 'no points'}")
    series: list[Point] = []
    for p in points:
        m: Measurement | None = p.pop("measurement", None)
        row: Point = {"axis": axis, "value": p["value"], "throughput": None, "ci_low": p.pop("ci_low", None),
                      "ci_high": p.pop("ci_high", None), "efficiency": None, "metric": p.pop("metric", None)}
        if m is not None and m.stats is not None:
            row.update(throughput=m.stats.median, ci_low=_num(m.stats.ci_low), ci_high=_num(m.stats.ci_high),
                       samples=m.stats.n, measurement=m.name)
        row.update(p)
        series.append(row)
    ok = [r for r in series if r["throughput"] is not None]
    if axis == "batch_size" and ok:
        peak = max(ok, key=lambda r: r["throughput"])
        for r in ok:
            r["efficiency"] = r["throughput"] / peak["throughput"]
        sat = next(r for r in ok if r["throughput"] >= saturation * peak["throughput"])
        result.metrics.update(saturation_batch_size=float(sat["value"]), peak_throughput=peak["throughput"],
                              peak_batch_size=float(peak["value"]))
        result.details["saturation"] = {
            "threshold": saturation, "batch_size": sat["value"], "peak_batch_size": peak["value"],
            "peak_at_largest": peak["value"] == ok[-1]["value"],
            "rule": f"smallest batch size whose median throughput reaches {saturation:g} x the peak"}
    elif axis in ("threads", "workers") and ok:
        base = ok[0]
        for r in ok:
            scale = r["value"] / base["value"]
            r["efficiency"] = r["throughput"] / (scale * base["throughput"])
            if r is not base:
                result.metrics[f"speedup@{r['value']}"] = r["throughput"] / base["throughput"]
                result.metrics[f"scaling_efficiency@{r['value']}"] = r["efficiency"]
        result.details["efficiency_rule"] = (f"T(N) / ((N / {base['value']}) * T({base['value']})), "
                                             f"against the smallest {axis} value")
    elif axis == "train_fraction":
        scored = [r for r in series if r["metric"] is not None and not math.isnan(r["metric"])]
        for r in scored:
            result.metrics[f"{headline}@fraction={r['value']:g}"] = r["metric"]
        if len(scored) > 1:
            result.metrics[f"{headline}_gain"] = scored[-1]["metric"] - scored[0]["metric"]
    result.series["scaling"] = series
    result.details["axis"] = axis
    failed = [r for r in series if "error" in r]
    if failed:
        result.details["failed_points"] = [{"value": r["value"], "error": r["error"]} for r in failed]


def _step(model: Model, mode: str, x: Any, y: Any) -> Callable[[], Any]:
    if mode == "train":
        return lambda: model.train_step(x, y)
    return lambda: model.forward(x)


def _renamed(m: Measurement | None, label: str, value: Any, **meta: Any) -> Measurement:
    assert m is not None
    v = f"{value:g}" if isinstance(value, float) else str(value)
    return Measurement(f"{m.name}@{label}={v}", m.unit, list(m.samples), m.stats, m.higher_is_better,
                       {**m.meta, label: value, **meta})


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return any(s in text for s in ("out of memory", "outofmemory", "resource_exhausted", "resourceexhausted"))
