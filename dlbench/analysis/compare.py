"""Statistical comparison of two runs, cell by cell (``dlbench compare`` and ``dlbench gate``).

Rows: one per (cell, measurement or metric). Every row gets a verdict:

* speed measurements (throughput, latency, first_call, any Measurement with raw samples), tested
  at the level of independent replicates (see :mod:`dlbench.analysis.effects`):

  - **process level** when either side has process repeats (``meta["process_medians"]``, one
    median per fresh process; a side without them counts as one process, the median of its
    samples) and each side has at least one process: Welch's t on the log process medians; the
    effect is the ratio of the geometric means of the process medians with Welch's t CI (the
    Base/Head columns show the medians of the process medians). Windows of one process share its
    thread placement, clock and neighbours, so only fresh processes are independent; pooling
    their windows into one rank test treats hundreds of autocorrelated windows as independent
    and turns a between-process difference into "regression, q=5e-09". 3 vs 3 processes find a
    consistent 20% change; 2 vs 2 (t with ~1-2 df) rarely prove anything, and say so;
  - **window level** with one process on each side: Mann-Whitney U on raw windows with the
    Hodges-Lehmann ratio and its Moses CI, made autocorrelation-aware: each side's effective
    sample size (AR(1) on the windows' ranks) inflates the variance of U and sets the t
    degrees of freedom, so a slow stretch of consecutive windows is not counted as many
    independent observations. Such a test still cannot see between-process variance: it
    says whether *these two processes* differ. Simulated (``tests/test_gate_ground_truth.py``):
    with a 3% between-process spread, one process per side gives "significant" in ~40% of
    identical trials and gate alarms in ~13% at the 5% threshold; 3 vs 3 processes keep the
    test at ~4% and alarms under 1%, with ~99% power at a 20% slowdown. Use ``repeats: 3``
    where a verdict matters;

  measurements named in ``Thresholds.informational`` (first_call) and those with a single sample
  in both runs are reported but never gate;
* accuracy: exact McNemar on per-example ``test_correct`` samples when both runs have them for the
  same test set (paired), Fisher's exact test on correct counts when the test sets differ or only
  ``accuracy`` and ``n_test`` metrics exist (unpaired), else the threshold rule alone;
* other task metrics (macro_f1, hr@10, robust_accuracy@..., rmse, mae): threshold rule (one value
  per run, no samples: no test);
* peak memory metrics: fixed limit and relative+absolute increase rule.

p-values of all gated rows form one family; Benjamini-Hochberg q-values control the false
discovery rate at ``alpha``. Verdict of a tested row: q < alpha and effect beyond the threshold in
the bad direction -> ``regression`` (good direction -> ``improvement``); the 95% CI entirely inside
the +-threshold band -> ``unchanged``; otherwise ``inconclusive`` (too noisy, too few samples, or
a significant change smaller than the threshold with a CI that still reaches beyond it).

Flagged figures (``Measurement.flags``, see :data:`dlbench.result.FLAGS`) cannot lie: a speed row
whose base or head figure is flagged ``contended``, ``not_converged``, ``drifting``,
``inconsistent`` or ``repeats_disagree`` is never ``regression`` or ``improvement``; it is
``inconclusive`` and its reason names each flag and side ("head contended (31% run-queue wait);
unflagged this would be a regression (q=0.002), a flagged figure never is"). It may still be
``unchanged``, but only when the CI argument survives the flag: ``not_converged`` (the CI is
wider than targeted, its coverage holds) and ``repeats_disagree`` on a process-level row (the
between-process spread is in Welch's CI). ``contended``, ``drifting``, ``inconsistent`` (and any
unknown flag) mean the figure itself may be biased: a CI inside the band around a biased figure
proves nothing, so such rows are ``inconclusive`` even then. Unflagged rows follow the rules
above. A flagged row's p-value is not a valid one (a contended figure's "difference" is the
neighbours'), so it is left out of the Benjamini-Hochberg family (a fake tiny p-value there would
lower the other rows' q-values); the row's reason quotes it as a p-value.

Cell-level verdicts: ``missing`` (in base only, or skipped in head), ``new`` (in head only, or the
baseline cell did not succeed), ``failed`` (head cell failed, crashed or timed out), ``skipped``.

Machine drift: when both runs hold an ``ok`` cell of scenario ``canary`` (a fixed NumPy matmul,
:func:`dlbench.measure.canary.canary_workload`), its head/base throughput ratio ``d`` estimates
how much faster the head machine is, with a 95% CI (the window-level test above), reported in
the summary. With ``Thresholds.drift_correction`` on, when ``d`` differs from 1 significantly
(p < alpha), by more than ``drift_tolerance`` and by at most ``drift_max``, head samples of CPU
speed cells are divided by ``d`` (throughput-like, higher is better) or multiplied by ``d``
(time-like) before testing: a uniformly slower machine is not reported as a regression of every
cell. The correction is used only when the canary figure on both sides is unflagged: a contended
canary measures the neighbours, not the machine, so its drift is reported and ignored (the
summary says why). Canary rows never gate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from dlbench.analysis.effects import Effect, benjamini_hochberg, ratio_effect
from dlbench.analysis.envdiff import environment_diff
from dlbench.analysis.rows import (
    CellComparison,
    accuracy_row,
    decide_row,
    figure_flags,
    finite,
    is_memory_metric,
    memory_row,
    metric_direction,
    scalar_row,
    speed_row,
)
from dlbench.analysis.thresholds import Thresholds, matches
from dlbench.result import Measurement, Result

__all__ = ["CANARY_SCENARIO", "CellComparison", "Comparison", "Drift", "Thresholds",
           "compare_runs", "environment_diff", "matches", "metric_direction", "VERDICTS"]

CANARY_SCENARIO = "canary"
BAD_STATUSES = ("failed", "crashed", "timeout")
# Worst first; worst_verdict picks the earliest present among gated rows.
VERDICTS = ("regression", "failed", "missing", "inconclusive", "improvement", "unchanged", "new",
            "skipped")


@dataclass
class Drift:
    """Machine drift from the canary cell: ``ratio`` head/base canary throughput (>1: the head
    machine is faster) with its 95% CI; ``applied`` is the factor used for correction (1.0 when not
    applied); ``ignored`` names the canary's flags when it is flagged (then it is never used for a
    correction), empty otherwise."""

    key: str
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    applied: float
    ignored: str = ""
    why_not: str = ""
    """Why it was not applied, when it was not (the first that holds): ``ignored: <flags>`` (a
    flagged canary), else ``not corrected: <why>`` (the correction is off, the drift is not
    significant, within ``drift_tolerance`` or beyond ``drift_max``)."""

    def describe(self) -> str:
        """``x0.870 (95% CI 0.851..0.889, p=1e-05), corrected`` and the like."""
        ci = (f"95% CI {self.ci_low:.3f}..{self.ci_high:.3f}, "
              if math.isfinite(self.ci_low) and math.isfinite(self.ci_high) else "")
        text = f"x{self.ratio:.3f} ({ci}p={self.p_value:.2g})"
        if self.applied != 1.0:
            return f"{text}, corrected"
        return f"{text}, {self.why_not or 'not corrected'}"

@dataclass
class Comparison:
    rows: list[CellComparison]
    thresholds: Thresholds
    drift: Drift | None = None
    environment: list[str] = field(default_factory=list)
    base_results: dict[str, Result] = field(default_factory=dict, repr=False)
    head_results: dict[str, Result] = field(default_factory=dict, repr=False)

    @property
    def gated_rows(self) -> list[CellComparison]:
        return [r for r in self.rows if r.gated]

    @property
    def worst_verdict(self) -> str:
        present = {r.verdict for r in self.gated_rows}
        return next((v for v in VERDICTS if v in present), "unchanged")

    def keys_with(self, verdict: str) -> list[str]:
        """Cell keys with at least one gated row of this verdict, in row order."""
        return list(dict.fromkeys(r.key for r in self.gated_rows if r.verdict == verdict))

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for r in self.gated_rows:
            out[r.verdict] += 1
        return out

    def summary(self) -> str:
        c = self.counts()
        parts = [f"{n} {v}" for v, n in c.items() if n]
        cells = len({r.key for r in self.rows})
        text = f"{cells} cells, {len(self.gated_rows)} gated rows: " + (", ".join(parts) or "none")
        if self.drift is not None:
            text += f"; machine drift {self.drift.describe()}"
        if self.environment:
            text += f"; {len(self.environment)} environment differences"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "worst_verdict": self.worst_verdict,
                "counts": self.counts(), "drift": asdict(self.drift) if self.drift else None,
                "environment": list(self.environment), "thresholds": asdict(self.thresholds),
                "rows": [r.to_dict() for r in self.rows]}


def compare_runs(base: Iterable[Result], head: Iterable[Result],
                 thresholds: Thresholds | None = None, *, base_env: dict[str, Any] | None = None,
                 head_env: dict[str, Any] | None = None) -> Comparison:
    """Compare two runs' results cell by cell (matched on ``cell.key``). Environments default to
    the first result's ``environment`` of each run."""
    th = thresholds or Thresholds()
    b, h = _index(base), _index(head)
    drift = _estimate_drift(b, h, th)
    rows: list[CellComparison] = []
    for key in list(b) + [k for k in h if k not in b]:
        rows.extend(_compare_cell(key, b.get(key), h.get(key), th.for_key(key), drift))
    # a flagged figure's p-value is not trusted: it stays out of the FDR family
    family = [r for r in rows if r.gated and math.isfinite(r.p_value) and not r.flags]
    for r, q in zip(family, benjamini_hochberg([r.p_value for r in family]), strict=True):
        r.q_value = q
    for r in rows:
        if not r.verdict:
            decide_row(r)
        if r.kind == "canary":
            r.reason = f"canary (machine drift, never gates): {r.reason}"
    env_a = base_env if base_env is not None else _first_env(b.values())
    env_b = head_env if head_env is not None else _first_env(h.values())
    return Comparison(rows, th, drift, environment_diff(env_a, env_b), b, h)


