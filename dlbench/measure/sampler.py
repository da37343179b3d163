"""Adaptive sampling of a step function: first call apart, warm-up, then timed samples in windows.

A **sample** is one timed region closed by a device synchronisation: a single iteration where a
synchronisation per iteration is cheap (it costs under 1% of a step, as on CPU devices) and the
step is long enough to time alone (``min_sample_time``), else the fewest back-to-back iterations
that are. The headline is the median of per-iteration times, so a sample the scheduler
preempted is an outlier the median ignores instead of an average every descheduling enters.

A **window** is a group of samples lasting about ``contention_window`` seconds. Around every
window, outside the timed regions, a :class:`~dlbench.measure.contention.ContentionProbe` reads
how long the process's threads waited for a CPU. A window whose wait exceeds ``max_contention``
of its wall time is discarded and retaken while the time budget lasts; when too few clean windows
remain at the end, the contended ones are used and the figure is flagged ``contended``.

Stopping: at looks spaced geometrically (each after ``look_growth`` times more samples, so the
number of looks grows with log n, not n), sampling stops when the half-width of the median's CI,
computed at the *stricter* ``stop_confidence`` and at the autocorrelation-corrected effective
sample size (:mod:`dlbench.stats`), is within ``target_ci``. The stricter look keeps the
reported 95% interval's coverage despite the repeated looks (``tests/test_sampler_coverage.py``
measures it on a simulated clock).

After the last window, the last output is read back (``fetch``, a blocking copy to the host);
if that takes longer than the whole window it closes, ``synchronize()`` may not have waited for
the work it was timing: one more window is run and read back, up to :data:`SYNC_CHECK_TRIES`
times (a read-back that preemption slowed once on a busy machine passes on a retry; queued work
is slow every time), and if every try is slower than its window the cell fails with
:class:`SyncError` rather than report a figure that is too fast.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from annotated_types import Ge, Interval

from dlbench.errors import DlbenchError
from dlbench.measure.contention import ContentionProbe, Window
from dlbench.result import Measurement
from dlbench.stats import median_ci, relative_ci_halfwidth

clock = time.perf_counter


class SyncError(DlbenchError):
    """``synchronize()`` returned before the device finished the work being timed."""


MAX_SECONDS = 7 * 24 * 3600.0
"""Longest time a budget field may ask for (a week); every time and fraction is also finite."""
Seconds = Annotated[float, Interval(gt=0, le=MAX_SECONDS)]
SecondsOrZero = Annotated[float, Interval(ge=0, le=MAX_SECONDS)]
Fraction = Annotated[float, Interval(gt=0, le=1)]
Count = Annotated[int, Ge(1)]
CountOrZero = Annotated[int, Ge(0)]


@dataclass(frozen=True)
class Budget:
    """How long and how precisely to sample; suites set these per scenario block.

    The annotations carry each field's range (``annotated_types``): a suite's ``budget:`` is
    validated against them at load (see :func:`dlbench.run.suite.check_budget`)."""

    max_time: Seconds = 10.0
    """Seconds of sampling (after warm-up) before giving up on the CI target."""
    target_ci: Fraction = 0.02
    """Stop when the CI half-width of the median is within this fraction of it."""
    min_samples: Count = 30
    """Samples before the first look at the stop rule (fewer leave the CI's coverage short)."""
    max_samples: Count = 5000
    min_windows: CountOrZero = 5
    """Contention-checked windows before the stop rule may stop sampling."""
    min_time: SecondsOrZero = 0.1
    """Seconds of sampling before the stop rule may stop (slow fluctuations need time to show)."""
    warmup_time: SecondsOrZero = 1.0
    warmup_iterations: CountOrZero = 3
    min_window: Seconds = 0.05
    """Longest a sample may be: the cap on iterations per sample for steps too short to time alone."""
    window_iterations: Count | None = None
    """Force this many iterations per sample (1 for latency distributions)."""
    min_sample_time: Seconds = 1e-4
    """A step shorter than this is timed in groups of iterations lasting at least this long."""
    contention_window: Seconds = 0.005
    """Seconds of samples between two contention readings."""
    max_contention: Fraction = 0.05
    """A window whose threads waited for a CPU longer than this fraction of it is retaken."""
    stop_confidence: Annotated[float, Interval(gt=0, lt=1)] = 0.99
    """Confidence of the CI the stop rule looks at (the reported CI is 95%)."""
    look_growth: Annotated[float, Interval(gt=1, le=100)] = 1.25
    """Each look at the stop rule comes after this many times more samples than the last."""
    latency_samples: Count = 1000
    """Speed at batch 1: samples of the latency distribution (one iteration each)."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Budget:
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**fields)


@dataclass
class Sampling:
    """What the sampler measured: per-iteration seconds, one value per timed sample, in order."""

    first_call: float
    samples: list[float]
    iterations_per_sample: int
    warmup_iterations: int
    converged: bool
    sampling_time: float
    timing: str = "per-iteration"
    """``per-iteration`` (one iteration per sample) or ``window`` (several per sample)."""
    windows: int = 0
    """Windows whose samples the figure uses."""
    windows_discarded: int = 0
    """Contended windows thrown away and retaken."""
    contended: bool = False
    """The figure had to use contended windows."""
    contention: float = 0.0
    """Run-queue wait over wall time of the windows used."""
    contention_source: str = "none"
    cpu_fraction: float = float("nan")
    """Process CPU time over wall time of the windows used (threads summed)."""
    sync_check: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def flags(self) -> list[str]:
        out = []
        if self.contended:
            out.append("contended")
        if not self.converged:
            out.append("not_converged")
        if drifting(self.samples):
            out.append("drifting")
        return out

    def describe(self) -> dict[str, Any]:
        """What a Measurement's ``meta`` records about how it was sampled."""
        return {"converged": self.converged, "timing": self.timing,
                "iterations_per_sample": self.iterations_per_sample,
                "warmup_iterations": self.warmup_iterations, "windows": self.windows,
                "windows_discarded": self.windows_discarded, "contention": self.contention,
                "contention_source": self.contention_source, "cpu_fraction": self.cpu_fraction,
                "sampling_time_s": self.sampling_time, "flags": self.flags}

    def measurement(self, name: str, unit: str, values: list[float], higher_is_better: bool,
                    **meta: Any) -> Measurement:
        """A Measurement of ``values`` (derived from :attr:`samples`) carrying this sampling's
        record and warnings."""
        return Measurement(name, unit, values, higher_is_better=higher_is_better,
                           meta={**self.describe(), **meta})


def drifting(samples: list[float], threshold: float = 0.05) -> bool:
    """A step change among a cell's own samples: the medians of the first and last thirds differ
    by more than ``threshold`` and their (autocorrelation-aware) 95% CIs do not overlap."""
    n = len(samples)
    if n < 30:
        return False
    third = n // 3
    first, last = samples[:third], samples[-third:]
    a, b = float(np.median(first)), float(np.median(last))
    if a <= 0 or b <= 0 or abs(math.log(b / a)) <= math.log1p(threshold):
        return False
    (lo_a, hi_a), (lo_b, hi_b) = median_ci(first), median_ci(last)
    return bool(hi_a < lo_b or hi_b < lo_a)


def sample(step: Callable[[], Any], sync: Callable[[], None], budget: Budget,
           on_sample: Callable[[int], None] | None = None,
           agree: Callable[[int], int] | None = None, *,
           fetch: Callable[[Any], Any] | None = None,
           probe: ContentionProbe | None = None,
           timer: Callable[[], float] | None = None) -> Sampling:
    """Time ``step`` (which may be asynchronous) with ``sync`` closing every timed region.

    ``fetch`` reads a step's output back to the host (the sync check, see the module docstring).
    ``probe`` and ``timer`` default to the real contention probe and ``time.perf_counter``; tests
    pass a simulated clock. ``agree`` serves processes that must step in lockstep (data-parallel
    ranks): every decision (keep warming up, iterations per sample, samples per window, stop)
    goes through it, so that each rank takes rank 0's; warm-up then synchronises every iteration.
    """
    now = timer or clock
    probe = probe or ContentionProbe(clock=now)
    decide: Callable[[int], int] = agree or (lambda value: value)
    # 1. first call: compilation, tracing, lazy initialisation; reported apart
    t0 = now()
    out = step()
    sync()
    first = now() - t0

    # 2. warm-up until both the time and the iteration minimum are met
    warm = 0
    t0 = now()
    while decide(int(warm < budget.warmup_iterations or now() - t0 < budget.warmup_time)):
        out = step()
        warm += 1
        if agree is not None or warm % 8 == 0:
            sync()
    sync()

    # 3. calibrate: one step, and what a synchronisation with nothing queued costs
    one, sync_cost = _calibrate(step, sync, now)
    if budget.window_iterations:
        per = budget.window_iterations
    else:
        per = max(1, _ceil(budget.min_sample_time / one), _ceil(100 * sync_cost / one))
        per = min(per, max(1, math.ceil(budget.min_window / one)))
    per = decide(per)
    per_window = decide(max(1, min(math.ceil(budget.contention_window / (per * one)),
                                   budget.max_samples // 10)))

    # 4. sample windows adaptively (verdict 0: go on, 1: converged, 2: out of time or samples)
    kept: list[float] = []
    contended: list[tuple[int, list[float]]] = []  # (window number, samples), kept for the end
    used = Tally()
    bad = Tally()
    windows = discarded = 0
    last_window = 0.0
    next_look = budget.min_samples
    converged = False
    start = now()
    while True:
        s0 = probe.snapshot()
        chunk = []
        for _ in range(per_window):
            t0 = now()
            for _ in range(per):
                out = step()
            sync()
            chunk.append((now() - t0) / per)
        s1 = probe.snapshot()
        win = probe.window(s0, s1)
        last_window = win.wall
        if win.fraction > budget.max_contention:
            discarded += 1
            contended.append((windows + discarded, chunk))
            bad.add(win)
        else:
            windows += 1
            kept.extend(chunk)
            used.add(win)
        if on_sample:
            on_sample(len(kept))
        verdict = 0
        if len(kept) >= next_look and windows >= budget.min_windows and now() - start >= budget.min_time:
            next_look = max(next_look + 1, math.ceil(len(kept) * budget.look_growth))
            if relative_ci_halfwidth(kept, budget.stop_confidence) <= budget.target_ci:
                verdict = 1
        if not verdict and (len(kept) + sum(len(c) for _, c in contended) >= budget.max_samples
                            or now() - start >= budget.max_time):
            verdict = 2
        verdict = decide(verdict)
        if verdict:
            converged = verdict == 1
            break
    sampling_time = now() - start

    used_contended = len(kept) < budget.min_samples and bool(contended)
    if used_contended:  # the machine stayed busy: use every window, in order, and say so
        kept = [x for _, c in sorted(contended, key=lambda t: t[0]) for x in c] + kept
        used.merge(bad)
        windows, discarded = windows + discarded, 0
        converged = False
    def one_more_window() -> tuple[Any, float]:
        t0 = now()
        for _ in range(per):
            res = step()
        sync()
        return res, now() - t0

    sync_check = _sync_check(fetch, out, now, last_window, one_more_window)
    return Sampling(first, kept, per, warm, converged, sampling_time,
                    "per-iteration" if per == 1 else "window", windows, discarded, used_contended,
                    used.fraction, probe.source, used.cpu / used.wall if used.wall > 0 else float("nan"),
                    sync_check)


@dataclass
class Tally:
    """Sums of the windows' contention readings."""

    wall: float = 0.0
    cpu: float = 0.0
    wait: float = 0.0
    run: float = 0.0
    has_run: bool = True
    cores: int = 1

    def add(self, w: Window) -> None:
        self.cores = w.cores
        self.wall += w.wall
        self.cpu += w.cpu
        self.wait += w.wait or 0.0
        self.run += w.run or 0.0
        self.has_run = self.has_run and w.run is not None

    def merge(self, other: Tally) -> None:
        self.wall, self.cpu = self.wall + other.wall, self.cpu + other.cpu
        self.wait, self.run = self.wait + other.wait, self.run + other.run
        self.has_run = self.has_run and other.has_run
        self.cores = max(self.cores, other.cores)

    @property
    def fraction(self) -> float:
        return Window(self.wall, self.cpu, self.wait, self.run if self.has_run else None,
                      self.cores).fraction


def _ceil(x: float) -> int:
    """Ceiling that forgives float rounding (1e-4 / 2e-5 is 5, not 5.000000000000001)."""
    return math.ceil(x * (1 - 1e-9))


def _calibrate(step: Callable[[], Any], sync: Callable[[], None],
               now: Callable[[], float]) -> tuple[float, float]:
    """(seconds of one synchronised step, seconds of a synchronisation with nothing queued):
    the median of three of each."""
    steps, syncs = [], []
    for _ in range(3):
        t0 = now()
        step()
        sync()
        steps.append(now() - t0)
        t0 = now()
        sync()
        syncs.append(now() - t0)
    return max(float(np.median(steps)), 1e-9), float(np.median(syncs))


SYNC_CHECK_TRIES = 3
"""Windows the synchronisation check may take: a read-back slowed once by preemption on a busy
machine is retried; queued work makes every try's read-back slower than its window."""


def _sync_check(fetch: Callable[[Any], Any] | None, out: Any, now: Callable[[], float],
                window: float, retake: Callable[[], tuple[Any, float]] | None = None) -> dict[str, float]:
    if fetch is None or out is None:
        return {}
    for tries in range(1, SYNC_CHECK_TRIES + 1):
        t0 = now()
        fetch(out)
        took = now() - t0
        if not took > window > 0:
            return {"fetch_s": took, "window_s": window, "tries": tries}
        if retake is None or tries == SYNC_CHECK_TRIES:
            break
        out, window = retake()  # one more window closed by synchronize(), read back again
    raise SyncError(
        f"synchronize() did not wait: reading the last output back took {took * 1e3:.3g} ms "
        f"after a {window * 1e3:.3g} ms window that ended with synchronize(), in every one of "
        f"{SYNC_CHECK_TRIES} tries, so the timed work "
        "was still queued and every figure would be too fast; fix the framework plugin's "
        "Model.synchronize() to block until the device has finished all queued work")
