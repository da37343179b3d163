"""The contract a scenario fulfils: what one cell measures, run inside the cell's process."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from dlbench.params import Param
from dlbench.result import Result
from dlbench.scenarios.figures import Column, Figure, default_figure

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
    warm_ok: ClassVar[bool] = False
    """True when its cells report no first-call or compile time, so a long-lived worker process
    may run them one after another (see :mod:`dlbench.run.launch.warm`); False (the default):
    every cell in a fresh process, so a first call is really the process's first."""
    title: ClassVar[str] = ""
    """Readable name in report titles (default: the name, capitalised)."""
    group_by: ClassVar[dict[str, str]] = {}
    """Cell parameters the leaderboard is split by, with their column titles (speed: mode and
    batch size); rows are ranked within each group."""
    charts: ClassVar[tuple[str, ...]] = ()
    """The report charts its results feed: ``throughput`` (a ``throughput`` measurement, per mode
    and batch size), ``latency`` (``latency`` samples), ``learning`` (``series["learning_curve"]``),
    ``robustness`` (``series["robustness_curve"]``), ``scaling`` (``series["scaling"]``)."""

    def skip_reason(self, cell: Cell, task: Task, framework: Framework) -> str | None:
        """Parent-side check, without importing any framework: why this cell cannot run."""
        return None

    def reuses_process(self, cell: Cell) -> bool:
        """Whether ``cell`` may run in a warm worker (default: :attr:`warm_ok`); a scenario whose
        cells differ (a sweep of throughputs or of accuracies) decides per cell."""
        return self.warm_ok

    def check(self, params: Mapping[str, Any]) -> str | None:
        """Parent-side check at suite load of one cell's parameters (each already in its
        :class:`~dlbench.params.Param` range) taken together: what is wrong and the fix, or None."""
        return None

    @abstractmethod
    def run(self, ctx: CellContext) -> None:
        """Measure the cell, filling ``ctx.result`` (measurements, metrics, series, details)."""

    # -- what the reports show (they never branch on a scenario's name) ----------------------------
    def headline(self, result: Result) -> Figure | None:
        """The one figure that sums a finished cell up (live log, terminal table, cells table,
        baseline comparison, history). None: its first measurement, else its first metric."""
        return None

    def verdict(self, result: Result) -> Figure | None:
        """A verdict on a finished cell's figures (``passed`` true or false, or
        ``inconclusive``) with its reasons in ``display``, shown under the terminal table (the
        robustness audit's). None: no verdict."""
        return None

    def columns(self, results: Sequence[Result]) -> list[Column]:
        """The columns of this scenario's leaderboard of one task (``results`` are its results
        for that task); empty: no leaderboard. Default: the headline, ranked."""
        def figure(r: Result) -> Figure | None:
            return self.headline(r) or default_figure(r)

        named = (figure(r) for r in results if r.status == "ok")
        first = next((f for f in named if f is not None), None)
        if first is None:
            return []
        title = f"{first.name} ({first.unit})" if first.unit else first.name
        return [Column(title, figure, rank=True, best=True, keep=True)]

    def report_title(self) -> str:
        return self.title or self.name.capitalize()

