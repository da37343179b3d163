"""Speed: throughput of inference or training steps, latency percentiles at batch 1.

The first call (compilation, tracing) is timed apart; warm-up follows; then adaptive sampling of
synchronised per-iteration times in contention-checked windows (see :mod:`dlbench.measure.sampler`);
every figure carries the sampler's warnings (contended, not converged, drifting) and, at batch 1,
throughput and latency are checked against each other (``inconsistent``). Inputs are synthetic, of the task's
shapes, and live on the device before timing starts, so no download and no host transfer is timed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dlbench.measure.environment import gpus, resolve_threads
from dlbench.measure.flops import Efficiency, gpu_peak, matmul_peak, step_flops
from dlbench.measure.memory import peak_host_memory_mb
from dlbench.measure.sampler import Budget, Sampling, sample
from dlbench.params import Param
from dlbench.result import Measurement, Result
from dlbench.scenarios.base import Scenario
from dlbench.scenarios.figures import Column, Figure, measurement_figure, metric_figure

if TYPE_CHECKING:
    from dlbench.cell import Cell
    from dlbench.framework import Framework, Model
    from dlbench.run.context import CellContext
    from dlbench.task import Task


class SpeedScenario(Scenario):
    name = "speed"
    charts: ClassVar[tuple[str, ...]] = ("throughput", "latency")
    description = "throughput (samples/s) and latency percentiles of inference or training steps"
    params: ClassVar[dict[str, Param]] = {
        "mode": Param("infer", "infer (forward pass) or train (optimizer step)", ("infer", "train")),
        "batch_size": Param(32, "examples per step; batch 1 also records latency percentiles", type=int,
                            min=1),
    }
    budget: ClassVar[dict[str, Any]] = {"max_time": 5.0, "target_ci": 0.02, "warmup_time": 1.0}
    needs_data = False

    def skip_reason(self, cell: Cell, task: Task, framework: Framework) -> str | None:
        if framework.kind == "classic" and cell.params.get("mode") == "train":
            return f"{framework.name} fits in one call and has no train step: see its accuracy cells for fit time"
        if not framework.trains and cell.params.get("mode") == "train":
            return (f"{framework.name} is an inference runtime: it has no train step "
                    "(measure mode=infer; its accuracy cells run weights another framework trained)")
        return None

    def run(self, ctx: CellContext) -> None:
        bs = int(ctx.params.get("batch_size", 32))
        mode = ctx.params.get("mode", "infer")
        rng = np.random.default_rng(ctx.seed)
        spec = None if ctx.framework.kind == "classic" else ctx.spec()
        weights = spec.init_weights(ctx.seed) if spec is not None else None
        if spec is None:  # classic baselines: fit once on synthetic data too (speed reads no dataset)
            spec_for_shapes = ctx.spec()
            xs, y = ctx.task.synthetic_batch(spec_for_shapes, max(bs, 256), rng, ctx.params)
            model = ctx.build(None, None)
            model.fit_epoch(xs, y, len(y), np.arange(len(y)))
            xs = {k: v[:bs] for k, v in xs.items()}
            y = y[:bs]
        else:
            xs, y = ctx.task.synthetic_batch(spec, bs, rng, ctx.params)
            model = ctx.build(spec, weights)
        ctx.result.model = ctx.model_info(spec, weights)
        nx = model.to_device(xs)
        ny = model.to_device(y)
        step = (lambda: model.train_step(nx, ny)) if mode == "train" else (lambda: model.forward(nx))
        budget = Budget.from_dict({**self.budget, **ctx.cell.budget})
        model.reset_peak_memory()
        sampling = sample(step, model.synchronize, budget, fetch=model.to_numpy)
        record(ctx, sampling, bs, model)
        if spec is not None and ctx.native is None:  # a native model has no spec to count FLOPs of
            record_efficiency(ctx, spec.flops_per_example(), mode, model)
        if bs == 1:
            lat_budget = Budget.from_dict({**self.budget, **ctx.cell.budget, "window_iterations": 1,
                                           "warmup_time": 0.2, "min_samples": 100,
                                           "max_samples": int(ctx.cell.budget.get("latency_samples", 1000))})
            lat = sample(step, model.synchronize, lat_budget, fetch=model.to_numpy)
            latency = lat.measurement("latency", "ms", [s * 1e3 for s in lat.samples], False)
            ctx.result.measurements.append(latency)
            throughput = ctx.result.measurement("throughput")
            if throughput is not None:
                check_consistency(throughput, latency)


    # -- reports -----------------------------------------------------------------------------------
    group_by: ClassVar[dict[str, str]] = {"mode": "Mode", "batch_size": "Batch"}

    def headline(self, result: Result) -> Figure | None:
        """Throughput, or latency where only latency was measured."""
        return measurement_figure(result, "throughput") or measurement_figure(result, "latency")

    def columns(self, results: Sequence[Result]) -> list[Column]:
        """Fastest first within each mode and batch size: throughput with its 95% CI and the ratio
        to the best, latency percentiles, first call, peak memory."""
        return [
            Column("Threads", _threads),
            Column("Throughput (samples/s) [95% CI]", lambda r: measurement_figure(r, "throughput"),
                   rank=True, best=True, vs_best=True, keep=True),
            Column("Latency p50 / p90 / p99 (ms)", _latency),
            Column("GFLOP/s", _achieved),
            Column("Efficiency", _efficiency),
            Column("First call (s)", _first_call),
            Column("Peak host (MB)", lambda r: metric_figure(r, "peak_host_memory_mb")),
            Column("Peak device (MB)", lambda r: metric_figure(r, "peak_device_memory_mb")),
        ]


def _threads(r: Result) -> Figure | None:
    threads = r.environment.get("threads")
    return None if threads is None else Figure("threads", float(threads), display=str(threads))


def _latency(r: Result) -> Figure | None:
    m = r.measurement("latency")
    if m is None or m.stats is None:
        return None
    s = m.stats
    return Figure("latency", s.median, m.unit, higher_is_better=False, source=m,
                  values=(s.median, s.p90, s.p99))


def _achieved(r: Result) -> Figure | None:
    v = r.metrics.get("achieved_flops")
    return None if v is None or not math.isfinite(v) else Figure("achieved_flops", v / 1e9, "GFLOP/s", sig=3)


def _efficiency(r: Result) -> Figure | None:
    """MFU on a GPU, or the share of this machine's measured matmul FLOP/s on a CPU."""
    v = r.metrics.get("flops_efficiency")
    if v is None or not math.isfinite(v):
        return None
    basis = (r.details.get("efficiency") or {}).get("basis")
    text = f"{v:.1%} MFU" if basis == "mfu" else f"{v:.1%} of matmul"
    return Figure("flops_efficiency", v, "", display=text)


