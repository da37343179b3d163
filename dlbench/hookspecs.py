"""Hook specifications: every hook a dlbench plugin may implement.

A plugin is a module (or object) with functions decorated by ``@dlbench.hookimpl`` whose names
match the specifications below. Registration hooks receive a ``register`` callback so the core
validates names and reports duplicates (as llm and datasette do).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from dlbench.framework import Framework
    from dlbench.report.base import Reporter
    from dlbench.result import Result
    from dlbench.run.session import Session
    from dlbench.scenarios.base import Scenario
    from dlbench.task import Task

hookspec = pluggy.HookspecMarker("dlbench")


@hookspec
def dlbench_register_frameworks(register: Callable[[Framework], None]) -> None:
    """Register framework plugins: call ``register(MyFramework())`` once per framework.

    A framework compiles the neutral model spec into native code on a device (see
    :class:`dlbench.framework.Framework`). Its ``name`` must be unique across all plugins.
    """


@hookspec
def dlbench_register_tasks(register: Callable[[Task], None]) -> None:
    """Register task plugins: call ``register(MyTask())`` once per task.

    A task gives a dataset, preprocessing, a model spec, a loss and metrics (see
    :class:`dlbench.task.Task`). Its ``name`` must be unique across all plugins.
    """


@hookspec
def dlbench_register_scenarios(register: Callable[[Scenario], None]) -> None:
    """Register scenarios: what a cell measures (speed, accuracy, parity, robustness...).

    See :class:`dlbench.scenarios.base.Scenario`. Its ``name`` must be unique.
    """


@hookspec
def dlbench_register_attacks(register: Callable[[Any], None]) -> None:
    """Register adversarial attacks used by the robustness scenario (corruptions come from the
    tasks: :meth:`dlbench.task.Task.corruptions`).

    Each is an instance of :class:`dlbench.robustness.attacks.Attack` with a unique ``name``.
    """


@hookspec
def dlbench_register_datasets(register: Callable[[Any], None]) -> None:
    """Register datasets (:class:`dlbench.data.registry.DatasetInfo`): upstream addresses, SHA-256 per file,
    licence and citation, so ``dlbench data list|fetch|verify`` can manage them.
    """


@hookspec
def dlbench_register_reporters(register: Callable[[Reporter], None]) -> None:
    """Register reporters that render a stored run (terminal, json, html, markdown...).

    See :class:`dlbench.report.base.Reporter`. Its ``name`` must be unique.
    """


@hookspec
def dlbench_configure(config: dict[str, Any]) -> None:
    """Adjust the run configuration before the suite is expanded (in the parent process).

    ``config`` holds ``suite`` (the validated Suite), ``store`` (URL), ``output_dir`` and
    ``options``; plugins may read it or change entries in place.
    """


@hookspec
def dlbench_cell_result(result: Result) -> None:
    """Called in the parent process as soon as each cell ends, after its result is stored.

    Use it to stream results to dashboards or logs. Exceptions here are reported, not raised.
    """


@hookspec
def dlbench_session_finish(session: Session) -> None:
    """Called once after the last cell of a run, with the whole session (run id, results)."""
