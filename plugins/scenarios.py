"""Built-in scenarios (registered like any third-party plugin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dlbench


@dlbench.hookimpl
def dlbench_register_scenarios(register: Callable[[Any], None]) -> None:
    from dlbench.scenarios.accuracy import AccuracyScenario
    from dlbench.scenarios.fidelity import FidelityScenario
    from dlbench.scenarios.parity import ParityScenario
    from dlbench.scenarios.robustness import RobustnessScenario
    from dlbench.scenarios.scalability import ScalabilityScenario
    from dlbench.scenarios.speed import SpeedScenario

    register(SpeedScenario())
    register(AccuracyScenario())
    register(ParityScenario())
    register(ScalabilityScenario())
    register(RobustnessScenario())
    register(FidelityScenario())
