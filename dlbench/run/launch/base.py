"""Launchers run cells: inline (debugging), subprocess (one fresh process per cell; by default
with warm workers for the cells that time no first call, :mod:`~dlbench.run.launch.warm`), ray.

A launcher runs :class:`Job` s: a cell and which of its ``repeats`` this process is. Its
:class:`LaunchConfig` says which plugins the cell process loads and which Python interpreter runs
it (``python``; the current one by default), so an A/B run (``dlbench ab``) is two launch
configurations over the same cells.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlbench.cell import Cell
from dlbench.plugins import PluginConfig
from dlbench.report.escape import clean_text
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
    run_cache: Path | None = None
    """A folder the cells of one run share for what they measure once per run (the matmul
    roofline, a parity reference: :meth:`dlbench.run.context.CellContext.once_per_run`); the
    session makes it per run and removes it when the run ends. None: each cell measures its own."""

    @property
    def plugins_dirs(self) -> tuple[str, ...]:
        return self.plugins.plugins_dirs

    def interpreter(self) -> str:
        return self.python or sys.executable

    def payload(self, cell: Cell) -> dict[str, Any]:
        return {"cell": cell.to_dict(), "plugins": self.plugins.to_dict(),
                "artifacts_dir": str(self.artifacts_dir),
                "run_cache": str(self.run_cache) if self.run_cache else None}


@dataclass(frozen=True)
class Job:
    """One process to launch: ``cell``'s repeat ``repeat`` (0-based) of ``repeats``."""

    cell: Cell
    repeat: int = 0
    repeats: int = 1
    group: str | None = None
    """The warm-worker group (framework, its variant and settings, device, threads) whose
    long-lived process may run this job (:mod:`dlbench.run.launch.warm`); None: a fresh process
    (speed cells, anything timing a first call, repeats, ``--fresh-processes``)."""
    fork: str | None = None
    """For a fresh job, the group whose fork server may fork its process
    (:mod:`dlbench.run.launch.forked`); None: a new interpreter (repeats, ``--fresh-processes``)."""

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
        return {"cell": self.cell.to_dict(), "repeat": self.repeat, "repeats": self.repeats,
                "group": self.group, "fork": self.fork}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(Cell.from_dict(d["cell"]), int(d.get("repeat", 0)), int(d.get("repeats", 1)),
                   d.get("group"), d.get("fork"))


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


TAIL_BYTES = 16 * 1024
"""At most this many bytes of a cell's log are stored (and read back from its log file)."""

def cap_bytes(text: str, max_bytes: int = TAIL_BYTES) -> str:
    """The end of ``text``, at most ``max_bytes`` bytes of UTF-8 (cut at a character boundary)."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= max_bytes:
        return text
    return raw[-max_bytes:].decode("utf-8", errors="ignore")


def tail(text: str, lines: int = 40, max_bytes: int = TAIL_BYTES) -> str:
    """The last ``lines`` lines of ``text``, cleaned (:func:`clean_text`), at most ``max_bytes``."""
    text = cap_bytes(text, 4 * max_bytes)
    return cap_bytes("\n".join(clean_text(text).splitlines()[-lines:]), max_bytes)


def tail_file(path: Path, lines: int = 40, max_bytes: int = TAIL_BYTES) -> str:
    """:func:`tail` of a log file, reading only its last bytes (never a 10 MB log whole)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * max_bytes))
            data = f.read(4 * max_bytes)
    except OSError:
        return ""
    return tail(data.decode("utf-8", errors="replace"), lines, max_bytes)
