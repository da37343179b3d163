"""The contract a scenario fulfils: what one cell measures, run inside the cell's process."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from dlbench.params import Param

if TYPE_CHECKING:
    from dlbench.cell import Cell
    from dlbench.framework import Framework
    from dlbench.run.context import CellContext
    from dlbench.task import Task


class Scenario(ABC):
    """A scenario plugin: speed, accuracy, parity, robustness, scalability..."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    """Scenario parameters a suite may set in its matrix."""
    budget: ClassVar[dict[str, Any]] = {}
    """Default budget (see :class:`dlbench.measure.sampler.Budget`); suites override it."""
    needs_data: ClassVar[bool] = True
    """False when the scenario runs on synthetic inputs (no dataset download needed)."""

    def skip_reason(self, cell: Cell, task: Task, framework: Framework) -> str | None:
        """Parent-side check, without importing any framework: why this cell cannot run."""
        return None

    @abstractmethod
    def run(self, ctx: CellContext) -> None:
        """Measure the cell, filling ``ctx.result`` (measurements, metrics, series, details)."""
