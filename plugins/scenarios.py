"""Built-in scenarios (registered like any third-party plugin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dlbench.api import hookimpl


@hookimpl
def dlbench_register_scenarios(register: Callable[[Any], None]) -> None:
    from dlbench.api import (
        AccuracyScenario,
        FidelityScenario,
        ParityScenario,
        RobustnessScenario,
        ScalabilityScenario,
        SpeedScenario,
    )

    register(SpeedScenario())
    register(AccuracyScenario())
    register(ParityScenario())
    register(ScalabilityScenario())
    register(RobustnessScenario())
    register(FidelityScenario())
