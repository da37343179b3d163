"""Contention probes: how long this process's threads waited for a CPU while it was being timed.

A timed window is *contended* when other work kept the process's threads runnable but off a CPU:
the figure then measures the neighbours, not the framework. The probe reads, outside the timed
region, at the start and end of every window:

* ``schedstat`` (Linux): the run-queue delay of every thread of the process, field 2 of
  ``/proc/self/task/<tid>/schedstat`` (nanoseconds spent runnable but waiting), summed over
  threads. This is the direct measure, per process, and the one used wherever it is readable.
* ``psi`` (Linux without per-task schedstat): ``/proc/pressure/cpu``'s ``some`` total, the time at
  least one task of the *machine* waited for a CPU. It over-reports (another process's waiting
  counts too), so a window it calls contended may not be; it never under-reports.
* ``none`` (other systems): contention is not measured; figures say ``contention_source: none``
  and are never marked contended, which the reports state rather than imply a quiet machine.

Each window also records the process's CPU time (``time.process_time``) beside its wall time.
The contention *fraction* of a window is the share of the threads' runnable time they spent
waiting *because of other processes*: ``stolen / (wait + run)`` summed over threads (schedstat
gives both), where ``stolen = min(wait, cores x wall - run)``: waiting beyond what the process's
own threads caused by outnumbering the cores it may use (``cores x wall - run`` is the CPU time
the process left unused; threads that waited while the process used every core waited for each
other, which is the framework's own doing and part of its figure). So 0.5 means that whenever the
process's threads wanted a CPU they got one only half the time (two threads sharing the one core a
neighbour left free). With PSI it is the machine's ``some`` time over wall time.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SOURCES = ("schedstat", "psi", "none")
_PSI = "/proc/pressure/cpu"
_TASKS = "/proc/self/task"
_SOME = re.compile(r"^some .*total=(\d+)", re.M)


@dataclass(frozen=True)
class Snapshot:
    """Counters at one instant: wall clock, process CPU time, cumulative wait (seconds)."""

    wall: float
    cpu: float
    waits: dict[int, float] = field(default_factory=dict)
    """Cumulative run-queue wait per thread id (schedstat) or under key 0 (psi)."""
    runs: dict[int, float] = field(default_factory=dict)
    """Cumulative time on a CPU per thread id (schedstat only)."""


@dataclass(frozen=True)
class Window:
    """Contention of one timed window."""

    wall: float
    cpu: float
    wait: float | None
    """Seconds the process's threads were runnable but waiting (None: not measured)."""
    run: float | None = None
    """Seconds the process's threads ran on a CPU (schedstat only)."""
    cores: int = 1
    """Cores the process may use."""

    @property
    def fraction(self) -> float:
        """Share of the runnable time spent waiting for other processes (see the module
        docstring; 0 when not measured)."""
        if self.wait is None:
            return 0.0
        if self.run is not None:
            busy = self.wait + self.run
            stolen = min(self.wait, max(self.cores * self.wall - self.run, 0.0))
            return stolen / busy if busy > 0 else 0.0
        return self.wait / self.wall if self.wall > 0 else 0.0


class ContentionProbe:
    """Reads contention counters; ``source`` says which (see the module docstring)."""

    def __init__(self, source: str | None = None, clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.process_time) -> None:
        self.source = source or detect_source()
        if self.source not in SOURCES:
            raise ValueError(f"unknown contention source {self.source!r}: choose one of {', '.join(SOURCES)}")
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def snapshot(self) -> Snapshot:
        if self.source == "schedstat":
            runs, waits = _thread_times()
            return Snapshot(self.clock(), self.cpu_clock(), waits, runs)
        waits = {0: _psi_total()} if self.source == "psi" else {}
        return Snapshot(self.clock(), self.cpu_clock(), waits)

    def window(self, start: Snapshot, end: Snapshot) -> Window:
        if self.source == "none":
            return Window(end.wall - start.wall, end.cpu - start.cpu, None)
        # threads born during the window count from zero; threads that ended are lost (rare)
        wait = _delta(start.waits, end.waits)
        run = _delta(start.runs, end.runs) if end.runs else None
        return Window(end.wall - start.wall, end.cpu - start.cpu, wait, run, self.cores)


def detect_source() -> str:
    """The best source this system offers (``DLBENCH_CONTENTION_SOURCE`` overrides it)."""
    forced = os.environ.get("DLBENCH_CONTENTION_SOURCE")
    if forced:
        return forced
    try:
        runs, _ = _thread_times()
        if any(runs.values()):  # schedstat readable and counting (zeros: accounting is off)
            return "schedstat"
    except OSError:
        pass
    try:
        _psi_total()
        return "psi"
    except (OSError, ValueError):
        return "none"


def _delta(a: dict[int, float], b: dict[int, float]) -> float:
    return sum(max(v - a.get(tid, 0.0), 0.0) for tid, v in b.items())


def _thread_times() -> tuple[dict[int, float], dict[int, float]]:
    """(time on a CPU, time runnable but waiting) per thread of this process, in seconds."""
    runs: dict[int, float] = {}
    waits: dict[int, float] = {}
    for tid in os.listdir(_TASKS):
        try:
            with open(f"{_TASKS}/{tid}/schedstat", "rb") as f:
                fields = f.read().split()
        except (FileNotFoundError, ProcessLookupError):  # the thread ended while we listed
            continue
        if len(fields) >= 2:
            runs[int(tid)] = int(fields[0]) / 1e9
            waits[int(tid)] = int(fields[1]) / 1e9
    return runs, waits


def _psi_total() -> float:
    with open(_PSI) as f:
        m = _SOME.search(f.read())
    if m is None:
        raise ValueError(f"{_PSI} has no 'some' line")
    return int(m.group(1)) / 1e6


def machine_load() -> dict[str, float]:
    """The machine's load when a figure was taken: ``/proc/loadavg`` and CPU pressure (avg10,
    percent), for the environment record beside every figure (empty where not available)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/loadavg") as f:
            out["loadavg_1m"] = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(_PSI) as f:
            m = re.search(r"^some avg10=([\d.]+)", f.read(), re.M)
        if m:
            out["cpu_pressure_avg10"] = float(m.group(1))
    except OSError:
        pass
    return out
