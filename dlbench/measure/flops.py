"""FLOP-based efficiency of a speed figure: achieved FLOP/s, and how far that is from what the
device can do.

Conventions (docs/measurement.md): a model's FLOPs per example are its spec's dense multiply-adds
x 2 of one forward pass (:meth:`dlbench.spec.ModelSpec.flops_per_example`; elementwise ops,
normalisation and softmax are not counted). A training step counts 3 x the forward FLOPs
(forward, and a backward pass of twice the forward's cost: gradients with respect to inputs and
to weights), the usual convention (Kaplan et al. 2020's 6N per token for transformers; PaLM's and
MLPerf's MFU).

Efficiency:

* on a GPU, **MFU**: achieved FLOP/s over the device's dense peak for the precision in use, from
  :data:`GPU_PEAKS` (the vendor's datasheet figures, without sparsity);
* on a CPU, the ratio to **this machine's own measured matmul FLOP/s** with the cell's threads
  (:func:`matmul_peak`: a float32 GEMM through NumPy's BLAS, the best of several timed runs, and
  the framework's own GEMM, each measured once per run by the first speed cell that needs it, in
  its process after its figure): a measured roofline for dense compute, not a datasheet number.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

TRAIN_FACTOR = 3
"""A training step's FLOPs over the forward pass's (forward + backward = 1 + 2)."""


@dataclass(frozen=True)
class GpuPeak:
    """Dense peak TFLOP/s of one GPU model by precision (``fp32`` plain FP32 CUDA cores; ``tf32``,
    ``bf16``, ``fp16`` tensor cores, dense, no sparsity), with where the figures come from."""

    pattern: tuple[str, ...]
    """Words that must all appear in the device name nvidia-smi reports (case-insensitive)."""
    tflops: dict[str, float]
    source: str


GPU_PEAKS: tuple[GpuPeak, ...] = (
    # most specific first: a name matches the first entry whose words it all holds
    GpuPeak(("h200",), {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
            "NVIDIA H200 Tensor Core GPU datasheet (SXM), 2024"),
    GpuPeak(("h100", "pcie"), {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0},
            "NVIDIA H100 Tensor Core GPU datasheet (PCIe), 2023"),
    GpuPeak(("h100", "nvl"), {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
            "NVIDIA H100 Tensor Core GPU datasheet (NVL, per GPU), 2023"),
    GpuPeak(("h100",), {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
            "NVIDIA H100 Tensor Core GPU datasheet (SXM5), 2023"),
    GpuPeak(("a100",), {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
            "NVIDIA A100 Tensor Core GPU datasheet, 2021"),
    GpuPeak(("l40s",), {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05},
            "NVIDIA L40S datasheet, 2023"),
    GpuPeak(("l4",), {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0},
            "NVIDIA L4 Tensor Core GPU datasheet, 2023"),
    GpuPeak(("a10",), {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0},
            "NVIDIA A10 Tensor Core GPU datasheet, 2021"),
    GpuPeak(("v100",), {"fp32": 15.7, "fp16": 125.0},
            "NVIDIA V100 Tensor Core GPU datasheet (SXM2), 2020"),
    GpuPeak(("t4",), {"fp32": 8.1, "fp16": 65.0}, "NVIDIA T4 Tensor Core GPU datasheet, 2019"),
)


def gpu_peak(name: str, precision: str) -> tuple[float, str] | None:
    """The dense peak FLOP/s of the GPU called ``name`` at ``precision`` (``fp32``, ``bf16``...)
    and its source; None for a device or precision the table does not hold."""
    lowered = name.lower()
    for peak in GPU_PEAKS:
        if all(word in lowered for word in peak.pattern):
            tflops = peak.tflops.get(precision)
            return None if tflops is None else (tflops * 1e12, peak.source)
    return None


def step_flops(forward_flops: float, mode: str) -> float:
    """FLOPs of one example's step: the forward pass, or :data:`TRAIN_FACTOR` x it to train."""
    return forward_flops * (TRAIN_FACTOR if mode == "train" else 1)


def gemm_rate(step: Callable[[], Any], n: int, max_time: float = 0.3) -> float:
    """FLOP/s of the fastest of repeated ``n x n`` matmuls ``step()``, each waited for by reading
    one element of its result back (``float(y[0, 0])``: NumPy, torch, TensorFlow and JAX arrays
    all block until the product is done), for as many runs as fit in ``max_time`` (at least 3). A
    peak is what the machine reaches when nothing interrupts it, and no run can be faster than
    the hardware: on a loaded machine the fastest run is the one other processes left alone (the
    median would measure the load)."""
    float(step()[0, 0])  # warm: the first call allocates, starts thread pools, compiles
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < max_time and len(times) < 200):
        t0 = time.perf_counter()
        float(step()[0, 0])
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / min(times)


def matmul_peak(threads: int, n: int = 1024, max_time: float = 0.3, dtype: type = np.float32) -> float:
    """This machine's dense float32 matmul FLOP/s through NumPy's BLAS with ``threads`` threads
    (:func:`gemm_rate`). A framework's own GEMM (oneDNN, XLA, MKL) may be faster, and a bf16 one
    much faster: the speed scenario also asks the model (:meth:`dlbench.framework.Model.
    matmul_flops`) and takes the fastest as the roofline."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a: np.ndarray = rng.standard_normal((n, n)).astype(dtype)
    b: np.ndarray = rng.standard_normal((n, n)).astype(dtype)
    with threadpool_limits(limits=max(int(threads), 1), user_api="blas"):
        return gemm_rate(lambda: a @ b, n, max_time)


@dataclass(frozen=True)
class Efficiency:
    """A speed figure's FLOP rate against what the device can do."""

    flops_per_example: float
    achieved: float
    """FLOP/s at the figure's median throughput."""
    peak: float
    """FLOP/s the device can reach: a GPU's datasheet peak, or this machine's measured matmul."""
    basis: str
    """``mfu`` (GPU datasheet peak) or ``matmul`` (measured on this machine)."""
    source: str

    @property
    def ratio(self) -> float:
        return self.achieved / self.peak if self.peak > 0 else math.nan

    def as_metrics(self) -> dict[str, float]:
        return {"flops_per_example": self.flops_per_example, "achieved_flops": self.achieved,
                "peak_flops": self.peak, "flops_efficiency": self.ratio}
