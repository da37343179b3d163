"""A run of a suite: expand cells, launch each in isolation, store each result as it ends, report.

Cells run in fresh processes, except those whose scenario times no first call: they share a warm
worker per group (:func:`warm_group`). A fresh process is forked from its group's fork server
(:func:`fork_group`: it skips the interpreter's start and the imports, never a first call);
``--fresh-processes`` turns both off: a new interpreter for every cell. A cell with
``repeats: k`` is launched k times, each in a fresh process, round by round (round 1
of every cell, then round 2 ...); each process's Result is stored as its own row and merged on
reading (:meth:`dlbench.store.database.Store.results`). ``--resume`` launches exactly the repeats that have
not ended ok or skipped. :mod:`dlbench.run.ab` drives two sessions (base, head) interleaved through
:meth:`Session.start`, :meth:`Session.prepare`, :meth:`Session.record` and :meth:`Session.finish`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dlbench.cell import Cell
from dlbench.data.download import fetch
from dlbench.data.registry import require
from dlbench.errors import CorruptDatasetError, DatasetError, PluginError, StoreError
from dlbench.measure.canary import CANARY_SCENARIO, canary_workload
from dlbench.measure.environment import fingerprint, framework_distributions, git_commit
from dlbench.plugins import Plugins
from dlbench.report.base import RunData
from dlbench.report.common import headline
from dlbench.report.escape import clean_text, term_markup
from dlbench.result import Result
from dlbench.run.launch.base import (
    TAIL_BYTES,
    Job,
    LaunchConfig,
    Launcher,
    cap_bytes,
    tail,
)
from dlbench.run.launch.inline import InlineLauncher
from dlbench.run.launch.ray import RayLauncher
from dlbench.run.launch.subprocess import SubprocessLauncher
from dlbench.run.launch.warm import WarmLauncher
from dlbench.run.reports import write_reports
from dlbench.run.suite import Suite
from dlbench.scenarios.base import Scenario
from dlbench.store.database import Store
from dlbench.store.liveness import runner_info
from dlbench.task import native_skip

LAUNCHERS = ("subprocess", "inline", "ray")


@dataclass
class RunOptions:
    output_dir: Path = Path("reports")
    launcher: str = "subprocess"
    resume: int | None = None
    select: str | None = None
    reporters: tuple[str, ...] = ("html", "json")
    quiet: bool = False
    ray_address: str | None = None
    cpus_per_cell: float | None = None
    canary: bool = True
    """Measure the machine-drift canary at the start of the run (see dlbench.measure.canary)."""
    label: str | None = None
    """Store the run under this name instead of the suite's (e.g. gate confirmations)."""
    repeats: int | None = None
    """Processes per cell for every cell, instead of the suite's ``repeats`` (``dlbench ab``)."""
    config: dict[str, Any] = field(default_factory=dict)
    """Extra entries of the run's stored ``config`` (``dlbench ab``: the side)."""
    log_prefix: str = ""
    fresh_processes: bool = False
    """Every cell in a new interpreter; False (default): with the subprocess launcher, the cells
    that time no first call share a warm worker per group (:mod:`dlbench.run.launch.warm`) and
    the others are forked from their group's fork server (:mod:`dlbench.run.launch.forked`)."""
    parallel_cells: int = 1
    """Warm cells run at once at most while the machine has idle cores (never beside a fresh
    process's cell); 1: one cell at a time."""


