"""What a scenario tells the reports about its results: the headline :class:`Figure` of a result
and the :class:`Column` s of its leaderboard (see :meth:`dlbench.scenarios.base.Scenario.headline`
and :meth:`~dlbench.scenarios.base.Scenario.columns`). Reports format them; they never branch
on a scenario's name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlbench.result import Measurement, Result
from dlbench.stats import proportion_ci

LOWER_IS_BETTER = frozenset({"rmse", "mae", "mse", "loss", "error", "err", "perplexity", "latency",
                             "time", "duration", "memory", "mb", "s", "ms", "seconds"})
"""Words of a metric name (split at non-alphanumerics) that mean "lower is better"."""

NON_TASK_METRICS = ("train_time_s", "time_to_target_s", "compile_time_s", "peak_host_memory_mb",
                    "peak_device_memory_mb", "clean_accuracy", "auc", "n_test", "n_train", "epochs",
                    "first_epoch_s", "first_call_s")
"""Metrics a scenario adds next to the task's own metrics."""

FORMATS = ("number", "duration")


ATTACK_FIGURES = {"robust": True, "success_rate": False, "attack_time_s": False}
"""What a robustness cell records per attack and budget, and whether higher is better: the task's
metric under attack, the share of correct examples the attack broke, the attack's time."""
_ATTACK_METRIC = re.compile(r"^(?P<figure>robust|success_rate|attack_time_s)_(?P<attack>.+)_"
                            r"(?P<mark>eps|k)(?P<budget>[0-9.e+-]+)$")


def attack_metric(figure: str, attack: str, budget: float, mark: str = "eps") -> str:
    """``<figure>_<attack>_<mark><budget>``: one of :data:`ATTACK_FIGURES` at one attack budget
    (``eps``: an epsilon in the budget's unit; ``k``: substituted tokens)."""
    return f"{figure}_{attack}_{mark}{budget:g}"


def parse_attack_metric(name: str) -> tuple[str, str, str, float] | None:
    """(figure, attack, mark, budget) of an :func:`attack_metric` name; None for any other name."""
    m = _ATTACK_METRIC.match(name)
    if m is None:
        return None
    try:
        return m["figure"], m["attack"], m["mark"], float(m["budget"])
    except ValueError:
        return None


def metric_direction(name: str) -> bool:
    """True when a higher value of metric ``name`` is better (accuracy, f1, hr@10, auc,
    throughput); False for errors, losses, times and memory (rmse, mae, loss, train_time_s)."""
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    return not (words & LOWER_IS_BETTER)


def is_nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def as_float(x: Any) -> float:
    """``x`` as a float; NaN for None, strings and other non-numbers."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


@dataclass(frozen=True)
class Figure:
    """One figure of a result, ready for a report: its value with a 95% CI and spread, its
    direction, and where its warnings come from.

    ``source`` is the measurement whose flags the figure carries (contended, not converged...);
    ``values``, when set, are shown instead of ``value``, as ``12 / 15 / 20`` (percentiles);
    ``display``, when set, is shown as it is (``3/4 passed``, ``not reached``); ``fmt`` is
    ``number`` or ``duration``; ``sig`` the significant digits; ``passed`` a pass/fail verdict
    (parity, audits); ``inconclusive``: a verdict that could not be reached (checks that did
    not run), shown grey, neither pass nor fail."""

    name: str
    value: float
    unit: str = ""
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    spread: float = float("nan")  # relative: IQR / |median| (or std / |mean|)
    n: int | None = None
    higher_is_better: bool = True
    passed: bool | None = None
    inconclusive: bool = False
    source: Measurement | None = None
    values: tuple[float, ...] = ()
    display: str | None = None
    fmt: str = "number"
    sig: int = 3


@dataclass(frozen=True)
class Column:
    """One column of a scenario's leaderboard: ``figure`` gives the cell of a result (None:
    empty). ``rank``: rows are ranked by this column, best first (by the figure's direction),
    and a ``#`` column numbers them; ``best``: the best value is marked; ``vs_best``: a ratio
    to the best follows; ``keep``: shown even when every row is empty."""

    title: str
    figure: Callable[[Result], Figure | None]
    rank: bool = False
    best: bool = False
    vs_best: bool = False
    keep: bool = False


def task_metrics(result: Result) -> list[str]:
    """The task's own metrics of a result (accuracy, macro_f1, rmse...), in order."""
    named = result.details.get("task_metrics")
    if named:
        return [k for k in named if k in result.metrics]
    return [k for k in result.metrics if k not in NON_TASK_METRICS and not k.endswith("_time_s")]


def metric_ci(result: Result, name: str) -> tuple[float, float]:
    """95% CI of a metric from ``details["metric_ci"]``, or from per-example ``test_correct``
    samples for accuracy (Wilson interval); NaNs when neither exists."""
    ci = (result.details.get("metric_ci") or {}).get(name)
    if ci and len(ci) == 2:
        return as_float(ci[0]), as_float(ci[1])
    if name == "accuracy":
        m = result.measurement("test_correct")
        if m is not None and m.samples:
            return proportion_ci(int(round(sum(m.samples))), len(m.samples))
    return float("nan"), float("nan")


def measurement_figure(result: Result, name: str) -> Figure | None:
    """The median of measurement ``name`` with its CI, spread, n and flags (None: no samples)."""
    m = result.measurement(name)
    if m is None or m.stats is None or m.stats.n == 0:
        return None
    s = m.stats
    if not is_nan(s.iqr) and s.median:
        spread = s.iqr / abs(s.median)
    elif s.mean:
        spread = 2 * s.std / abs(s.mean) if not is_nan(s.std) else float("nan")
    else:
        spread = float("nan")
    return Figure(name, s.median, m.unit, s.ci_low, s.ci_high, spread, s.n, m.higher_is_better,
                  source=m)


def metric_figure(result: Result, name: str, sig: int = 3) -> Figure | None:
    """Scalar metric ``name`` with its CI (:func:`metric_ci`; None: no such metric)."""
    if name not in result.metrics:
        return None
    lo, hi = metric_ci(result, name)
    m = result.measurement("test_correct")
    n = len(m.samples) if m is not None and m.samples else None
    return Figure(name, as_float(result.metrics[name]), "", lo, hi, n=n,
                  higher_is_better=metric_direction(name), sig=sig)


def default_figure(result: Result) -> Figure | None:
    """The headline of a result whose scenario names none: its first measurement with samples,
    else its first metric."""
    for m in result.measurements:
        f = measurement_figure(result, m.name)
        if f is not None:
            return f
    for name in result.metrics:
        return metric_figure(result, name)
    return None


__all__ = ["Column", "Figure", "FORMATS", "LOWER_IS_BETTER", "NON_TASK_METRICS", "as_float",
           "default_figure", "is_nan", "measurement_figure", "metric_ci", "metric_direction",
           "ATTACK_FIGURES", "attack_metric", "parse_attack_metric",
           "metric_figure", "task_metrics"]
