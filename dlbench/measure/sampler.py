"""Adaptive sampling of a step function: first call apart, warm-up, then timed windows.

Each sample is a *window*: enough back-to-back iterations to dwarf timer resolution and
per-window overhead, closed by a device synchronisation, so asynchronous frameworks are timed
for the work they really did. Sampling stops when the 95% CI of the median is within
``target_ci`` of the median (after ``min_samples``), or when ``max_time`` is spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dlbench.measure.stats import relative_ci_halfwidth

clock = time.perf_counter


@dataclass(frozen=True)
class Budget:
    """How long and how precisely to sample; suites set these per scenario block."""

    max_time: float = 10.0
    """Seconds of sampling (after warm-up) before giving up on the CI target."""
    target_ci: float = 0.02
    """Stop when the 95% CI half-width of the median is within this fraction of it."""
    min_samples: int = 10
    max_samples: int = 500
    warmup_time: float = 1.0
    warmup_iterations: int = 3
    min_window: float = 0.05
    """Seconds each window should last at least (ignored when ``window_iterations`` is set)."""
    window_iterations: int | None = None
    """Force this many iterations per window (1 for latency distributions)."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Budget:
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**fields)


@dataclass
class Sampling:
    """What the sampler measured: per-iteration seconds, one value per window."""

    first_call: float
    samples: list[float]
    iterations_per_window: int
    warmup_iterations: int
    converged: bool
    sampling_time: float
    meta: dict[str, Any] = field(default_factory=dict)


def sample(step: Callable[[], Any], sync: Callable[[], None], budget: Budget,
           on_sample: Callable[[int], None] | None = None,
           agree: Callable[[int], int] | None = None) -> Sampling:
    """Time ``step`` (which may be asynchronous) with ``sync`` closing every timed region.

    ``agree`` serves processes that must step in lockstep (data-parallel ranks): every decision
    (keep warming up, the window length, stop sampling) goes through it, so that each rank takes
    rank 0's; warm-up then synchronises every iteration. Alone, a process decides for itself.
    """
    decide: Callable[[int], int] = agree or (lambda value: value)
    # 1. first call: compilation, tracing, lazy initialisation; reported apart
    t0 = clock()
    step()
    sync()
    first = clock() - t0

    # 2. warm-up until both the time and the iteration minimum are met
    warm = 0
    t0 = clock()
    while decide(int(warm < budget.warmup_iterations or clock() - t0 < budget.warmup_time)):
        step()
        warm += 1
        if agree is not None or warm % 8 == 0:
            sync()
    sync()

    # 3. calibrate the window length
    if budget.window_iterations:
        per_window = budget.window_iterations
    else:
        t0 = clock()
        step()
        sync()
        one = max(clock() - t0, 1e-9)
        per_window = decide(max(1, math.ceil(budget.min_window / one)))

    # 4. sample windows adaptively (0: go on, 1: converged, 2: out of time)
    samples: list[float] = []
    converged = False
    start = clock()
    while len(samples) < budget.max_samples:
        t0 = clock()
        for _ in range(per_window):
            step()
        sync()
        samples.append((clock() - t0) / per_window)
        if on_sample:
            on_sample(len(samples))
        if len(samples) >= budget.min_samples and relative_ci_halfwidth(samples) <= budget.target_ci:
            verdict = 1
        elif clock() - start >= budget.max_time and len(samples) >= min(budget.min_samples, 3):
            verdict = 2
        else:
            verdict = 0
        verdict = decide(verdict)
        if verdict:
            converged = verdict == 1
            break
    return Sampling(first, samples, per_window, warm, converged, clock() - start)
