"""Declared suite parameters: each plugin says which parameters it accepts, their choices or
their type, and for numbers their range (every number must also be finite)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

SEED_MAX = 2**32 - 1
"""Largest seed (NumPy, PyTorch, TensorFlow and JAX all take it)."""


@dataclass(frozen=True)
class Param:
    """A parameter a scenario, task or framework accepts in a suite's matrix.

    ``min``/``max`` bound a number (inclusive; ``exclusive_min`` makes the lower bound open, for
    fractions in (0, 1] and rates above 0); for a list-valued parameter (``type=list``) they
    bound each number of the list. NaN and infinities are refused for every numeric parameter."""

    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    type: type | None = None
    applies_to: tuple[str, ...] = field(default_factory=tuple)
    """For framework params: only these frameworks use it (empty: all)."""
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    files: tuple[str, ...] = ()
    """File formats a value may name instead of a choice, as ``{format: path}`` (a task's
    ``model: {onnx: path/to/model.onnx}``); the suite resolves the path (:mod:`dlbench.run.model_files`)."""

    def validate(self, name: str, value: Any) -> str | None:
        """Return an error message for a bad value, or None."""
        if self.files and isinstance(value, dict):
            fmt = next(iter(value), None)
            if len(value) != 1 or fmt not in self.files or not isinstance(value[fmt], str) \
                    or not value[fmt].strip():
                forms = " or ".join(f"{{{f}: path/to/model.{f}}}" for f in self.files)
                return f"{name}={value!r}: give {forms}"
            return None
        if self.choices is not None and value not in self.choices:
            return f"{name}={value!r}: choose one of {', '.join(map(str, self.choices))}"
        if self.type is not None and value is not None:
            t = self.type
            ok = isinstance(value, t) and not (t is int and isinstance(value, bool))
            if t is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                return f"{name}={value!r}: expected {t.__name__}"
        if value is None:
            return None
        for v in value if isinstance(value, list | tuple) else [value]:
            err = self.check_number(v)
            if err:
                return f"{name}={value!r}: {err}"
        return None

    def check_number(self, v: Any) -> str | None:
        """Why the number ``v`` is out of this parameter's range (None: it is not, or ``v`` is
        not a number)."""
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        if not math.isfinite(v):
            return "must be a finite number"
        low_ok = self.min is None or (v > self.min if self.exclusive_min else v >= self.min)
        if low_ok and (self.max is None or v <= self.max):
            return None
        return f"must be {self.range_text()}"

    def range_text(self) -> str:
        """``an integer >= 1``, ``a number > 0 and <= 1``..."""
        kind = "an integer" if self.type is int else "a number"
        bounds = []
        if self.min is not None:
            bounds.append(f"{'>' if self.exclusive_min else '>='} {_num(self.min)}")
        if self.max is not None:
            bounds.append(f"<= {_num(self.max)}")
        return f"{kind} {' and '.join(bounds)}".strip()


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


COMMON_PARAMS: dict[str, Param] = {
    "variant": Param("eager", "eager; graph (tf.function); compiled (torch.compile, jax.jit, XLA)",
                     ("eager", "graph", "compiled")),
    "precision": Param("fp32", "numeric precision", ("fp32", "bf16")),
    "threads": Param(None, "intra-op threads (None: every core this process may use, os.sched_getaffinity)",
                     type=int, min=1, max=4096),
    "seed": Param(0, "seed of weights, data order and synthetic data", type=int, min=0, max=SEED_MAX),
}
"""Parameters every cell has, whatever its scenario, task or framework."""