def _first_call(r: Result) -> Figure | None:
    m = r.measurement("first_call")
    value = m.stats.median if m is not None and m.stats is not None else r.metrics.get("compile_time_s")
    return None if value is None else Figure("first_call", float(value), "s", higher_is_better=False)

def check_consistency(throughput: Measurement, latency: Measurement, tolerance: float = 0.1) -> None:
    """At batch 1, the step time behind the throughput and the latency p50 time the same thing:
    when they differ by more than ``tolerance`` and beyond both CIs, flag both ``inconsistent``."""
    if throughput.stats is None or latency.stats is None:
        return
    bs = float(throughput.meta.get("batch_size", 1))
    step_ms = bs / throughput.stats.median * 1e3
    lat_ms = latency.stats.median
    if step_ms <= 0 or lat_ms <= 0:
        return
    gap = abs(math.log(lat_ms / step_ms))
    spread = (_finite(throughput.stats.rel_ci) + _finite(latency.stats.rel_ci)) * 1.5
    if gap > max(math.log1p(tolerance), spread):
        for m in (throughput, latency):
            m.flag("inconsistent")
            m.meta["consistency"] = {"step_ms_from_throughput": step_ms, "latency_p50_ms": lat_ms}


def record_efficiency(ctx: CellContext, forward_flops: float, mode: str, model: Model | None = None) -> None:
    """Achieved FLOP/s at the median throughput and its ratio to what the device can do: MFU
    against a GPU's datasheet peak for the cell's precision, or on a CPU the ratio to the fastest
    matmul measured now with the cell's threads: NumPy's float32 GEMM (with those threads and with
    one) and the framework's own at the cell's precision (``Model.matmul_flops``: oneDNN, XLA or
    MKL beat NumPy's BLAS, and a bf16 GEMM beats any float32 one). An achieved rate above every
    probe means the probes understate the machine: no efficiency is reported then, and
    ``details["efficiency_note"]`` says why (:mod:`dlbench.measure.flops`)."""
    r = ctx.result
    tput = r.measurement("throughput")
    if tput is None or tput.stats is None or not forward_flops:
        return
    per_example = step_flops(forward_flops, mode)
    achieved = tput.stats.median * per_example
    precision = str(ctx.params.get("precision", "fp32"))
    eff: Efficiency | None = None
    if ctx.cell.device.startswith("cuda"):
        names = [g.get("name", "") for g in gpus()]
        peak = gpu_peak(names[0], precision) if names else None
        if peak is not None:
            eff = Efficiency(per_example, achieved, peak[0], "mfu", f"{names[0]} {precision}: {peak[1]}")
        else:
            r.details["efficiency_note"] = (f"no dense {precision} peak on record for "
                                            f"{names[0] if names else 'this GPU'}: MFU not computed")
    elif ctx.cell.device == "cpu":
        requested = ctx.params.get("threads")
        threads = resolve_threads(int(requested) if requested else None)  # what the worker set up
        # k threads can always do what one does: under load a multi-threaded GEMM waits for its
        # slowest thread, so the one-thread rate bounds the roofline from below
        probes, by = roofline(ctx, threads, precision, model)
        best = max(probes, key=lambda k: probes[k])
        when = f"once per run, first by {by}" if by else "after the figure"
        source = (f"matmul measured on this machine {when} (1024 x 1024, fastest run): "
                  + ", ".join(f"{k} {v / 1e9:.3g} GFLOP/s" for k, v in probes.items()))
        if achieved > probes[best]:
            r.details["efficiency_note"] = (f"achieved {achieved / 1e9:.3g} GFLOP/s exceeds every "
                                            f"matmul probe ({source}): they understate this "
                                            "machine, so no efficiency is reported")
        else:
            eff = Efficiency(per_example, achieved, probes[best], "matmul", source)
    r.metrics["flops_per_example"] = float(per_example)
    r.metrics["achieved_flops"] = achieved
    if eff is not None:
        r.metrics.update(eff.as_metrics())
        r.details["efficiency"] = {"basis": eff.basis, "source": eff.source}