@dataclass
class Session:
    """One run: the suite, its cells and the results so far (``dlbench_session_finish`` gets it)."""

    suite: Suite
    plugins: Plugins
    options: RunOptions
    store: Store
    run_id: int = 0
    cells: list[Cell] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    """Each stored process's Result as it ended (repeats not merged: read the store for that)."""
    reports: dict[str, Path] = field(default_factory=dict)
    _fetch_failed: set[str] = field(default_factory=set)
    only: list[Cell] | None = None
    """Run exactly these cells (gate confirmation re-runs) instead of the suite's expansion."""
    console: Console = field(default_factory=lambda: Console(stderr=True))
    launch: LaunchConfig | None = None
    """The cell processes' launch configuration (interpreter, plugins); default: this process's
    interpreter, ``plugins.config``, logs and artifacts beside the store. ``dlbench ab`` gives
    each side its own."""
    _progress_console: Console | None = None
    _skipped: set[str] = field(default_factory=set)
    _planned: int = 0
    _plan: list[tuple[Cell, int]] = field(default_factory=list)
    _done: dict[str, set[int]] = field(default_factory=dict)

    # -- setup -----------------------------------------------------------------------------------
    def launch_config(self) -> LaunchConfig:
        if self.launch is None:
            self.launch = LaunchConfig(self.plugins.config, self.store.folder / "artifacts",
                                       self.store.folder / "logs")
        return self.launch

    def make_launcher(self) -> Launcher:
        # logs per run (logs/<run>/<cell-id>.log): concurrent runs into one store never share one
        cfg = dataclasses.replace(self.launch_config(), logs_dir=self.launch_config().logs_dir / str(self.run_id),
                                  run_cache=self.run_cache)
        if self.options.launcher == "inline":
            return InlineLauncher(cfg)
        if self.options.launcher == "ray":
            return RayLauncher(cfg, self.options.ray_address, self.options.cpus_per_cell)
        if self.options.fresh_processes:
            return SubprocessLauncher(cfg)
        return WarmLauncher(cfg, parallel=self.options.parallel_cells)

    def _precheck(self, cell: Cell) -> Result | None:
        """Parent-side skips, without importing any framework."""
        fw = self.plugins.frameworks.get(cell.framework)
        avail = fw.availability()
        reason = None if avail.installed else f"{fw.name} is not installed: {avail.reason}"
        if reason is not None and self.launch_config().python not in (None, sys.executable):
            reason = None  # another interpreter runs the cell: its worker checks for itself
        if reason is None:  # what it declares it offers (cells of `frameworks: installed` or `all`)
            reason = fw.unsupported(cell.device, cell.params)
        task = self.plugins.tasks.get(cell.task)
        if reason is None:
            reason = native_skip(task, cell.params, fw.name)
        if reason is None:
            reason = self.plugins.scenarios.get(cell.scenario).skip_reason(cell, task, fw)
        status = "skipped"
        if reason is None and self.plugins.scenarios.get(cell.scenario).needs_data:
            try:
                for name in task.datasets(cell.params):
                    self._ensure_dataset(name, cell.task)
            except (DatasetError, PluginError) as exc:
                reason = str(exc)
                if isinstance(exc, CorruptDatasetError):
                    status = "failed"  # bad data is refused, not skipped: the run exits non-zero
        if reason is None:
            return None
        return Result(cell, status=status, error=reason, started_at=time.time(), duration=0.0)

    def _ensure_dataset(self, name: str, task: str) -> None:
        """Datasets are downloaded on first use (once per run; never when DLBENCH_OFFLINE is set);
        a dataset that is still missing or corrupt raises DatasetError naming the fix."""
        info = self.plugins.datasets.get(name, f"task {task!r}")
        try:
            require(info)
            return
        except DatasetError as missing:
            if os.environ.get("DLBENCH_OFFLINE") or name in self._fetch_failed:
                raise
            try:
                self.console.print(term_markup(f"downloading dataset {name} (first use) ..."))
                fetch(info, progress=None)
            except Exception as exc:  # noqa: BLE001 - offline, refused, digest mismatch
                self._fetch_failed.add(name)
                raise type(missing)(f"{missing} [download failed: {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}]") from exc
        require(info)

    # -- running ---------------------------------------------------------------------------------
    def run(self) -> Session:
        """Start (or resume) the run, launch every pending repeat of every cell, store each
        result as it ends, finish the run."""
        self.start()
        launcher: Launcher | None = None
        status = "finished"
        try:
            with self._progress() as progress:
                self._progress_console = progress.console
                task_id = progress.add_task("cells", total=None)
                jobs = self.prepare()
                progress.update(task_id, total=self._planned, completed=self._planned - len(jobs))
                launcher = self.make_launcher()
                for result in launcher.run_many(self.announce(jobs, progress, task_id)):
                    self.record(result)
                    progress.advance(task_id)
        except BaseException:
            # Ctrl-C, SIGTERM, a store or disk error: the run did not end; its results stay
            # stored and --resume continues it
            status = "interrupted"
            raise
        finally:
            if launcher is not None:
                launcher.close()
            try:
                self.finish(status)
            except StoreError:
                if status == "finished":
                    raise
                # the store failing again (still full, read-only) must not hide the first error
        return self

    def start(self) -> None:
        """Expand the cells and open the run in the store (a new one, or ``--resume``'s)."""
        config: dict[str, Any] = {"suite": self.suite, "store": self.store.url,
                                  "output_dir": str(self.options.output_dir), "options": self.options}
        self.plugins.call("dlbench_configure", config=config)
        plan = self.suite.plan(self.plugins)
        if self.only is not None:
            planned = {c.key: k for c, k in plan}
            plan = [(c, planned.get(c.key, 1)) for c in self.only]
        plan = [(c, k) for c, k in plan if selected(c.key, self.options.select)]
        if self.options.repeats is not None:
            plan = [(c, self.options.repeats) for c, _ in plan]
        self._plan = plan
        self.cells = [c for c, _ in plan]
        self._done = {}
        if self.options.resume is not None:
            self.run_id = self.options.resume
            self.store.run_info(self.run_id)
            self._done = self.store.finished_repeats(self.run_id)
            self._skipped = self.store.skipped_keys(self.run_id)
        else:
            self.run_id = self.store.start_run(
                self.options.label or self.suite.name,
                fingerprint(framework_distributions(self.plugins.frameworks)), git_commit(),
                {"suite_path": str(self.suite.path) if self.suite.path else None,
                 "launcher": self.options.launcher, "plugins": self.plugins.names(),
                 "warm_workers": self.options.launcher == "subprocess" and not self.options.fresh_processes,
                 "fork_servers": self.options.launcher == "subprocess" and not self.options.fresh_processes,
                 "cells": len(self.cells), "repeats": {c.key: k for c, k in plan if k > 1},
                 "python": self.launch_config().interpreter(),
                 "plugins_dirs": list(self.launch_config().plugins_dirs),
                 "suite": self.suite.model.model_dump(), "overrides": list(self.suite.overrides),
                 "runner": runner_info(), **self.options.config})

    def prepare(self) -> list[Job]:
        """The canary, the parent-side skips (recorded), and every pending job in launch order:
        round 1 of every cell, then round 2 ..., so slow drift of the machine spreads over all
        cells. ``--resume`` leaves out exactly the repeats already finished."""
        if self.options.canary and CANARY_KEY not in self._done:
            self._record(canary_result(framework_distributions(self.plugins.frameworks)))
        pending: list[tuple[Cell, int, list[int]]] = []
        self._planned = 0
        for cell, k in self._plan:
            if cell.key in self._skipped:
                continue
            todo = [i for i in range(k) if i not in self._done.get(cell.key, set())]
            self._planned += len(todo)
            if not todo:
                continue
            skipped = self._precheck(cell)
            if skipped is None:
                pending.append((cell, k, todo))
            else:
                self._record(skipped)
                self._skipped.add(cell.key)
                self._planned -= len(todo) - 1
        rounds = max((k for _, k, _ in pending), default=0)
        return [Job(cell, i, k, warm_group(self.plugins, self.options, cell, k),
                    fork_group(self.plugins, self.options, cell, k))
                for i in range(rounds) for cell, k, todo in pending if i in todo]

    def wanted(self, job: Job) -> bool:
        """False for a later repeat of a cell whose process skipped it (the skip holds for all)."""
        return job.cell.key not in self._skipped

    def announce(self, jobs: list[Job], progress: Progress, task_id: Any) -> Iterator[Job]:
        for job in jobs:
            if not self.wanted(job):
                progress.advance(task_id)
                continue
            label = f" ({job.label})" if job.label else ""
            progress.update(task_id, description=term_markup(job.cell.key + label))
            yield job

    def record(self, result: Result) -> None:
        """Store one process's result as its own row (committed now) and show it."""
        if result.status == "skipped":
            self._skipped.add(result.cell.key)
        self._record(result)

    @property
    def run_cache(self) -> Path:
        """What this run's cells measure once for all (:attr:`LaunchConfig.run_cache`), beside the
        artifacts; removed when the run ends."""
        return self.launch_config().artifacts_dir / "run-cache" / str(self.run_id)

    def finish(self, status: str = "finished") -> None:
        shutil.rmtree(self.run_cache, ignore_errors=True)
        self.store.finish_run(self.run_id, status)
        self.plugins.call("dlbench_session_finish", session=self)

    def _record(self, result: Result) -> None:
        if result.error:  # stored text carries no ANSI or control sequences, and is bounded
            result.error = cap_bytes(clean_text(result.error), 4 * TAIL_BYTES)
        if result.log_tail:
            result.log_tail = tail(result.log_tail)
        self.store.add_result(self.run_id, result)
        self.results.append(result)
        console = self._progress_console or self.console
        try:
            self.plugins.call("dlbench_cell_result", result=result)
        except Exception as exc:  # noqa: BLE001 - a listener must not lose the run
            console.print(f"[yellow]a dlbench_cell_result hook failed: {term_markup(str(exc))}[/]")
        if not self.options.quiet:
            scenarios = {s.name: s for s in self.plugins.scenarios}
            console.print(self.prefix + describe(result, scenarios))

    @property
    def prefix(self) -> str:
        """What the live log puts before each line (``dlbench ab``: the side)."""
        return self.options.log_prefix

    def _progress(self) -> Progress:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=self.console, disable=self.options.quiet,
                        transient=True)

    # -- reporting -------------------------------------------------------------------------------
    def write_reports(self, data: RunData | None = None) -> dict[str, Path]:
        """The run's report files (``data``: the run already loaded by the caller, if it was)."""
        self.reports = write_reports(self.store, self.run_id, self.plugins, self.options.output_dir,
                                     self.options.reporters, data=data)
        return self.reports


