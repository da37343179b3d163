"""Declared suite parameters: each plugin says which parameters it accepts and their choices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Param:
    """A parameter a scenario, task or framework accepts in a suite's matrix."""

    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    type: type | None = None
    applies_to: tuple[str, ...] = field(default_factory=tuple)
    """For framework params: only these frameworks use it (empty: all)."""

    def validate(self, name: str, value: Any) -> str | None:
        """Return an error message for a bad value, or None."""
        if self.choices is not None and value not in self.choices:
            return f"{name}={value!r}: choose one of {', '.join(map(str, self.choices))}"
        if self.type is not None and value is not None:
            t = self.type
            ok = isinstance(value, t) and not (t is int and isinstance(value, bool))
            if t is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                return f"{name}={value!r}: expected {t.__name__}"
        return None


COMMON_PARAMS: dict[str, Param] = {
    "variant": Param("eager", "eager; graph (tf.function); compiled (torch.compile, jax.jit, XLA)",
                     ("eager", "graph", "compiled")),
    "precision": Param("fp32", "numeric precision", ("fp32", "bf16")),
    "threads": Param(None, "intra-op threads (None: every core this process may use, os.sched_getaffinity)", type=int),
    "seed": Param(0, "seed of weights, data order and synthetic data", type=int),
}
"""Parameters every cell has, whatever its scenario, task or framework."""
