"""The sampler on a simulated machine: CI coverage under autocorrelation and repeated looks,
medians that resist preemption, contended windows retaken or flagged, per-iteration timing where
a sync is cheap, drift within a cell, and a ``synchronize()`` that does not wait."""

from __future__ import annotations

import numpy as np
import pytest

from dlbench.measure.contention import ContentionProbe, Window
from dlbench.measure.sampler import Budget, SyncError, drifting, sample
from dlbench.stats import autocorrelation_time, effective_sample_size, median_ci
from tests.sim_clock import SimMachine

QUICK = {"warmup_time": 0.0, "max_time": 5.0, "target_ci": 0.02}


def run(machine: SimMachine, **budget: float) -> object:
    return sample(machine.step, machine.sync, Budget(**{**QUICK, **budget}), fetch=machine.fetch,
                  probe=machine.probe(), timer=machine.clock)


@pytest.mark.parametrize(("rho", "sigma"), [(0.6, 0.1), (0.0, 0.1), (0.6, 0.02), (0.3, 0.05)])
def test_reported_ci_keeps_its_coverage(rho: float, sigma: float) -> None:
    """The stated coverage (docs/ci.md): >= 93% of 95% CIs hold the true median, for AR(1)
    windows at rho 0.6 and i.i.d. noise, with the stop rule looking as sampling goes."""
    trials, hits, stopped = 300, 0, 0
    for seed in range(trials):
        m = SimMachine(seed, mu=5e-3, rho=rho, sigma=sigma)
        s = run(m)
        lo, hi = median_ci(s.samples)
        hits += lo <= 5e-3 <= hi
        stopped += s.converged
    assert hits / trials >= 0.93, f"coverage {hits / trials:.3f}"
    assert stopped > 0  # the stop rule does fire


def test_the_old_rule_is_what_the_tests_would_catch() -> None:
    """A CI that ignores autocorrelation (tau forced to 1) undercovers at rho 0.6: the coverage
    test above can fail."""
    hits = 0
    for seed in range(200):
        m = SimMachine(seed, rho=0.6, sigma=0.1)
        s = run(m, max_time=1.0)
        lo, hi = median_ci(s.samples, tau=1.0)
        hits += lo <= 5e-3 <= hi
    assert hits / 200 < 0.9


def test_autocorrelation_time_matches_ar1_theory() -> None:
    rng = np.random.default_rng(3)
    taus = []
    for _ in range(100):
        x = np.empty(400)
        x[0] = rng.normal()
        for i in range(1, 400):
            x[i] = 0.6 * x[i - 1] + 0.8 * rng.normal()
        taus.append(autocorrelation_time(x))
    assert 3.0 < float(np.median(taus)) < 5.0  # theory: (1 + 0.6) / (1 - 0.6) = 4
    assert autocorrelation_time(rng.normal(size=400)) < 1.5
    assert effective_sample_size(list(range(100))) < 20  # a trend is worth few samples


def test_median_resists_preemption() -> None:
    """One step in five loses 5 ms to another process: the headline stays the true 5 ms step,
    where a window's average would be 20% slow."""
    m = SimMachine(1, mu=5e-3, preempt=lambda i: 5e-3 if i % 5 == 0 else 0.0)
    s = run(m, max_contention=float("inf"))
    assert s.timing == "per-iteration"
    assert abs(float(np.median(s.samples)) / 5e-3 - 1) < 0.01
    assert float(np.mean(s.samples)) / 5e-3 > 1.15


def test_short_steps_are_timed_in_groups_and_expensive_syncs_too() -> None:
    s = run(SimMachine(0, mu=2e-5))  # 20 us: too short to time alone
    assert s.timing == "window" and s.iterations_per_sample == 5
    s = run(SimMachine(0, mu=5e-3, sync_cost=1e-3))  # a sync costing 20% of a step
    assert s.timing == "window" and s.iterations_per_sample == 9  # capped by min_window: 50 ms
    s = run(SimMachine(0, mu=5e-3))
    assert s.iterations_per_sample == 1


