"""Statistics of raw samples: robust summary and a distribution-free 95% CI of the median."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import stats as st

from dlbench.result import Stats


@lru_cache(maxsize=4096)
def _order_statistics(n: int, confidence: float) -> tuple[int, int]:
    """0-based indices of the order statistics bounding the median's CI for ``n`` samples."""
    alpha = 1 - confidence
    lo = int(st.binom.ppf(alpha / 2, n, 0.5))
    hi = int(st.binom.isf(alpha / 2, n, 0.5))
    return max(lo - 1, 0), min(hi, n - 1)  # ppf gives a count; order statistics are 0-based


def median_ci(samples: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from binomial order statistics (NaN when n < 6)."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n < 6:
        return float("nan"), float("nan")
    lo, hi = _order_statistics(n, confidence)
    return float(x[lo]), float(x[hi])


def summarize(samples: Sequence[float] | np.ndarray) -> Stats:
    """Median, mean, std, min, max, p90, p99, IQR and the 95% CI of the median."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        nan = float("nan")
        return Stats(0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    lo, hi = median_ci(x)
    q1, q3 = np.percentile(x, [25, 75])
    return Stats(
        n=int(x.size),
        median=float(np.median(x)),
        mean=float(x.mean()),
        std=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        min=float(x.min()),
        max=float(x.max()),
        p90=float(np.percentile(x, 90)),
        p99=float(np.percentile(x, 99)),
        ci_low=lo,
        ci_high=hi,
        iqr=float(q3 - q1),
    )


def relative_ci_halfwidth(samples: Sequence[float] | np.ndarray) -> float:
    """Half-width of the median's 95% CI relative to the median (inf when not yet defined)."""
    lo, hi = median_ci(samples)
    med = float(np.median(samples)) if len(samples) else 0.0
    if math.isnan(lo) or med == 0:
        return math.inf
    return (hi - lo) / 2 / abs(med)


def proportion_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (accuracy on n examples)."""
    if n == 0:
        return float("nan"), float("nan")
    res = st.binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return float(res.low), float(res.high)
