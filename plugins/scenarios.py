"""Built-in scenarios: speed, accuracy and parity (registered like any third-party plugin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dlbench


@dlbench.hookimpl
def dlbench_register_scenarios(register: Callable[[Any], None]) -> None:
    from dlbench.scenarios.accuracy import AccuracyScenario
    from dlbench.scenarios.parity import ParityScenario
    from dlbench.scenarios.speed import SpeedScenario

    register(SpeedScenario())
    register(AccuracyScenario())
    register(ParityScenario())
