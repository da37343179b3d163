"""Per-cell history across runs: change-point (step) detection and trend summaries.

:func:`detect_steps` is binary segmentation with a rank test. On a segment it locates the most
likely single step by least squares (on log values when ``relative``) among the splits that leave
at least ``min_size`` points on each side, and tests it with the two-sided Mann-Whitney U test of
left against right. The split is a step when that p-value, Bonferroni-corrected by the number of
splits tried (valid whatever picked the split), is below ``alpha`` **and**
the medians on either side differ by at least ``min_effect`` (relative when ``relative``, else
absolute). Both halves are then searched again. Rank tests make it robust to a single bad run
(an outlier is not a step); the Bonferroni factor makes scanning many split points safe (the
chance of a false step in flat noise stays below ``alpha`` per searched segment). A step needs
about ``min_size`` points after it before it can be found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as st

from dlbench.analysis.effects import mann_whitney_p


def _effect(left: np.ndarray, right: np.ndarray, relative: bool) -> float:
    a, b = float(np.median(left)), float(np.median(right))
    if relative:
        return abs(b / a - 1) if a else math.inf
    return abs(b - a)


def _best_split(x: np.ndarray, y: np.ndarray, min_size: int) -> tuple[int, float, int]:
    """(split index, its Mann-Whitney p-value, number of splits tried) of one segment. The
    split is located by least squares on ``y`` (the values, or their logs): the maximum-likelihood
    position of a single mean shift (after winsorising at 4 MAD); choosing the split by the
    smallest rank-test p-value would favour balanced splits."""
    n = x.size
    tried = max(n - 2 * min_size + 1, 0)
    if tried == 0 or np.ptp(x) == 0:
        return -1, 1.0, tried
    med = float(np.median(y))
    mad = 1.4826 * float(np.median(np.abs(y - med)))
    if mad > 0:  # winsorise: one wild run must not decide where the step is
        y = np.clip(y, med - 4 * mad, med + 4 * mad)
    k = np.arange(min_size, n - min_size + 1)
    c = np.cumsum(y)
    left, right = c[k - 1] / k, (c[-1] - c[k - 1]) / (n - k)
    gain = k * (n - k) / n * (left - right) ** 2
    best = int(k[int(np.argmax(gain))])
    return best, mann_whitney_p(x[:best], x[best:]), tried


def detect_steps(values: Sequence[float] | np.ndarray, *, alpha: float = 0.01,
                 min_effect: float = 0.05, min_size: int = 4, relative: bool = True,
                 max_steps: int = 10) -> list[int]:
    """Indices where a new level starts (``values[i]`` is the first point after the step),
    sorted. ``values`` is a per-cell series of medians in run order; NaNs are not allowed."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ValueError("detect_steps needs a 1-D series of finite values")
    if relative and np.any(x <= 0):
        relative = False
    y = np.log(x) if relative else x
    steps: list[int] = []
    todo = [(0, x.size)]
    while todo and len(steps) < max_steps:
        lo, hi = todo.pop()
        if hi - lo < 2 * min_size:
            continue
        k, p, tried = _best_split(x[lo:hi], y[lo:hi], min_size)
        if k < 0 or p * tried >= alpha:
            continue
        if _effect(x[lo:lo + k], x[lo + k:hi], relative) < min_effect:
            continue
        steps.append(lo + k)
        todo += [(lo, lo + k), (lo + k, hi)]
    return sorted(steps)


