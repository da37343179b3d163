"""Process replicates: the ``repeats: k`` of a suite, merged into one Result per cell.

A cell with ``repeats: k`` runs in k fresh processes; the store keeps each process's Result as
its own row (``details["repeat"]``, ``details["repeats"]``). Everything that reads a run for
comparison, reports or pandas reads the merged results: :meth:`dlbench.store.database.Store.results`
returns :func:`combine_results` of the stored rows by default (``combine=False`` gives the rows
of every process). That is the one way; nothing else merges repeats.

The merged Result of one cell (:func:`combine_repeats`):

* status ``ok`` when any repeat is ok (the others are counted in ``details``);
* each Measurement's samples are the ok repeats' samples, concatenated; its ``stats`` are
  :func:`dlbench.stats.summarize` of them, except the 95% CI of the median, which is a
  *between-process* interval: a t-interval on the log of the process medians (as asv and pyperf
  do), so a process-level effect (address-space layout, a thread pool that settled differently,
  a frequency state) widens the interval instead of hiding behind thousands of samples. It is
  never narrower than what the processes' own CIs imply;
* ``meta["process_medians"]``, ``meta["repeats"]`` (ok processes merged); ``meta["flags"]`` the
  union of the repeats' flags, plus ``repeats_disagree`` when a Cochran's Q test on the log
  medians (each weighted by its process's own standard error: its CI half-width / 1.96 on the
  log scale) rejects homogeneity at p < 0.01 *and* the medians spread by more than 2% of the
  median; ``meta["contention"]`` the max over repeats;
* per-example measurements (``test_correct``: one 0/1 sample per test example) are not
  concatenated (that would count each example k times in the paired test): the first ok
  repeat's are kept;
* metrics are the mean over ok repeats, with each repeat's values in
  ``details["repeat_metrics"]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import special

from dlbench.result import Measurement, Result
from dlbench.stats import summarize

DISAGREE_P = 0.01
DISAGREE_SPREAD = 0.02
CONFIDENCE = 0.95
PER_EXAMPLE = ("test_correct",)
"""Measurements holding one sample per test example (name or ``name@...``): never concatenated."""


def repeat_index(result: Result) -> int:
    """The 0-based repeat of a stored process row (0 for cells run once)."""
    try:
        return int(result.details.get("repeat", 0) or 0)
    except (TypeError, ValueError):
        return 0


def combine_results(results: Iterable[Result]) -> list[Result]:
    """Group a run's results by cell key (in order of first appearance) and merge every group of
    more than one result with :func:`combine_repeats`; single results pass unchanged."""
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.cell.key, []).append(r)
    return [g[0] if len(g) == 1 else combine_repeats(g) for g in groups.values()]


def combine_repeats(results: Sequence[Result]) -> Result:
    """Merge the process repeats of one cell into one Result (see the module docstring)."""
    if not results:
        raise ValueError("combine_repeats needs at least one result")
    if len(results) == 1:
        return results[0]
    rs = sorted(results, key=repeat_index)
    ok = [r for r in rs if r.status == "ok"]
    counts = {"repeats_run": len(rs), "repeats_ok": len(ok), "repeats_failed": len(rs) - len(ok),
              "repeat_statuses": [r.status for r in rs]}
    if not ok:  # nothing measured: the last repeat's failure stands for the cell
        last = rs[-1]
        details = {k: v for k, v in last.details.items() if k != "repeat"}
        return replace(last, details={**details, **counts})
    first = ok[0]
    details = {k: v for k, v in first.details.items() if k != "repeat"}
    details.update(counts)
    errors = [f"repeat {repeat_index(r)}: {r.status}: {r.error or ''}".rstrip(": ") for r in rs if r.status != "ok"]
    if errors:
        details["repeat_errors"] = errors
    metrics, per_repeat = _metrics(ok)
    if per_repeat:
        details["repeat_metrics"] = per_repeat
    names = list(dict.fromkeys(m.name for r in ok for m in r.measurements))
    measurements = [combine_measurements([m for r in ok if (m := r.measurement(n)) is not None])
                    for n in names]
    starts = [r.started_at for r in rs if r.started_at is not None]
    durations = [r.duration for r in rs if r.duration is not None]
    return Result(first.cell, "ok", measurements, metrics, dict(first.series), details, first.model,
                  dict(first.environment), None, first.log_tail, min(starts) if starts else None,
                  float(sum(durations)) if durations else None)


def combine_measurements(ms: Sequence[Measurement]) -> Measurement:
    """One Measurement from the same measurement of several processes."""
    if len(ms) == 1:
        return ms[0]
    first = ms[0]
    meta = _meta(ms)
    if _per_example(first.name):
        meta["repeats"] = len(ms)
        return Measurement(first.name, first.unit, list(first.samples), first.stats,
                           first.higher_is_better, meta)
    samples = [float(x) for m in ms for x in m.samples]
    medians = [_median(m) for m in ms]
    medians = [x for x in medians if math.isfinite(x)]
    stats = summarize(samples)
    lo, hi = between_process_ci(medians, [_log_se(m) for m in ms])
    if math.isfinite(lo):
        stats = replace(stats, ci_low=lo, ci_high=hi)
    meta["process_medians"] = medians
    meta["repeats"] = len(ms)
    p, spread = heterogeneity(ms)
    meta["repeats_p"] = p
    meta["repeats_spread"] = spread
    out = Measurement(first.name, first.unit, samples, stats, first.higher_is_better, meta)
    if math.isfinite(p) and p < DISAGREE_P and spread > DISAGREE_SPREAD:
        out.flag("repeats_disagree")
    return out


def between_process_ci(medians: Sequence[float], log_ses: Sequence[float] | None = None,
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
    """t-interval of the centre of the process medians, on the log scale (NaN for fewer than 2).

    Its half-width is at least the one the processes' own standard errors imply
    (``z * sqrt(mean(se_i^2) / k)``), so k processes that happen to agree closely do not claim
    more precision than their samples hold. Non-positive medians use the linear scale."""
    x = np.asarray([m for m in medians if math.isfinite(m)], dtype=float)
    k = len(x)
    if k < 2:
        return math.nan, math.nan
    log = bool(np.all(x > 0))
    y = np.log(x) if log else x
    centre = float(y.mean())
    t = float(special.stdtrit(k - 1, 0.5 + confidence / 2))  # Student's t quantile
    half = t * float(y.std(ddof=1)) / math.sqrt(k)
    ses = [s for s in (log_ses or []) if math.isfinite(s) and s > 0]
    if log and ses:
        z = float(special.ndtri(0.5 + confidence / 2))  # normal quantile
        half = max(half, z * math.sqrt(float(np.mean(np.square(ses))) / k))
    if log:
        return math.exp(centre - half), math.exp(centre + half)
    return centre - half, centre + half


def heterogeneity(ms: Sequence[Measurement]) -> tuple[float, float]:
    """Cochran's Q test on the processes' log medians: (p-value, spread of the medians relative
    to their median). p is NaN when fewer than two processes have a usable standard error."""
    pairs = [(_median(m), _log_se(m)) for m in ms]
    pairs = [(med, se) for med, se in pairs if math.isfinite(med) and med > 0 and math.isfinite(se)]
    meds = [med for med, _ in pairs]
    if len(pairs) < 2:
        return math.nan, 0.0
    centre = float(np.median(meds))
    spread = (max(meds) - min(meds)) / centre if centre > 0 else 0.0
    y = np.log(meds)
    floor = 1e-9  # a process with identical samples has se 0: any difference is then significant
    w = 1.0 / np.square(np.maximum([se for _, se in pairs], floor))
    theta = float(np.sum(w * y) / np.sum(w))
    q = float(np.sum(w * np.square(y - theta)))
    return float(special.chdtrc(len(pairs) - 1, q)), float(spread)  # chi-squared upper tail


# ------------------------------------------------------------------------------------------------


def _per_example(name: str) -> bool:
    return name.split("@", 1)[0] in PER_EXAMPLE


def _median(m: Measurement) -> float:
    if m.stats is not None and math.isfinite(m.stats.median):
        return float(m.stats.median)
    return float(np.median(m.samples)) if m.samples else math.nan


def _log_se(m: Measurement) -> float:
    """A process's standard error of its log median: its 95% CI half-width / 1.96 on the log
    scale; from the samples (std of logs / sqrt n) when the CI is undefined (n < 6)."""
    s = m.stats
    if s is not None and s.ci_low > 0 and s.ci_high > 0 and math.isfinite(s.ci_low) and math.isfinite(s.ci_high):
        return (math.log(s.ci_high) - math.log(s.ci_low)) / 2 / 1.96
    x = np.asarray(m.samples, dtype=float)
    if len(x) >= 2 and np.all(x > 0):
        return float(np.log(x).std(ddof=1) / math.sqrt(len(x)))
    return math.nan


def _meta(ms: Sequence[Measurement]) -> dict[str, Any]:
    meta: dict[str, Any] = {k: v for k, v in ms[0].meta.items() if k != "flags"}
    flags = list(dict.fromkeys(f for m in ms for f in m.flags))
    if flags:
        meta["flags"] = flags
    contention = [float(c) for m in ms if isinstance(c := m.meta.get("contention"), (int, float))
                  and not isinstance(c, bool)]
    if contention:
        meta["contention"] = max(contention)
    return meta


def _metrics(ok: Sequence[Result]) -> tuple[dict[str, float], dict[str, list[float]]]:
    names = list(dict.fromkeys(k for r in ok for k in r.metrics))
    per = {n: [float(r.metrics[n]) for r in ok if n in r.metrics] for n in names}
    mean = {}
    for n, vals in per.items():
        finite = [v for v in vals if math.isfinite(v)]
        mean[n] = float(np.mean(finite)) if finite else math.nan
    return mean, (per if len(ok) > 1 else {})
