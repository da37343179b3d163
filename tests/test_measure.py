from __future__ import annotations

import numpy as np

from dlbench.measure.sampler import Budget, sample
from dlbench.stats import median_ci, proportion_ci, summarize


def test_median_ci_covers_true_median_about_95_percent():
    rng = np.random.default_rng(1)
    hits = 0
    trials = 400
    for _ in range(trials):
        x = rng.lognormal(0.0, 0.5, size=40)  # true median is exp(0) = 1
        lo, hi = median_ci(x)
        hits += lo <= 1.0 <= hi
    assert 0.92 <= hits / trials <= 0.995


def test_summary_statistics():
    s = summarize([1, 2, 3, 4, 100])
    assert s.median == 3 and s.min == 1 and s.max == 100 and s.n == 5
    assert np.isnan(s.ci_low)  # too few samples for a distribution-free CI
    lo, hi = proportion_ci(90, 100)
    assert lo < 0.9 < hi


class FakeDevice:
    """An asynchronous 'device': steps queue work that sync() completes, counted not timed."""

    def __init__(self):
        self.queued = 0
        self.done = 0
        self.calls = 0

    def step(self):
        self.calls += 1
        self.queued += 1

    def sync(self):
        self.done += self.queued
        self.queued = 0


def test_sampler_syncs_every_window_and_separates_first_call():
    dev = FakeDevice()
    b = Budget(max_time=0.2, min_samples=5, max_samples=20, warmup_time=0.0, warmup_iterations=3,
               window_iterations=4, target_ci=0.0, max_contention=float("inf"))
    s = sample(dev.step, dev.sync, b)
    assert dev.queued == 0  # every timed region ended with a synchronisation
    assert s.iterations_per_sample == 4 and s.timing == "window"
    assert 5 <= len(s.samples) <= 20 + 4
    calibration = 3
    assert dev.calls == 1 + s.warmup_iterations + calibration + 4 * len(s.samples)
    assert s.first_call >= 0 and not s.converged


def test_sampler_stops_when_ci_target_is_met():
    dev = FakeDevice()
    b = Budget(max_time=30, min_samples=10, max_samples=10_000, warmup_time=0.0, window_iterations=50,
               target_ci=0.5, min_time=0.0, min_windows=1)
    s = sample(dev.step, dev.sync, b)
    assert s.converged and len(s.samples) < 10_000


def test_sampler_follows_agreed_decisions_in_lockstep():
    """Data-parallel ranks take rank 0's decisions through ``agree``: here warm-up is agreed to
    last 5 iterations and sampling to stop after 3 windows, though this process alone would
    keep going (its budget asks for 100 windows and never runs out of time)."""
    script = {"warm": [1, 1, 1, 1, 1, 0], "shape": [4, 1], "verdicts": [0, 0, 2]}
    calls = {"step": 0, "sync": 0}

    def agree(value: int) -> int:
        phase = next(p for p in ("warm", "shape", "verdicts") if script[p])
        return script[phase].pop(0)

    def step():
        calls["step"] += 1

    def sync():
        calls["sync"] += 1

    budget = Budget(max_time=1e9, min_samples=100, max_samples=500, warmup_time=0.0,
                    warmup_iterations=1, window_iterations=4)
    s = sample(step, sync, budget, agree=agree)
    assert s.warmup_iterations == 5
    assert len(s.samples) == 3 and not s.converged  # agreed: 4 iterations per sample, 1 per window
    assert calls["step"] == 1 + 5 + 3 + 3 * 4  # first, warm-up, calibration, 3 windows of 4
    assert calls["sync"] >= 1 + 5 + 3  # lockstep warm-up synchronises every iteration