def selected(key: str, select: str | None) -> bool:
    """Whether a cell key matches ``--select`` (a glob; None selects every cell)."""
    return select is None or fnmatch.fnmatchcase(key, select)


def warm_group(plugins: Plugins, options: RunOptions, cell: Cell, repeats: int) -> str | None:
    """The warm worker group a job of ``cell`` may run in: its framework, device, threads and
    the framework's own parameters (a Keras backend: fixed at import); None (a fresh process)
    for a scenario that times a first call, a cell with repeats (process-level replicates),
    ``fresh_processes`` or a launcher other than subprocess. Variant and precision are options
    of each model a cell builds, not of the process (no framework keeps them in global state),
    so a suite's accuracy (graph), parity (eager) and robustness cells of one framework share
    one worker: a quiet quick run started eight groups for five frameworks, and the LRU limit
    then retired the very workers its robustness cells needed."""
    if not _shares_processes(options, repeats) or not plugins.scenarios.get(cell.scenario).reuses_process(cell):
        return None
    return process_group(plugins, cell)


def fork_group(plugins: Plugins, options: RunOptions, cell: Cell, repeats: int) -> str | None:
    """The fork server group of a job of ``cell`` that runs in a fresh process (the warm
    workers' group key, :func:`process_group`), or None: a warm job, a cell with repeats (each
    repeat a new interpreter: its start-up and memory layout are part of what repeats sample),
    ``fresh_processes`` or another launcher."""
    if not _shares_processes(options, repeats) or plugins.scenarios.get(cell.scenario).reuses_process(cell):
        return None
    return process_group(plugins, cell)


