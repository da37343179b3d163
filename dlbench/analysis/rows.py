"""Rows of a comparison: one (cell, measurement or metric) each, with its test and verdict.

See :mod:`dlbench.analysis.compare` for the rules; this module builds single rows and decides them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dlbench.analysis.effects import (
    paired_proportion_effect,
    process_effect,
    ratio_effect,
    two_proportion_effect,
)
from dlbench.analysis.thresholds import Thresholds
from dlbench.result import FLAGS, Measurement, Result

NAN = float("nan")

_FRACTION_METRICS = {"accuracy", "macro_f1", "micro_f1", "f1", "precision", "recall", "auc",
                     "hr", "ndcg", "map", "mrr", "r2", "top1", "top5"}
_ERROR_METRICS = {"rmse", "mae", "mse", "loss", "error_rate", "wer", "cer"}
_NOT_COMPARED = {"n_test"}
# Flags that say a figure may be biased (not just imprecise): its row is never ``unchanged``.
# ``not_converged`` only widens the CI (still honest), ``repeats_disagree`` is covered by a
# process-level test's between-process CI; any other or unknown flag counts as a bias.
_PRECISION_FLAGS = {"not_converged", "repeats_disagree"}
_FLAG_TEXT = {"not_converged": "not converged (CI target not reached)",
              "drifting": "drifting (step change among its windows)",
              "inconsistent": "inconsistent (throughput and batch-1 latency disagree)",
              "repeats_disagree": "repeats disagree (process medians differ beyond their "
                                  "within-process spread)"}


def metric_direction(name: str) -> tuple[bool, str] | None:
    """(higher_is_better, scale) of a task metric: scale ``points`` (absolute, for values in
    [0, 1]) or ``ratio`` (relative, error metrics); None for metrics that are not compared."""
    base = name.split("@", 1)[0].lower()
    if name in _NOT_COMPARED or is_memory_metric(name):
        return None
    if base in _FRACTION_METRICS or base.endswith("accuracy") or base.endswith("_f1"):
        return True, "points"
    if base in _ERROR_METRICS or base.endswith(("_rmse", "_mae", "_loss", "_error")):
        return False, "ratio"
    return None


def is_memory_metric(name: str) -> bool:
    return name.startswith("peak_") and name.endswith("memory_mb")


@dataclass
class CellComparison:
    """One row. Speed/memory/error rows use the ratio scale (``ratio``, ``ci_low``, ``ci_high``:
    head/base, HL estimate and its 95% CI for speed); fraction metrics use the points scale
    (``delta``, ``delta_ci_low``, ``delta_ci_high``: head - base)."""

    key: str
    name: str
    kind: str  # speed | accuracy | metric | memory | canary | cell
    verdict: str = ""
    reason: str = ""
    unit: str = ""
    higher_is_better: bool = True
    scale: str = "ratio"  # ratio | points | none
    base_median: float = NAN
    head_median: float = NAN
    ratio: float = NAN
    ci_low: float = NAN
    ci_high: float = NAN
    delta: float = NAN
    delta_ci_low: float = NAN
    delta_ci_high: float = NAN
    p_value: float = NAN
    q_value: float = NAN
    n_base: int = 0
    n_head: int = 0
    method: str = ""
    threshold: float = NAN
    alpha: float = 0.05
    gated: bool = True
    drift: float = 1.0
    level: str = ""  # speed rows: "windows" (raw samples of one process) or "processes"
    flags: list[str] = field(default_factory=list)  # "side flag", e.g. "head contended"
    flag_reasons: list[str] = field(default_factory=list)  # "head contended (31% run-queue wait)"

    @property
    def change(self) -> float:
        """Relative change (ratio - 1) on the ratio scale, absolute delta on the points scale."""
        return self.delta if self.scale == "points" else self.ratio - 1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "change": self.change}


def finite(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _median(m: Measurement) -> float:
    if m.samples:
        return float(np.median(m.samples))
    return m.stats.median if m.stats else NAN


def process_medians(m: Measurement) -> list[float]:
    """One median per fresh process (``meta["process_medians"]``, process repeats), else the
    median of the samples as the one process's (empty without samples)."""
    pm = m.meta.get("process_medians")
    if isinstance(pm, (list, tuple)) and pm:
        return [float(v) for v in pm]
    return [float(np.median(m.samples))] if m.samples else []


def figure_flags(side: str, m: Measurement) -> list[tuple[str, str]]:
    """(flag, reason) of each warning on a figure, e.g. ("contended", "head contended (31%
    run-queue wait)")."""
    out = []
    for f in m.flags:
        if f == "contended":
            c = m.meta.get("contention")
            text = (f"contended ({c:.0%} run-queue wait)" if finite(c) else "contended")
        else:
            text = _FLAG_TEXT.get(f, f.replace("_", " ") if f in FLAGS else f"flagged {f!r}")
        out.append((f, f"{side} {text}"))
    return out


