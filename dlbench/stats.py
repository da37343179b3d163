"""Statistics of raw samples: robust summary and a 95% CI of the median that holds its coverage.

Timed windows are a time series, not independent draws: a slow minute makes several windows in a
row slow (lag-1 autocorrelation of stored windows: median 0.29, up to 0.8). The CI of the median
is therefore the distribution-free binomial order-statistic interval computed at the *effective*
sample size ``n / tau``, where ``tau`` is the integrated autocorrelation time of the samples'
ranks (1 for independent samples; the larger of an AR(1) fit, bias-corrected, and Geyer's initial
positive sequence estimate, from 50 samples on). Independent samples get the classic interval.

This module is the bottom of the statistics: :class:`dlbench.result.Measurement` summarises its
samples with :func:`summarize`, so it imports nothing from dlbench. Every process imports it, every
cell's process summarises samples, and ``scipy.stats`` takes 0.8 s to import (more than a trivial
cell's whole work), ``scipy.special`` 0.4 s (SciPy 1.17's array-API layer): the binomial quantiles
are counted exactly in integers and the Wilson interval takes the normal quantile from
:class:`statistics.NormalDist`, the same values ``scipy.stats.binom`` and ``binomtest`` give
(``tests/test_lean_imports.py`` checks they agree).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np


@dataclass
class Stats:
    """Summary of raw samples: robust centre, spread and a 95% CI of the median."""

    n: int
    median: float
    mean: float
    std: float
    min: float
    max: float
    p90: float
    p99: float
    ci_low: float
    ci_high: float
    iqr: float = float("nan")

    @property
    def rel_ci(self) -> float:
        """Half-width of the 95% CI of the median relative to the median."""
        if not self.median or math.isnan(self.ci_low):
            return float("nan")
        return (self.ci_high - self.ci_low) / 2 / abs(self.median)


def average_ranks(a: np.ndarray) -> tuple[np.ndarray, float]:
    """1-based average ranks of ``a`` (ties share their mean rank, as ``scipy.stats.rankdata``)
    and the tie term sum(t^3 - t) over tied groups of size t."""
    order = np.argsort(a, kind="mergesort")
    sa = a[order]
    group = np.concatenate(([True], sa[1:] != sa[:-1])).cumsum()
    counts = np.bincount(group)
    ends = np.cumsum(counts)
    ranks = np.empty(a.size)
    ranks[order] = ends[group] - (counts[group] - 1) / 2
    return ranks, float(np.sum(counts.astype(float) ** 3 - counts))


def autocorrelation_time(samples: Sequence[float] | np.ndarray) -> float:
    """Integrated autocorrelation time of the samples' ranks, in time order (>= 1; 1 when fewer
    than 8 samples or independent). Ranks make it robust to the outliers of preempted windows."""
    x = np.asarray(samples, dtype=float)
    n = x.size
    if n < 8 or np.ptp(x) == 0:
        return 1.0
    r = average_ranks(x)[0]
    r = r - r.mean()
    max_lag = min(n - 2, max(10, min(n // 3, 400)))
    # autocovariances at lags 0..max_lag in one FFT (zero-padded: no wrap-around)
    f = np.fft.rfft(r, 1 << int(2 * n - 1).bit_length())
    cov = np.fft.irfft(f * np.conj(f))[: max_lag + 1]
    acf = cov / cov[0]
    # AR(1): lag-1 autocorrelation is biased low by about (1 + 4 rho) / n (Kendall); correct it
    rho1 = float(acf[1])
    rho1 = min(max(rho1 + (1 + 4 * rho1) / n, 0.0), 0.95)
    tau_ar1 = (1 + rho1) / (1 - rho1)
    # Geyer's initial positive sequence: sum pairs of autocorrelations while they stay positive
    # (from 50 samples on: below that its noise alone would often void the interval)
    tau_ips = -1.0
    for k in range(0, max_lag - 1 if n >= 50 else 0, 2):
        pair = acf[k] + acf[k + 1]
        if pair <= 0:
            break
        tau_ips += 2 * pair
    return float(max(1.0, tau_ar1, tau_ips))


def effective_sample_size(samples: Sequence[float] | np.ndarray) -> float:
    """``n / tau``: how many independent samples the series is worth (see
    :func:`autocorrelation_time`)."""
    n = len(samples)
    return n / autocorrelation_time(samples) if n else 0.0


@lru_cache(maxsize=4096)
def _order_statistics(n: int, confidence: float) -> tuple[int, int]:
    """0-based indices of the order statistics bounding the median's CI for ``n`` samples."""
    lo, hi = binomial_quantiles(n, (1 - confidence) / 2)
    return max(lo - 1, 0), min(hi, n - 1)  # ppf gives a count; order statistics are 0-based


