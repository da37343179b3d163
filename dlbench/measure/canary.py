"""The canary: a fixed NumPy workload measured in every run to estimate machine drift.

Its throughput changes only when the machine does (CPU model, clock, thermal state, noisy
neighbours, BLAS build), never with dlbench or framework code, so ``dlbench compare`` divides it
out of CPU speed cells (see :mod:`dlbench.compare`). The runner measures it as a cell of scenario
``canary`` (task ``matmul``, framework ``numpy``) in every run.
"""

from __future__ import annotations

import time

import numpy as np

from dlbench.result import Measurement


def canary_workload(n: int = 192, windows: int = 15, min_window_s: float = 0.02,
                    warmup: int = 2, seed: int = 0) -> Measurement:
    """Dense float64 ``n x n`` matmuls from a seeded matrix: ``windows`` samples of GFLOP/s, each
    window repeating the product until at least ``min_window_s`` has passed."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # one core: BLAS thread contention would swamp the signal
        return _measure(n, windows, min_window_s, warmup, seed)


def _measure(n: int, windows: int, min_window_s: float, warmup: int, seed: int) -> Measurement:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n)) / n
    for _ in range(warmup):
        a @ b
    # calibrate the iterations per window once, so that every window does the same work
    iters, elapsed = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(iters):
            a @ b
        elapsed = time.perf_counter() - t0
        if elapsed >= min_window_s or iters >= 1 << 20:
            break
        iters *= 2
    flop = 2.0 * n**3 * iters
    samples = []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(iters):
            c = a @ b
        samples.append(flop / (time.perf_counter() - t0) / 1e9)
    return Measurement("gflops", "GFLOP/s", samples, higher_is_better=True,
                       meta={"n": n, "iterations": iters, "dtype": "float64", "seed": seed,
                             "checksum": float(np.abs(c).sum())})