def speed_row(key: str, mb: Measurement, mh: Measurement, th: Thresholds,
              factor: float) -> CellComparison:
    """A speed row: process-level test when either side has process repeats (both need one
    process at least), else the autocorrelation-aware rank test on raw windows; flags carried."""
    def corrected(v: np.ndarray) -> np.ndarray:
        if factor == 1.0:
            return v
        return v / factor if mh.higher_is_better else v * factor

    pb, ph = process_medians(mb), process_medians(mh)
    if pb and ph and max(len(pb), len(ph)) >= 2:
        e = process_effect(pb, corrected(np.asarray(ph)), th.alpha)
        level, med_b, med_h = "processes", float(np.median(pb)), float(np.median(ph))
    else:
        e = ratio_effect(mb.samples, corrected(np.asarray(mh.samples, dtype=float)), th.alpha)
        level, med_b, med_h = "windows", _median(mb), _median(mh)
    flags = figure_flags("base", mb) + figure_flags("head", mh)
    return CellComparison(
        key, mh.name, "speed", unit=mh.unit, higher_is_better=mh.higher_is_better,
        base_median=med_b, head_median=med_h, ratio=e.estimate, ci_low=e.ci_low,
        ci_high=e.ci_high, p_value=e.p_value, n_base=e.n_base, n_head=e.n_head, method=e.method,
        threshold=th.min_effect, alpha=th.alpha, drift=factor, level=level,
        flags=[f"{r.split(' ', 1)[0]} {f}" for f, r in flags], flag_reasons=[r for _, r in flags],
        # one sample per run in both runs can never be tested: report it, never gate on it
        gated=mh.name not in th.informational and max(len(mb.samples), len(mh.samples)) > 1)


def accuracy_row(key: str, rb: Result, rh: Result, th: Thresholds) -> CellComparison | None:
    tb, tc = rb.measurement("test_correct"), rh.measurement("test_correct")
    ab, ah = rb.metrics.get("accuracy"), rh.metrics.get("accuracy")
    if tb is not None and tc is not None and tb.samples and tc.samples:
        if len(tb.samples) == len(tc.samples):
            e = paired_proportion_effect(tb.samples, tc.samples, th.alpha)
        else:
            e = two_proportion_effect(int(np.sum(tb.samples)), len(tb.samples),
                                      int(np.sum(tc.samples)), len(tc.samples), th.alpha)
        ab = float(np.mean(tb.samples)) if ab is None else ab
        ah = float(np.mean(tc.samples)) if ah is None else ah
    elif ab is not None and ah is not None and rb.metrics.get("n_test") and rh.metrics.get(
            "n_test"):
        nb, nh = int(rb.metrics["n_test"]), int(rh.metrics["n_test"])
        e = two_proportion_effect(round(ab * nb), nb, round(ah * nh), nh, th.alpha)
    elif ab is not None and ah is not None:
        return scalar_row(key, "accuracy", ab, ah, th, True, "points", kind="accuracy")
    else:
        return None
    return CellComparison(
        key, "accuracy", "accuracy", unit="fraction", scale="points", base_median=ab,
        head_median=ah, ratio=ah / ab if ab else NAN, delta=e.estimate, delta_ci_low=e.ci_low,
        delta_ci_high=e.ci_high, p_value=e.p_value, n_base=e.n_base, n_head=e.n_head,
        method=e.method, threshold=th.accuracy_drop, alpha=th.alpha)


def scalar_row(key: str, name: str, vb: float, vh: float, th: Thresholds, higher: bool,
                scale: str, kind: str = "metric") -> CellComparison:
    """One value per run, no samples: the threshold rule alone (no test, no q-value)."""
    row = CellComparison(key, name, kind, higher_is_better=higher, scale=scale, base_median=vb,
                         head_median=vh, ratio=vh / vb if vb else NAN, delta=vh - vb, n_base=1,
                         n_head=1, method="threshold rule (one value per run)", alpha=th.alpha)
    if scale == "points":
        row.threshold = th.accuracy_drop
        bad = (vb - vh) if higher else (vh - vb)
    else:
        row.threshold = th.error_increase
        r = row.ratio if math.isfinite(row.ratio) else 1.0
        bad = (1 / r - 1 if higher else r - 1) if r > 0 else math.inf
    return _threshold_verdict(row, bad)


def memory_row(key: str, name: str, vb: float, vh: float, th: Thresholds) -> CellComparison:
    row = CellComparison(key, name, "memory", unit="MB", higher_is_better=False, base_median=vb,
                         head_median=vh, ratio=vh / vb if vb else NAN, delta=vh - vb, n_base=1,
                         n_head=1, method="limit and increase rule", threshold=th.memory_increase,
                         alpha=th.alpha)
    if th.memory_limit_mb is not None and vh > th.memory_limit_mb:
        row.verdict = "regression"
        row.reason = f"{vh:.0f} MB exceeds the limit of {th.memory_limit_mb:.0f} MB"
    elif vh > vb * (1 + th.memory_increase) and vh - vb > th.memory_floor_mb:
        row.verdict, row.reason = "regression", f"grew {vh - vb:+.0f} MB ({_pct(row.ratio - 1)})"
    elif vb > vh * (1 + th.memory_increase) and vb - vh > th.memory_floor_mb:
        row.verdict, row.reason = "improvement", f"shrank {vh - vb:+.0f} MB ({_pct(row.ratio - 1)})"
    else:
        row.verdict = "unchanged"
        row.reason = (f"{vh - vb:+.0f} MB, within {th.memory_increase:.0%} / "
                      f"{th.memory_floor_mb:.0f} MB")
    return row