def segments(values: Sequence[float] | np.ndarray, steps: Sequence[int]) -> list[dict[str, Any]]:
    """The levels between steps: start (inclusive), end (exclusive), median, n."""
    x = np.asarray(values, dtype=float)
    bounds = [0, *sorted(steps), x.size]
    return [{"start": a, "end": b, "median": float(np.median(x[a:b])), "n": b - a}
            for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _values(points: Sequence[Any]) -> tuple[list[float], list[dict[str, Any]]]:
    vals, meta = [], []
    for p in points:
        if isinstance(p, dict):
            v = p.get("median", p.get("value"))
            meta.append({k: p[k] for k in ("run_id", "commit", "git_commit", "started_at")
                         if k in p})
        else:
            v = p
            meta.append({})
        vals.append(float(v) if v is not None else math.nan)
    return vals, meta


MIN_TREND_RUNS = 3
"""Runs a history needs before it has a direction (Kendall's tau and Theil-Sen need three)."""


def trend(points: Sequence[Any], higher_is_better: bool | None = None, *, alpha: float = 0.05,
          min_effect: float = 0.05) -> dict[str, Any]:
    """Summary of a history: ``points`` are numbers or dicts with ``median`` (and optional
    ``run_id``, ``commit`` or ``git_commit`` and ``started_at``, as ``Store.history`` rows have;
    a None median, e.g. of a failed run, is skipped). Returns n, first, last, change (last level /
    first level - 1), slope (Theil-Sen, relative change per run on log values when all are
    positive) with its 95% CI, Kendall's tau and p-value, direction (up/down/flat), assessment
    (improving/degrading/stable when ``higher_is_better`` is given), steps (with before/after
    levels) and segments. Under :data:`MIN_TREND_RUNS` runs there is no trend: direction and
    assessment say ``too few runs``, the change is the last run against the first, and a single
    run has none."""
    vals, meta = _values(points)
    keep = [i for i, v in enumerate(vals) if math.isfinite(v)]
    x = np.asarray([vals[i] for i in keep])
    out: dict[str, Any] = {"n": int(x.size), "first": None, "last": None, "change": None,
                           "slope": None, "slope_ci": None, "tau": None, "p_value": None,
                           "direction": "flat", "assessment": None, "steps": [], "segments": []}
    if x.size < MIN_TREND_RUNS:
        out["direction"] = f"too few runs ({x.size}; a trend needs {MIN_TREND_RUNS})"
        out["assessment"] = out["direction"] if higher_is_better is not None else None
    if x.size == 0:
        return out
    out["first"], out["last"] = float(x[0]), float(x[-1])
    relative = bool(np.all(x > 0))
    steps = detect_steps(x, alpha=alpha / 5, min_effect=min_effect, relative=relative)
    segs = segments(x, steps)
    a, b = segs[0]["median"], segs[-1]["median"]
    if x.size < MIN_TREND_RUNS:  # no levels to compare: the last run against the first
        a, b = x[0], x[-1]
    out["change"] = None if x.size < 2 else float(b / a - 1) if relative else float(b - a)
    out["segments"] = [{**s, "start": keep[s["start"]], "end": keep[s["end"] - 1] + 1}
                       for s in segs]
    for s_prev, s_next in zip(segs[:-1], segs[1:], strict=True):
        i = keep[s_next["start"]]
        before, after = s_prev["median"], s_next["median"]
        out["steps"].append({"index": i, **meta[i], "before": before, "after": after,
                             "change": (after / before - 1) if relative else after - before})
    if x.size >= 3 and np.ptp(x) > 0:
        y = np.log(x) if relative else x
        slope, _, lo, hi = st.theilslopes(y, np.arange(x.size))
        tau = st.kendalltau(np.arange(x.size), y)
        out.update(slope=float(math.expm1(slope)) if relative else float(slope),
                   slope_ci=[float(math.expm1(lo)), float(math.expm1(hi))] if relative
                   else [float(lo), float(hi)],
                   tau=float(tau.statistic), p_value=float(tau.pvalue))
        big = abs(out["change"]) >= min_effect if relative else out["change"] != 0
        if big and (tau.pvalue < alpha or steps):
            out["direction"] = "up" if out["change"] > 0 else "down"
    if higher_is_better is not None and x.size >= MIN_TREND_RUNS:
        d = out["direction"]
        out["assessment"] = ("stable" if d == "flat" else
                             "improving" if (d == "up") == higher_is_better else "degrading")
    return out