def _shares_processes(options: RunOptions, repeats: int) -> bool:
    return not options.fresh_processes and options.launcher == "subprocess" and repeats == 1


def process_group(plugins: Plugins, cell: Cell) -> str:
    """What a cell's process is set up with before its first model: framework, device, threads
    and the framework's own parameters (a Keras backend: fixed at import)."""
    names = sorted({"threads", *plugins.frameworks.get(cell.framework).params})
    return json.dumps([cell.framework, cell.device, {k: cell.params[k] for k in names if k in cell.params}],
                      sort_keys=True, default=str)


CANARY_CELL = Cell(CANARY_SCENARIO, "matmul", "numpy", "cpu", {})
CANARY_KEY = CANARY_CELL.key


def canary_result(distributions: Iterable[str] = ()) -> Result:
    """The fixed NumPy workload, measured in the parent process at the start of every run."""
    t0 = time.time()
    m = canary_workload()
    return Result(CANARY_CELL, "ok", [m], environment=fingerprint(distributions), started_at=t0,
                  duration=time.time() - t0)


_STYLE = {"ok": "green", "skipped": "yellow", "failed": "red", "crashed": "red", "timeout": "red"}


def describe(r: Result, scenarios: Mapping[str, Scenario] | None = None) -> str:
    """One line per finished cell for the live log (its scenario names the headline)."""
    style = _STYLE.get(r.status, "white")
    h = headline(r, scenarios) if r.status == "ok" else None
    head = f"{h.name} {h.text} {h.spread_text}".rstrip() if h else ""
    err = f" — {r.error}" if r.error and r.status != "ok" else ""
    dur = f" ({r.duration:.1f} s)" if r.duration else ""
    k = r.details.get("repeats")
    rep = f" repeat {int(r.details.get('repeat', 0)) + 1}/{k}" if isinstance(k, int) and k > 1 else ""
    return f"[{style}]{r.status:>7}[/] {term_markup(r.cell.key)}{rep} {head}{dur}{term_markup(err)}"