def test_contended_windows_are_retaken() -> None:
    """A burst of load early in sampling: its windows are discarded and retaken, the figure is
    clean, and the count of retaken windows is reported."""
    m = SimMachine(2, mu=5e-3, preempt=lambda i: 4e-3 if 20 <= i < 200 else 0.0)
    s = run(m)
    assert s.windows_discarded > 0 and not s.contended
    assert "contended" not in s.flags
    assert abs(float(np.median(s.samples)) / 5e-3 - 1) < 0.005
    assert s.contention <= Budget().max_contention


def test_a_machine_busy_throughout_is_flagged_contended() -> None:
    m = SimMachine(2, mu=5e-3, preempt=lambda i: 4e-3 if i % 2 else 1e-3)
    s = run(m, max_time=1.0)
    assert s.contended and "contended" in s.flags and not s.converged
    assert s.contention > 0.3
    assert len(s.samples) >= Budget().min_samples


def test_unconverged_figures_say_so() -> None:
    s = run(SimMachine(0, rho=0.9, sigma=0.2), max_time=0.5)
    assert not s.converged and "not_converged" in s.flags


def test_a_step_change_within_the_cell_is_drifting() -> None:
    steady = [5e-3] * 60 + [5e-3 * (1 + 0.001 * (i % 3)) for i in range(60)]
    assert not drifting(steady)
    rng = np.random.default_rng(0)
    jump = list(5e-3 * (1 + 0.01 * rng.normal(size=60))) + list(6e-3 * (1 + 0.01 * rng.normal(size=60)))
    assert drifting(jump)


def test_a_synchronize_that_does_not_wait_fails_the_cell() -> None:
    m = SimMachine(0, mu=5e-3, waiting_sync=False)
    with pytest.raises(SyncError, match=r"synchronize\(\)"):
        run(m, max_time=0.5)
    honest = run(SimMachine(0, mu=5e-3), max_time=0.5)
    assert honest.sync_check["fetch_s"] < honest.sync_check["window_s"]


def test_a_read_back_slowed_once_by_preemption_is_retried_not_failed() -> None:
    """On a busy machine the first read-back after synchronize() can be preempted for longer than
    the window it closes; queued work would be slow on every try, a preemption only once."""
    m = SimMachine(0, mu=5e-3)
    real_fetch, slowed = m.fetch, []

    def preempted_once(out: object) -> object:
        if not slowed:
            slowed.append(1)
            m.t += 1.0  # the scheduler stole a second from the first read-back
        return real_fetch(out)

    s = sample(m.step, m.sync, Budget(**{**QUICK, "max_time": 0.5}), fetch=preempted_once,
               probe=m.probe(), timer=m.clock)
    assert s.sync_check["tries"] == 2 and s.sync_check["fetch_s"] < s.sync_check["window_s"]
    with pytest.raises(SyncError, match=r"in every one of 3 tries"):
        run(SimMachine(0, mu=5e-3, waiting_sync=False), max_time=0.5)


def test_contention_probe_reads_this_process() -> None:
    probe = ContentionProbe()
    a = probe.snapshot()
    sum(i * i for i in range(200_000))
    b = probe.snapshot()
    w = probe.window(a, b)
    assert w.wall > 0 and w.cpu > 0
    if probe.source == "none":
        assert w.wait is None and w.fraction == 0.0
    else:
        assert w.wait is not None and w.wait >= 0
    assert Window(1.0, 1.0, 0.25).fraction == 0.25  # PSI: wait over wall
    assert Window(1.0, 1.0, 1.0, 1.0, cores=2).fraction == 0.5  # two threads sharing one core
    # four threads on two cores with the machine to itself: they wait for each other, not others
    assert Window(1.0, 2.0, 2.0, 2.0, cores=2).fraction == 0.0
    with pytest.raises(ValueError, match="unknown contention source"):
        ContentionProbe("bogus")