def roofline(ctx: CellContext, threads: int, precision: str, model: Model | None
             ) -> tuple[dict[str, float], str | None]:
    """The CPU matmul probes of a cell, by name: NumPy's float32 GEMM with the cell's threads
    and with one, and the framework's own at the cell's precision (``Model.matmul_flops``).

    Each is measured by the first cell of the run that needs it and reused by the later ones
    (:meth:`CellContext.once_per_run`): a probe is the fastest of its runs, a property of the
    machine, not of the cell, and measuring three of them took a second of every speed cell.
    Also returned: the key of the cell that measured them, where another cell did."""
    probes: dict[str, float] = {}
    by: set[str] = set()
    for t in dict.fromkeys((threads, 1)):
        name = f"NumPy float32 GEMM, {t} thread{'s' if t > 1 else ''}"
        got, cell = ctx.once_per_run({"probe": "numpy-gemm", "dtype": "float32", "threads": t, "n": 1024},
                                     functools.partial(_numpy_probe, t))
        probes[name] = float(got["flops"])
        by.update([cell] if cell else [])
    if model is not None:
        fw = ctx.framework
        got, cell = ctx.once_per_run(
            {"probe": "framework-gemm", "framework": fw.name, "version": fw.version(),
             "backend": {k: v for k, v in ctx.params.items() if k in fw.params},
             "precision": precision, "threads": threads, "device": ctx.cell.device, "n": 1024},
            lambda: {"flops": np.array(model.matmul_flops() or 0.0)})
        if float(got["flops"]) > 0:
            probes[f"{fw.name} {precision} GEMM, the cell's threads"] = float(got["flops"])
        by.update([cell] if cell else [])
    return probes, ", ".join(sorted(by)) or None


def _numpy_probe(threads: int) -> dict[str, np.ndarray]:
    return {"flops": np.array(matmul_peak(threads))}


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def record(ctx: CellContext, sampling: Sampling, batch_size: int, model: Model) -> None:
    """Turn a sampling into throughput and first-call measurements plus memory metrics."""
    r = ctx.result
    r.measurements.append(sampling.measurement(
        "throughput", "samples/s", [batch_size / s for s in sampling.samples], True, batch_size=batch_size))
    r.measurements.append(Measurement("first_call", "s", [sampling.first_call], higher_is_better=False))
    steady = float(np.median(sampling.samples)) if sampling.samples else 0.0
    r.metrics["first_call_s"] = sampling.first_call
    r.metrics["compile_time_s"] = max(sampling.first_call - steady, 0.0)
    r.metrics["peak_host_memory_mb"] = peak_host_memory_mb()
    dev = model.peak_memory_bytes()
    if dev is not None:
        r.metrics["peak_device_memory_mb"] = dev / 2**20
    r.details["sampling"] = {**sampling.describe(), "samples": len(sampling.samples),
                             "sync_check": sampling.sync_check}
