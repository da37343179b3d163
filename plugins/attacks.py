"""Built-in attacks of the robustness scenario: FGSM, PGD, APGD-CE, Square and random noise
(registered like any third-party plugin; see :mod:`dlbench.robustness.attacks`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dlbench


@dlbench.hookimpl
def dlbench_register_attacks(register: Callable[[Any], None]) -> None:
    from dlbench.robustness.attacks import BUILTIN

    for attack in BUILTIN:
        register(attack)