def _threshold_verdict(row: CellComparison, bad: float) -> CellComparison:
    t = row.threshold
    change = _fmt_change(row)
    if bad > t:
        row.verdict, row.reason = "regression", f"{change}: worse than the {_th(row)} threshold"
    elif bad < -t:
        row.verdict, row.reason = "improvement", f"{change}: better by more than {_th(row)}"
    else:
        row.verdict, row.reason = "unchanged", f"{change}: within {_th(row)}"
    row.reason += " (no samples: no test)"
    return row


def decide_row(row: CellComparison) -> None:
    """Verdict of a tested row (speed, accuracy) from its q-value (p-value when not in the family),
    effect and CI; see the module docstring."""
    level = row.q_value if math.isfinite(row.q_value) else row.p_value
    t = row.threshold
    if row.scale == "points":
        sign = 1 if row.higher_is_better else -1
        est, lo, hi = sign * row.delta, sign * row.delta_ci_low, sign * row.delta_ci_high
        if sign < 0:
            lo, hi = hi, lo
        bad, good = est < -t, est > t
        inside = -t <= lo and hi <= t
    else:
        inv = row.higher_is_better  # slowdown factor s = ratio (time-like) or 1/ratio
        s = _inv(row.ratio) if inv else row.ratio
        s_lo, s_hi = (_inv(row.ci_high), _inv(row.ci_low)) if inv else (row.ci_low, row.ci_high)
        bad, good = s > 1 + t, s < 1 / (1 + t)
        inside = 1 / (1 + t) <= s_lo and s_hi <= 1 + t
    change = _fmt_change(row)
    qtext = "q" if math.isfinite(row.q_value) else "p"
    sig = math.isfinite(level) and level < row.alpha
    if sig and bad:
        row.verdict = "regression"
        row.reason = f"{change}, {qtext}={level:.2g} < {row.alpha:g}; beyond {_th(row)}"
    elif sig and good:
        row.verdict = "improvement"
        row.reason = f"{change}, {qtext}={level:.2g} < {row.alpha:g}; beyond {_th(row)}"
    elif inside:
        row.verdict, row.reason = "unchanged", f"{change}: 95% CI within +-{_th(row)}"
    else:
        row.verdict = "inconclusive"
        if row.n_base < 2 or row.n_head < 2 or not math.isfinite(level):
            why = f"too few samples ({row.n_base} vs {row.n_head})"
        elif sig:
            why = f"significant but the CI reaches beyond +-{_th(row)}"
        else:
            why = f"{qtext}={level:.2g} and the CI reaches beyond +-{_th(row)}"
        row.reason = f"{change}: {why}"
    if row.flag_reasons:
        _flagged_verdict(row, qtext, level)
    if row.drift != 1.0:
        row.reason += f" (corrected for machine drift x{row.drift:.3f})"


def _flagged_verdict(row: CellComparison, qtext: str, level: float) -> None:
    """A flagged figure never gates as regression or improvement; it is ``unchanged`` only when
    every flag leaves the CI honest (see :data:`_PRECISION_FLAGS`)."""
    why = "; ".join(row.flag_reasons)
    names = {f.split(" ", 1)[1] for f in row.flags}
    honest_ci = names <= _PRECISION_FLAGS and (
        "repeats_disagree" not in names or row.level == "processes")
    tentative = row.verdict
    if tentative == "unchanged" and honest_ci:
        row.reason += f" (despite: {why})"
        return
    row.verdict = "inconclusive"
    change = _fmt_change(row)
    if tentative in ("regression", "improvement"):
        row.reason = (f"{change}: {why}; unflagged this would be a {tentative} "
                      f"({qtext}={level:.2g}), a flagged figure never is")
    elif tentative == "unchanged":
        row.reason = (f"{change}: {why}; the 95% CI is within +-{_th(row)} but a biased figure "
                      "cannot show the absence of a change")
    else:
        row.reason += f"; {why}"


def _inv(x: float) -> float:
    return math.inf if x == 0 else 1 / x


def _pct(x: float) -> str:
    return f"{x:+.1%}" if math.isfinite(x) else "n/a"


def _th(row: CellComparison) -> str:
    return f"{row.threshold:.3g} points" if row.scale == "points" else f"{row.threshold:.1%}"


def _fmt_change(row: CellComparison) -> str:
    if row.scale == "points":
        ci = ""
        if math.isfinite(row.delta_ci_low):
            ci = f" (95% CI {row.delta_ci_low:+.4f} .. {row.delta_ci_high:+.4f})"
        return f"{row.name} {row.delta:+.4f}{ci}"
    ci = ""
    if math.isfinite(row.ci_low) and math.isfinite(row.ci_high):
        ci = f" (95% CI {_pct(row.ci_low - 1)} .. {_pct(row.ci_high - 1)})"
    return f"{row.name} {_pct(row.ratio - 1)}{ci}"