def binomial_quantiles(n: int, q: float) -> tuple[int, int]:
    """``scipy.stats.binom(n, 0.5)``'s ``ppf(q)`` and ``isf(q)`` for ``0 < q <= 0.5``: the smallest
    count whose CDF is at least ``q`` and the smallest whose survival function is at most ``q``.
    Exact: ``2**n`` times the CDF is a sum of binomial coefficients, compared in integers with
    ``q * 2**n`` (``q``'s exact ratio); by symmetry the survival function past ``k`` is the CDF at
    ``n - k - 1``. Where a CDF equals ``q`` exactly (0.5 at odd ``n``) this counts the tie, which
    SciPy's floating evaluation may put on either side. No SciPy: see the module docstring."""
    if not 0 < q <= 0.5:
        raise ValueError(f"q must be in (0, 0.5], not {q}")
    num, den = float(q).as_integer_ratio()
    target = num << n  # CDF(k) >= q  <=>  den * 2**n * CDF(k) >= num * 2**n
    coef, total, k, at_most = 1, 0, 0, -1  # C(n, k), 2**n CDF(k), k, the last k with CDF(k) <= q
    while True:
        total += coef
        if total * den <= target:
            at_most = k
        if total * den >= target:
            return k, n - 1 - at_most
        coef = coef * (n - k) // (k + 1)
        k += 1


def median_ci(samples: Sequence[float] | np.ndarray, confidence: float = 0.95,
              tau: float | None = None) -> tuple[float, float]:
    """CI of the median from binomial order statistics at the effective sample size ``n / tau``
    (``tau`` defaults to :func:`autocorrelation_time` of the samples in their order; pass 1 for
    samples known to be independent). NaN when the effective size is under 6."""
    raw = np.asarray(samples, dtype=float)
    n = raw.size
    t = autocorrelation_time(raw) if tau is None else max(float(tau), 1.0)
    m = int(n / t)
    if m < 6:
        return float("nan"), float("nan")
    x = np.sort(raw)
    lo_m, hi_m = _order_statistics(m, confidence)
    # order statistic k of m estimates the quantile k/(m+1): the same quantile of n is k(n+1)/(m+1)
    scale = (n + 1) / (m + 1)
    lo = max(int(math.floor((lo_m + 1) * scale)) - 1, 0)
    hi = min(int(math.ceil((hi_m + 1) * scale)) - 1, n - 1)
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


def relative_ci_halfwidth(samples: Sequence[float] | np.ndarray, confidence: float = 0.95) -> float:
    """Half-width of the median's CI relative to the median (inf when not yet defined)."""
    lo, hi = median_ci(samples, confidence)
    med = float(np.median(samples)) if len(samples) else 0.0
    if math.isnan(lo) or med == 0:
        return math.inf
    return (hi - lo) / 2 / abs(med)


def proportion_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (accuracy on n examples)."""
    if n == 0:
        return float("nan"), float("nan")
    # binomtest(successes, n).proportion_ci(confidence, method="wilson") (Newcombe 1998), as SciPy writes it
    k, n = int(successes), int(n)
    if not 0 <= k <= n:
        raise ValueError(f"successes ({k}) must be between 0 and n ({n})")
    p = k / n
    z = NormalDist().inv_cdf(0.5 + 0.5 * confidence)  # no SciPy: see the module docstring
    denom = 2 * (n + z**2)
    center = (2 * n * p + z**2) / denom
    delta = z / denom * math.sqrt(4 * n * p * (1 - p) + z**2)
    return (0.0 if k == 0 else center - delta), (1.0 if k == n else center + delta)
