"""A simulated machine for sampler tests: a clock that only the simulated step advances, step
times with known ground truth (AR(1) noise, planted preemptions, planted load), and a contention
probe that reads the simulated run-queue wait. Nothing here depends on the real machine's load."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlbench.measure.contention import ContentionProbe, Snapshot


def ar1(rng: np.random.Generator, n: int, rho: float, sigma: float) -> np.ndarray:
    """``n`` steps of a stationary AR(1) series with coefficient ``rho`` and s.d. ``sigma``."""
    e = rng.normal(0, sigma * np.sqrt(1 - rho**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0, sigma)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + e[i]
    return x


class SimMachine:
    """Steps of true duration ``mu`` with multiplicative AR(1) noise of ``sigma`` (coefficient
    ``rho``). ``preempt(i)`` returns extra seconds the scheduler steals from step ``i`` (counted
    as run-queue wait); ``sync`` costs ``sync_cost`` seconds; ``queue`` makes the device
    asynchronous: steps only enqueue their time and ``fetch`` pays the backlog (a
    ``synchronize()`` that does not wait)."""

    def __init__(self, seed: int = 0, mu: float = 5e-3, rho: float = 0.0, sigma: float = 0.0,
                 preempt: Callable[[int], float] | None = None, sync_cost: float = 0.0,
                 waiting_sync: bool = True) -> None:
        self.rng = np.random.default_rng(seed)
        self.mu, self.rho, self.sigma = mu, rho, sigma
        self.preempt = preempt or (lambda i: 0.0)
        self.sync_cost = sync_cost
        self.waiting_sync = waiting_sync
        self.t = 0.0
        self.wait = 0.0
        self.backlog = 0.0
        self.i = 0
        self.a = float(self.rng.normal())

    def clock(self) -> float:
        return self.t

    def step(self) -> int:
        self.a = self.rho * self.a + float(np.sqrt(1 - self.rho**2) * self.rng.normal())
        work = self.mu * (1 + self.sigma * self.a)
        stolen = self.preempt(self.i)
        self.i += 1
        self.wait += stolen
        if self.waiting_sync:
            self.t += work + stolen
        else:
            self.backlog += work
            self.t += stolen + 1e-7  # dispatch only
        return self.i

    def sync(self) -> None:
        self.t += self.sync_cost

    def fetch(self, out: object) -> object:
        self.t += self.backlog + 1e-6
        self.backlog = 0.0
        return out

    def probe(self) -> SimProbe:
        return SimProbe(self)


class SimProbe(ContentionProbe):
    """Reads the simulated machine's run-queue wait as a real probe reads schedstat."""

    def __init__(self, machine: SimMachine) -> None:
        super().__init__("schedstat", clock=machine.clock, cpu_clock=machine.clock)
        self.machine = machine
        self.cores = 1

    def snapshot(self) -> Snapshot:
        cpu = self.machine.t - self.machine.wait
        return Snapshot(self.machine.t, cpu, {1: self.machine.wait}, {1: cpu})
