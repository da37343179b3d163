"""Launchers run cells: inline (debugging), subprocess (default: one fresh process per cell), ray.

A launcher runs :class:`Job` s: a cell and which of its ``repeats`` this process is. Its
:class:`LaunchConfig` says which plugins the cell process loads and which Python interpreter runs
it (``python``; the current one by default), so an A/B run (``dlbench ab``) is two launch
configurations over the same cells.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlbench.cell import Cell
from dlbench.plugins import PluginConfig
from dlbench.result import Result


@dataclass(frozen=True)
class LaunchConfig:
    plugins: PluginConfig
    """The plugins (entry points, ``plugins_dirs``, disabled names) the cell process loads."""
    artifacts_dir: Path
    logs_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    python: str | None = None
    """Interpreter of the cell processes (``None``: ``sys.executable`` of the launching process).
    It must have dlbench importable (``dlbench ab`` checks before it starts)."""

    @property
    def plugins_dirs(self) -> tuple[str, ...]:
        return self.plugins.plugins_dirs

    def interpreter(self) -> str:
        return self.python or sys.executable

    def payload(self, cell: Cell) -> dict[str, Any]:
        return {"cell": cell.to_dict(), "plugins": self.plugins.to_dict(),
                "artifacts_dir": str(self.artifacts_dir)}


@dataclass(frozen=True)
class Job:
    """One process to launch: ``cell``'s repeat ``repeat`` (0-based) of ``repeats``."""

    cell: Cell
    repeat: int = 0
    repeats: int = 1

    @property
    def log_name(self) -> str:
        return f"{self.cell.id}.r{self.repeat}" if self.repeats > 1 else self.cell.id

    @property
    def label(self) -> str:
        """``repeat 2/3`` for the live log ('' for cells run once)."""
        return f"repeat {self.repeat + 1}/{self.repeats}" if self.repeats > 1 else ""

    def tag(self, result: Result) -> Result:
        """Record which repeat a process's Result is (``details["repeat"]``, ``["repeats"]``)."""
        if self.repeats > 1:
            result.details["repeat"] = self.repeat
            result.details["repeats"] = self.repeats
        return result

    def to_dict(self) -> dict[str, Any]:
        return {"cell": self.cell.to_dict(), "repeat": self.repeat, "repeats": self.repeats}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(Cell.from_dict(d["cell"]), int(d.get("repeat", 0)), int(d.get("repeats", 1)))


class Launcher(ABC):
    name: str

    def __init__(self, config: LaunchConfig) -> None:
        self.config = config

    @abstractmethod
    def execute(self, job: Job) -> Result:
        """Run one job; every failure becomes the returned Result's status, never an exception."""

    def run(self, cell: Cell) -> Result:
        """Run one cell once."""
        return self.run_job(Job(cell))

    def run_job(self, job: Job) -> Result:
        return job.tag(self.execute(job))

    def run_many(self, jobs: Iterable[Job | Cell]) -> Iterator[Result]:
        """Run jobs (or cells), yielding each result as soon as it ends (one at a time by default,
        in the order given: the session's interleaving of repeats is the launch order)."""
        for job in jobs:
            yield self.run_job(as_job(job))

    def close(self) -> None:
        """Release resources (clusters, pools)."""


def as_job(item: Job | Cell) -> Job:
    return item if isinstance(item, Job) else Job(item)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