def _index(results: Iterable[Result]) -> dict[str, Result]:
    out: dict[str, Result] = {}
    for r in results:  # a later ok result of the same key (resumed run) wins over a failed one
        prev = out.get(r.cell.key)
        if prev is None or r.status == "ok" or prev.status != "ok":
            out[r.cell.key] = r
    return out


def _first_env(results: Iterable[Result]) -> dict[str, Any]:
    return next((r.environment for r in results if r.environment), {})


def _canary_measurement(r: Result) -> Measurement | None:
    for name in ("gflops", "throughput"):
        if (m := r.measurement(name)) is not None:
            return m
    return next((m for m in r.measurements if len(m.samples) > 1), None)


def _estimate_drift(b: dict[str, Result], h: dict[str, Result], th: Thresholds) -> Drift | None:
    for key, rb in b.items():
        rh = h.get(key)
        if rb.cell.scenario != CANARY_SCENARIO or rh is None:
            continue
        if rb.status != "ok" or rh.status != "ok":
            continue
        mb, mh = _canary_measurement(rb), _canary_measurement(rh)
        if mb is None or mh is None:
            continue
        e = ratio_effect(mb.samples, mh.samples, th.alpha)
        if not mb.higher_is_better:  # a time-like canary: drift is the speed ratio
            e = Effect(1 / e.estimate, 1 / e.ci_high, 1 / e.ci_low, e.p_value, e.n_base,
                       e.n_head, e.method)
        flags = figure_flags("base canary", mb) + figure_flags("head canary", mh)
        ignored = "; ".join(r for _, r in flags)
        size = abs(math.log(e.estimate)) if e.estimate > 0 else math.inf
        why_not = next((why for why, holds in (
            (f"ignored: {ignored}", bool(flags)),
            ("not corrected: drift correction is off (the gate's drift_correction: true applies it)",
             not th.drift_correction),
            (f"not corrected: not significant (p={e.p_value:.2g} >= alpha {th.alpha:g})", not e.p_value < th.alpha),
            (f"not corrected: within drift_tolerance ({th.drift_tolerance:.0%})",
             size <= math.log1p(th.drift_tolerance)),
            (f"not corrected: beyond drift_max ({th.drift_max:.0%}), too large to divide out",
             size > math.log1p(th.drift_max)),
        ) if holds), "")
        return Drift(key, e.estimate, e.ci_low, e.ci_high, e.p_value, 1.0 if why_not else e.estimate,
                     ignored, why_not)
    return None


