"""A run of a suite: expand cells, launch each in isolation, store each result as it ends, report."""

from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dlbench.cell import Cell
from dlbench.errors import DatasetError, PluginError
from dlbench.launch.base import LaunchConfig, Launcher
from dlbench.measure.environment import fingerprint, git_commit
from dlbench.plugins import Plugins
from dlbench.result import Result
from dlbench.store import Store
from dlbench.suite import Suite

LAUNCHERS = ("subprocess", "inline", "ray")


@dataclass
class RunOptions:
    store_url: str
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
    reports: dict[str, Path] = field(default_factory=dict)
    _fetch_failed: set[str] = field(default_factory=set)
    only: list[Cell] | None = None
    """Run exactly these cells (gate confirmation re-runs) instead of the suite's expansion."""
    console: Console = field(default_factory=lambda: Console(stderr=True))

    # -- setup -----------------------------------------------------------------------------------
    def _launcher(self) -> Launcher:
        cfg = LaunchConfig(self.plugins.config, self.store.folder / "artifacts", self.store.folder / "logs")
        if self.options.launcher == "inline":
            from dlbench.launch.inline import InlineLauncher

            return InlineLauncher(cfg)
        if self.options.launcher == "ray":
            from dlbench.launch.ray import RayLauncher

            return RayLauncher(cfg, self.options.ray_address, self.options.cpus_per_cell)
        from dlbench.launch.subprocess import SubprocessLauncher

        return SubprocessLauncher(cfg)

    def _precheck(self, cell: Cell) -> Result | None:
        """Parent-side skips, without importing any framework."""
        fw = self.plugins.frameworks.get(cell.framework)
        avail = fw.availability()
        reason = None if avail.installed else f"{fw.name} is not installed: {avail.reason}"
        if reason is None:
            reason = self.plugins.scenarios.get(cell.scenario).skip_reason(
                cell, self.plugins.tasks.get(cell.task), fw)
        if reason is None and self.plugins.scenarios.get(cell.scenario).needs_data:
            try:
                for name in self.plugins.tasks.get(cell.task).datasets(cell.params):
                    self._ensure_dataset(name, cell.task)
            except (DatasetError, PluginError) as exc:
                reason = str(exc)
        if reason is None:
            return None
        return Result(cell, status="skipped", error=reason, started_at=time.time(), duration=0.0)

    def _ensure_dataset(self, name: str, task: str) -> None:
        """Datasets are downloaded on first use (once per run; never when DLBENCH_OFFLINE is set);
        a dataset that is still missing or corrupt raises DatasetError naming the fix."""
        from dlbench.data import require
        from dlbench.download import fetch

        info = self.plugins.datasets.get(name, f"task {task!r}")
        try:
            require(info)
            return
        except DatasetError as missing:
            if os.environ.get("DLBENCH_OFFLINE") or name in self._fetch_failed:
                raise
            try:
                self.console.print(f"downloading dataset {name} (first use) ...")
                fetch(info, progress=None)
            except Exception as exc:  # noqa: BLE001 - offline, refused, digest mismatch
                self._fetch_failed.add(name)
                raise DatasetError(f"{missing} [download failed: {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}]") from exc
        require(info)

    # -- running ---------------------------------------------------------------------------------
    def run(self) -> Session:
        config: dict[str, Any] = {"suite": self.suite, "store": self.store.url,
                                  "output_dir": str(self.options.output_dir), "options": self.options}
        self.plugins.call("dlbench_configure", config=config)
        self.cells = list(self.only) if self.only is not None else self.suite.cells(self.plugins)
        if self.options.select:
            self.cells = [c for c in self.cells if fnmatch.fnmatchcase(c.key, self.options.select)]
        done: set[str] = set()
        if self.options.resume is not None:
            self.run_id = self.options.resume
            self.store.run_info(self.run_id)
            done = self.store.finished_keys(self.run_id)
        else:
            self.run_id = self.store.start_run(
                self.options.label or self.suite.name, fingerprint(), git_commit(),
                {"suite_path": str(self.suite.path) if self.suite.path else None,
                 "launcher": self.options.launcher, "plugins": self.plugins.names(),
                 "cells": len(self.cells), "suite": self.suite.model.model_dump()})
        todo = [c for c in self.cells if c.key not in done]
        launcher = self._launcher()
        status = "finished"
        try:
            with self._progress() as progress:
                task_id = progress.add_task("cells", total=len(todo))
                if self.options.canary and CANARY_KEY not in done:
                    progress.update(task_id, description="canary (machine drift)")
                    self._record(canary_result(), progress)
                runnable = []
                for cell in todo:
                    skipped = self._precheck(cell)
                    if skipped is None:
                        runnable.append(cell)
                    else:
                        self._record(skipped, progress)
                        progress.advance(task_id)
                for result in launcher.run_many(self._announce(runnable, progress, task_id)):
                    self._record(result, progress)
                    progress.advance(task_id)
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            launcher.close()
            self.store.finish_run(self.run_id, status)
            self.plugins.call("dlbench_session_finish", session=self)
        return self

    @staticmethod
    def _announce(cells: list[Cell], progress: Progress, task_id: Any) -> Any:
        for cell in cells:
            progress.update(task_id, description=escape(cell.key))
            yield cell

    def _record(self, result: Result, progress: Progress) -> None:
        self.store.add_result(self.run_id, result)
        self.results.append(result)
        try:
            self.plugins.call("dlbench_cell_result", result=result)
        except Exception as exc:  # noqa: BLE001 - a listener must not lose the run
            progress.console.print(f"[yellow]a dlbench_cell_result hook failed: {exc}[/]")
        if not self.options.quiet:
            progress.console.print(describe(result))

    def _progress(self) -> Progress:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=self.console, disable=self.options.quiet,
                        transient=True)

    # -- reporting -------------------------------------------------------------------------------
    def write_reports(self) -> dict[str, Path]:
        from dlbench.report.write import write_reports

        self.reports = write_reports(self.store, self.run_id, self.plugins, self.options.output_dir,
                                     self.options.reporters)
        return self.reports


CANARY_CELL = Cell("canary", "matmul", "numpy", "cpu", {})
CANARY_KEY = CANARY_CELL.key


def canary_result() -> Result:
    """The fixed NumPy workload, measured in the parent process at the start of every run."""
    from dlbench.measure.canary import canary_workload

    t0 = time.time()
    m = canary_workload()
    return Result(CANARY_CELL, "ok", [m], environment=fingerprint(), started_at=t0, duration=time.time() - t0)


_STYLE = {"ok": "green", "skipped": "yellow", "failed": "red", "crashed": "red", "timeout": "red"}


def describe(r: Result) -> str:
    """One line per finished cell for the live log."""
    from dlbench.report.common import headline

    style = _STYLE.get(r.status, "white")
    h = headline(r) if r.status == "ok" else None
    head = f"{h.name} {h.text} {h.spread_text}".rstrip() if h else ""
    err = f" — {r.error}" if r.error and r.status != "ok" else ""
    dur = f" ({r.duration:.1f} s)" if r.duration else ""
    return f"[{style}]{r.status:>7}[/] {escape(r.cell.key)} {head}{dur}{escape(err)}"
