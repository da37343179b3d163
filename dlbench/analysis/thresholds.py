"""Comparison thresholds, with per-cell overrides selected by cell-key glob patterns."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from dlbench.errors import DlbenchError, unknown

# Short names accepted in overrides and in a suite's ``gate:`` section.
ALIASES = {"speed": "min_effect", "accuracy": "accuracy_drop", "error": "error_increase",
           "memory": "memory_limit_mb", "memory_mb": "memory_limit_mb"}


@dataclass
class Thresholds:
    """When a difference counts.

    * ``min_effect``: smallest relative speed change that matters (0.05 = 5%). A change is
      measured as a slowdown factor ``s`` (time ratio, or inverse throughput ratio): regression
      when ``s > 1 + min_effect``, improvement when ``s < 1 / (1 + min_effect)``.
    * ``accuracy_drop``: absolute points for metrics in [0, 1] (accuracy, macro_f1, hr@10...).
    * ``error_increase``: relative change for error metrics (rmse, mae, loss).
    * ``memory_limit_mb``: peak memory above this is a regression regardless of the baseline;
      ``memory_increase`` (relative) and ``memory_floor_mb`` (absolute) must both be exceeded
      for a growth over the baseline to count.
    * ``alpha``: FDR level q of the Benjamini-Hochberg procedure over the comparison's gated rows.
    * ``drift_correction``: divide a significant canary drift out of CPU speed rows. Off by
      default: on a shared machine the canary can swing by an order of magnitude while the cells
      do not (seen here: x13 between two runs minutes apart), and a wrong correction invents
      regressions. The drift is always reported, with its 95% CI. ``drift_max`` caps a
      correction: a larger drift is reported and not applied; so is the drift of a flagged
      (e.g. contended) canary.
    * ``drift_tolerance``: a canary change smaller than this is not corrected for.
    * ``informational``: measurements reported but never gating (first-call time by default).
    * ``overrides``: ``{glob: {field: value}}``; ``*`` matches any text (also ``/``), ``?`` one
      character, everything else literally (brackets in keys are not character classes). Every
      matching pattern applies, in insertion order, so later patterns win.
    """

    min_effect: float = 0.05
    accuracy_drop: float = 0.01
    error_increase: float = 0.05
    memory_limit_mb: float | None = None
    memory_increase: float = 0.10
    memory_floor_mb: float = 16.0
    alpha: float = 0.05
    drift_correction: bool = False
    drift_tolerance: float = 0.01
    drift_max: float = 0.25
    informational: tuple[str, ...] = ("first_call",)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for pattern, values in self.overrides.items():
            for k in values:
                _field_name(k, where=f"threshold override {pattern!r}")

    def for_key(self, key: str) -> Thresholds:
        """The thresholds that apply to one cell (overrides applied; ``overrides`` emptied)."""
        changes: dict[str, Any] = {}
        for pattern, values in self.overrides.items():
            if _glob(pattern).fullmatch(key):
                for k, v in values.items():
                    changes[_field_name(k)] = v
        return dataclasses.replace(self, overrides={}, **changes)


def _field_name(name: str, where: str = "thresholds") -> str:
    valid = {f.name for f in dataclasses.fields(Thresholds)} - {"overrides"}
    name = ALIASES.get(name, name)
    if name not in valid:
        raise DlbenchError(unknown("threshold", name, valid | set(ALIASES), where,
                                   "fix the name in the suite's gate: section"))
    return name


@lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."))


def matches(pattern: str, key: str) -> bool:
    """Whether a cell key matches a threshold glob (``*`` any text, ``?`` one character)."""
    return _glob(pattern).fullmatch(key) is not None
