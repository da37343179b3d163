"""Launchers run cells: inline (debugging), subprocess (default: one fresh process per cell), ray."""

from __future__ import annotations

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
    artifacts_dir: Path
    logs_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def payload(self, cell: Cell) -> dict[str, Any]:
        return {"cell": cell.to_dict(), "plugins": self.plugins.to_dict(),
                "artifacts_dir": str(self.artifacts_dir)}


class Launcher(ABC):
    name: str

    def __init__(self, config: LaunchConfig) -> None:
        self.config = config

    @abstractmethod
    def run(self, cell: Cell) -> Result:
        """Run one cell; every failure becomes the returned Result's status, never an exception."""

    def run_many(self, cells: Iterable[Cell]) -> Iterator[Result]:
        """Run cells, yielding each result as soon as it ends (one at a time by default)."""
        for cell in cells:
            yield self.run(cell)

    def close(self) -> None:
        """Release resources (clusters, pools)."""


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
