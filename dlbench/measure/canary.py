"""The canary: a fixed NumPy workload measured in every run to estimate machine drift.

Its throughput changes only when the machine does (CPU model, clock, thermal state, noisy
neighbours, BLAS build), never with dlbench or framework code, so ``dlbench compare`` divides it
out of CPU speed cells (see :mod:`dlbench.analysis.compare`). The runner measures it as a cell of scenario
``canary`` (task ``matmul``, framework ``numpy``) in every run.
"""

from __future__ import annotations

import numpy as np

from dlbench.measure.contention import machine_load
from dlbench.measure.sampler import Budget, sample
from dlbench.result import Measurement

CANARY_SCENARIO = "canary"
"""The scenario name of the canary's cell in every run (task ``matmul``, framework ``numpy``)."""


def canary_workload(n: int = 192, max_time: float = 1.5, seed: int = 0,
                    budget: Budget | None = None) -> Measurement:
    """Dense float64 ``n x n`` matmuls from a seeded matrix, on one thread, sampled as every speed
    figure is (:func:`dlbench.measure.sampler.sample`: per-iteration times, contention per window,
    contended windows retaken): GFLOP/s per sample, with the sampler's warnings. ``compare`` uses
    its drift only where the canary itself is not flagged."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n)) / n
    budget = budget or Budget(max_time=max_time, target_ci=0.02, warmup_time=0.1)
    with threadpool_limits(limits=1):  # one core: BLAS thread contention would swamp the signal
        sampling = sample(lambda: a @ b, lambda: None, budget)
    flop = 2.0 * n**3
    return sampling.measurement("gflops", "GFLOP/s", [flop / s / 1e9 for s in sampling.samples], True,
                                n=n, dtype="float64", seed=seed, checksum=float(np.abs(a @ b).sum()),
                                load=machine_load())
