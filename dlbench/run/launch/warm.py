"""Warm workers: the cells that time no first call reuse a long-lived process per group.

Starting an interpreter and importing a framework costs seconds that no figure measures. A job
with a ``group`` (the session gives one to the cells of scenarios that declare
:attr:`~dlbench.scenarios.base.Scenario.warm_ok`: accuracy, parity, robustness ...; grouped by
framework, its process-level settings such as a Keras backend, device and threads; not a
model's variant or precision) runs in that group's warm worker
(``python -m dlbench.run.worker --serve``); every other job (speed cells, anything that reports a
first-call or compile time, repeats) runs in a fresh process, and no warm worker is alive while
it does, so nothing idles beside a measurement. A fresh job with a ``fork`` group is forked from
its group's fork server (:mod:`~dlbench.run.launch.forked`: a new process that skips the
interpreter's start and the imports, never one that ran a model); one without is spawned.

A worker keeps the fresh process's guard (parent-death watch, its own watchdog armed with each
cell's timeout) and writes each cell's output to that cell's log (``logs/<run>/<cell>.log``). A
crash or a timeout kills only that worker: the cell is recorded exactly as a fresh process's
would be (``crashed`` with its exit, ``timeout``), and the group's next cell starts a new one. A
worker is retired after :attr:`WarmLimits.max_cells` cells, above :attr:`WarmLimits.max_rss`
bytes resident, or once it grew :attr:`WarmLimits.max_growth` bytes past its size after its first
cell; at most :attr:`WarmLimits.max_idle` wait between cells (the least recently used goes).

With ``parallel`` N > 1 (``dlbench run --parallel-cells N``; off by default) consecutive warm
cells run up to N at once, each in its own worker, as far as the machine has idle cores, and a
fresh job waits until they have all ended: nothing runs beside a speed cell.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from pathlib import Path

from dlbench.cell import Cell
from dlbench.result import Result
from dlbench.run.launch import served
from dlbench.run.launch.base import Job, LaunchConfig, as_job, tail_file
from dlbench.run.launch.forked import ForkServers
from dlbench.run.launch.served import Served
from dlbench.run.launch.subprocess import SubprocessLauncher, finished, kill_group, lost

GiB = 1024**3


@dataclass(frozen=True)
class WarmLimits:
    max_cells: int = 20
    """Cells one worker runs before it is replaced."""
    max_rss: int = 4 * GiB
    """Resident bytes above which a worker is replaced after its cell."""
    max_growth: int = 2 * GiB
    """Growth in resident bytes since its first cell after which a worker is replaced."""
    max_idle: int = 6
    """Workers kept waiting between cells (one per group: a suite's accuracy, parity and
    robustness blocks over five frameworks reuse five workers)."""


@dataclass(eq=False)
class _Worker(Served):
    cells: int = 0
    first_rss: int | None = None

    def wait(self, timeout: float) -> str:
        """``done``, ``timeout`` (past ``timeout`` s) or ``died`` (exited, or closed its replies)."""
        line = self.reply(timeout)
        return "timeout" if line is None else "done" if line else "died"

    def rss(self) -> int | None:
        import psutil  # only here: the resident size of a worker after its cell

        try:
            return int(psutil.Process(self.proc.pid).memory_info().rss)
        except (psutil.Error, OSError):
            return None


class WarmLauncher(SubprocessLauncher):
    """The subprocess launcher with warm workers for jobs that have a ``group``."""

    name = "subprocess"

    def __init__(self, config: LaunchConfig, limits: WarmLimits | None = None, parallel: int = 1) -> None:
        super().__init__(config)
        self.limits = limits or WarmLimits()
        self.parallel = max(1, int(parallel))
        """Warm cells run at once at most (each in its own worker), as far as cores are idle."""
        self.forks = ForkServers(self)
        """Fork servers for the fresh jobs that have a ``fork`` group."""
        self._idle: OrderedDict[str, _Worker] = OrderedDict()
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()

    def run_many(self, jobs: Iterable[Job | Cell]) -> Iterator[Result]:
        """One job at a time (``parallel`` 1), else consecutive warm jobs up to ``parallel`` at
        once while the machine has idle cores (:func:`idle_cores`), yielded as each ends; a
        fresh job waits until every warm cell has ended and runs alone."""
        if self.parallel == 1:
            yield from super().run_many(jobs)
            return
        running: set[Future[Result]] = set()
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="dlbench-warm") as pool:
            try:
                for item in jobs:
                    job = as_job(item)
                    limit = 1 if job.group is None else max(1, min(self.parallel, idle_cores() + len(running)))
                    while running and (job.group is None or len(running) >= limit):
                        done, running = wait(running, return_when=FIRST_COMPLETED)
                        for future in done:
                            yield future.result()
                    if job.group is None:
                        yield self.run_job(job)
                    else:
                        running.add(pool.submit(self.run_job, job))
                for future in as_completed(running):
                    yield future.result()
            except BaseException:  # Ctrl-C, a store error: the cells still running go with us
                with self._lock:
                    busy = list(self._busy)
                for worker in busy:
                    kill_group(worker.proc)
                raise

    def execute(self, job: Job) -> Result:
        if job.group is None:
            self.retire()  # a fresh process measures alone: no warm worker beside it
            forked = self.forks.execute(job, job.fork) if job.fork is not None else None
            return forked or super().execute(job)
        return self._execute_warm(job, job.group)

    def close(self) -> None:
        self.retire()
        self.forks.close()
        super().close()

    def retire(self) -> None:
        """Stop every idle worker."""
        served.stop_all(self._idle, self._lock)

    def _execute_warm(self, job: Job, group: str) -> Result:
        self.config.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.config.logs_dir / f"{job.log_name}.log"
        started = time.time()
        log_path.write_text("")  # this cell's log, new (the worker appends to it)
        with self._lock:
            worker = self._idle.pop(group, None)
        worker = worker or self._start(job, log_path)
        with self._lock:
            self._busy.add(worker)
        try:
            return self._run_in(worker, job, group, log_path, started)
        finally:
            with self._lock:
                self._busy.discard(worker)

    def _run_in(self, worker: _Worker, job: Job, group: str, log_path: Path, started: float) -> Result:
        cell = job.cell
        n = worker.cells
        payload, out = worker.folder / f"payload-{n}.json", worker.folder / f"result-{n}.json"
        payload.write_text(json.dumps(self.config.payload(cell)))
        status = "died"
        try:
            if worker.send({"payload": str(payload), "result": str(out), "log": str(log_path)}):
                status = worker.wait(cell.timeout)
        except BaseException:  # Ctrl-C, SIGTERM: the worker's process group goes with us
            worker.stop(kill=True)
            raise
        log_text = tail_file(log_path)
        if status == "done" and out.exists():
            result = Result.from_json(out.read_text())
            payload.unlink(missing_ok=True)
            out.unlink(missing_ok=True)
            worker.cells += 1
            self._keep(group, worker)
        else:
            code = worker.stop(kill=True)  # only this worker: the group's next cell starts anew
            result = lost(cell, "timeout" if status == "timeout" else None, code, started)
        return finished(result, log_text, started, log_path)

    def _start(self, job: Job, log_path: Path) -> _Worker:
        folder = Path(tempfile.mkdtemp(prefix=f"dlbench-cell-{os.getpid()}-"))
        # what it prints starting up goes to its first cell's log
        proc, requests, replies = served.start([self.config.interpreter(), "-m", "dlbench.run.worker", "--serve"],
                                               [str(folder)], self.process_env(job.cell), log_path, folder)
        return _Worker(proc, requests, replies, folder)

    def _keep(self, group: str, worker: _Worker) -> None:
        rss = worker.rss()
        if worker.first_rss is None:
            worker.first_rss = rss
        limits = self.limits
        spent = worker.cells >= limits.max_cells or worker.proc.poll() is not None
        big = rss is not None and (rss > limits.max_rss or
                                   (worker.first_rss is not None and rss - worker.first_rss > limits.max_growth))
        retired = [worker] if spent or big else []
        with self._lock:
            if not retired:
                if group in self._idle:  # two ran at once: one waits, the other goes
                    retired.append(self._idle.pop(group))
                self._idle[group] = worker
            while len(self._idle) > max(limits.max_idle, 1):
                retired.append(self._idle.popitem(last=False)[1])
        for w in retired:
            w.stop()


def idle_cores() -> int:
    """Cores this machine leaves idle now: its CPUs less the 1-minute load average (rounded up)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 0
    return max(0, (os.cpu_count() or 1) - math.ceil(load))