def _cell_row(key: str, verdict: str, reason: str) -> CellComparison:
    return CellComparison(key, "cell", "cell", verdict, reason, scale="none")


def _compare_cell(key: str, rb: Result | None, rh: Result | None, th: Thresholds,
                  drift: Drift | None) -> list[CellComparison]:
    if rh is None:
        return [_cell_row(key, "missing", "in the baseline only")]
    if rh.status in BAD_STATUSES:
        return [_cell_row(key, "failed", f"{rh.status}: {rh.error or 'no error text'}")]
    if rb is None:
        return [_cell_row(key, "new", "not in the baseline")]
    if rh.status != "ok":
        if rb.status == "ok":
            return [_cell_row(key, "missing", f"{rh.status} in head: {rh.error or ''}".strip())]
        return [_cell_row(key, "skipped", f"{rh.status} in both runs")]
    if rb.status != "ok":
        return [_cell_row(key, "new", f"baseline cell {rb.status}")]
    canary = rh.cell.scenario == CANARY_SCENARIO
    factor = 1.0
    if drift and not canary and rh.cell.device.startswith("cpu"):
        factor = drift.applied
    rows = []
    names = [m.name for m in rb.measurements]
    names += [m.name for m in rh.measurements if m.name not in names]
    for name in names:
        if name == "test_correct":
            continue
        mb, mh = rb.measurement(name), rh.measurement(name)
        if mb is None or mh is None:
            where = "head" if mh is None else "baseline"
            rows.append(CellComparison(key, name, "speed", "missing" if mh is None else "new",
                                       f"measurement absent in {where}", gated=False))
            continue
        row = speed_row(key, mb, mh, th, factor)
        if canary:
            row.kind, row.gated = "canary", False
        rows.append(row)
    acc = accuracy_row(key, rb, rh, th)
    if acc is not None:
        rows.append(acc)
    for name in rb.metrics:
        vb, vh = rb.metrics[name], rh.metrics.get(name, math.nan)
        if name == "accuracy" or not finite(vb) or not finite(vh):
            continue
        if is_memory_metric(name):
            rows.append(memory_row(key, name, float(vb), float(vh), th))
        elif (d := metric_direction(name)) is not None:
            rows.append(scalar_row(key, name, float(vb), float(vh), th, *d))
    if not rows:  # e.g. a parity cell with tables only: listed, never gating
        row = _cell_row(key, "skipped", "nothing comparable (no measurements or known metrics)")
        row.gated = False
        rows.append(row)
    return rows

