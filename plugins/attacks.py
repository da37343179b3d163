"""Built-in attacks of the robustness scenario: FGSM, PGD, APGD-CE, Square and random noise
(registered like any third-party plugin; ``dlbench.api.BUILTIN_ATTACKS``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dlbench.api import hookimpl


@hookimpl
def dlbench_register_attacks(register: Callable[[Any], None]) -> None:
    from dlbench.api import BUILTIN_ATTACKS

    for attack in BUILTIN_ATTACKS:
        register(attack)
