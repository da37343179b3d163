"""Shared helpers of the robustness tests: run one robustness cell in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlbench.cell import Cell
from dlbench.params import COMMON_PARAMS
from dlbench.plugins import PluginConfig, get_plugins
from dlbench.result import Result
from dlbench.run.worker import execute

MASKED_PLUGINS = Path(__file__).resolve().parent / "fixtures" / "masked_plugins"

# A small, fast configuration: digits CNN, a few epochs, 100 evaluation examples.
FAST = {
    "threads": 2,
    "dataset": "digits",
    "epochs": 4,
    "eval_size": 100,
    "pgd_steps": 10,
    "square_queries": 50,
    "blackbox_size": 30,
}


def trained_digits(epochs: int, framework: str = "torch") -> tuple[Any, Any, dict[str, Any], Any, Any, Any]:
    """(plugins, task, params, data, spec, model): the digits CNN trained in this process for
    ``epochs`` from the spec's seed-0 weights, in the seeded data order every framework sees."""
    import numpy as np

    from dlbench.framework import BuildOptions

    plugins = get_plugins()
    task = plugins.tasks.get("vision")
    params = {"dataset": "digits"}
    data = task.load(params)
    spec = task.model_spec(params, data)
    fw = plugins.frameworks.get(framework)
    fw.setup(None, 0, {})
    model = fw.build(spec, spec.init_weights(0), BuildOptions(train=task.train_config(params)))
    for epoch in range(epochs):
        model.fit_epoch(data.x_train, data.y_train, 32,
                        np.random.default_rng([0, epoch]).permutation(data.n_train))
    return plugins, task, params, data, spec, model


def run_cell(
    task: str,
    framework: str,
    params: dict[str, Any],
    artifacts: Path,
    plugins_dirs: tuple[str, ...] = (),
    scenario: str = "robustness",
    device: str = "cpu",
) -> Result:
    """Run one cell in-process, as a cell's worker would (defaults filled like a suite does)."""
    config = PluginConfig(plugins_dirs=plugins_dirs)
    plugins = get_plugins(config)
    declared = {
        **COMMON_PARAMS,
        **plugins.scenarios.get(scenario).params,
        **plugins.tasks.get(task).params,
        **plugins.frameworks.get(framework).params,
    }
    full = {k: p.default for k, p in declared.items()}
    full.update(params)
    cell = Cell(scenario, task, framework, device, full)
    return execute(
        {"cell": cell.to_dict(), "plugins": config.to_dict(), "artifacts_dir": str(artifacts)}
    )


def curve(result: Result, attack: str) -> list[dict[str, Any]]:
    return sorted(
        (p for p in result.series.get("robustness_curve", []) if p["attack"] == attack),
        key=lambda p: p["epsilon"],
    )


def audit(result: Result) -> dict[str, dict[str, Any]]:
    return {a["check"]: a for a in result.details.get("audit", [])}
