"""The gradient-masking audit: sanity checks that tell real robustness from broken gradients.

A model that hides its gradients (a non-differentiable input quantisation, saturated
softmax, stochastic outputs) makes gradient attacks fail and *looks* robust. Athalye, Carlini &
Wagner (ICML 2018) and Carlini et al. ("On evaluating adversarial robustness", 2019) list the
symptoms; each check here tests one and reports pass/fail with its evidence:

* ``monotone_in_epsilon``: no attack's metric improves on its value at any smaller epsilon
  (tolerance: one example; the random-noise baseline is exempt, noise may help a model);
* ``pgd_stronger_than_fgsm``: per example, PGD breaks what FGSM breaks (at most 1% exceptions;
  continuous metrics such as RMSE: PGD's is never over 1% better than FGSM's);
* ``large_epsilon_reaches_chance``: PGD at a very large budget brings the metric to what a
  model that ignores its input achieves (majority class; random scores for ranking; a constant
  for ratings): the 95% CI must reach that level;
* ``blackbox_and_noise_below_whitebox``: neither the black-box attack (on its subset) nor random
  noise does better than the strongest white-box attack on the same examples (tolerance: one);
* ``pgd_converged``: doubling PGD's steps (same step size) moves the metric by under 1 point
  (0.01; by at most one example on sets of 100 or fewer, where one example is a point or more);
* ``gradients_nonzero_finite``: no example has an all-zero or non-finite loss gradient;
* ``outputs_logits_deterministic``: outputs are logits (not probabilities) and two passes over
  the same inputs agree.

A check that could not run has ``passed=None``: ``needs`` names the attacks whose absence from
the attack list stopped it (``fgsm``, ``noise``...), or it is empty when nothing the suite can add
would make it run (no input gradients: classic baselines; no attack target).

:func:`verdict` sums the checks up in three values, never counting a check that did not run as
a pass: ``passed`` (every check ran and passed), ``failed`` (a check found evidence of masking)
and ``insufficient`` (a check could not run, or PGD had not converged: its message names the
attacks to add or the budget to raise). ``pgd_converged`` failing is about the attack's budget,
not masking (:data:`BUDGET_CHECKS`): the scenario escalates PGD's steps first (see
:mod:`dlbench.scenarios.robustness`), and a check still failing at the cap makes the verdict
``insufficient``, never ``failed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

VERDICTS = ("passed", "failed", "insufficient")
BUDGET_CHECKS = frozenset({"pgd_converged"})
"""Checks whose failure says the attack's budget was too small, not that gradients are masked."""


@dataclass
class Check:
    check: str
    passed: bool | None
    evidence: str
    needs: tuple[str, ...] = ()
    """With ``passed=None``: the attacks to add to the attack list for the check to run."""

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "needs": list(self.needs)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Check:
        p = d.get("passed")
        return cls(
            str(d.get("check", "")),
            None if p is None else bool(p),
            str(d.get("evidence", "")),
            tuple(str(n) for n in d.get("needs") or ()),
        )


@dataclass(frozen=True)
class Verdict:
    """The audit's one word on a cell (:data:`VERDICTS`) with why: ``ran`` of ``total`` checks
    ran; ``failed`` names the checks that found masking, ``missing`` the attacks to add."""

    verdict: str
    message: str
    ran: int
    total: int
    failed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    @property
    def ran_text(self) -> str:
        return f"{self.ran} of {self.total} checks ran"

    def to_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "failed": list(self.failed),
            "missing": list(self.missing),
            "warnings": list(self.warnings),
        }


def _names(items: Sequence[str]) -> str:
    quoted = [f"`{i}`" for i in items]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


@dataclass
class Run:
    """One attack at one epsilon: metric on its examples and per-unit scores."""

    attack: str
    kind: str
    epsilon: float
    metric: float
    ci_low: float
    ci_high: float
    per_unit: np.ndarray | None
    units: np.ndarray
    """Evaluation units (indices) the run covers."""
    time_s: float = 0.0
    success_rate: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _worse(a: float, b: float, hib: bool) -> bool:
    """``a`` is strictly worse than ``b``."""
    return a < b if hib else a > b


def monotone(runs: Sequence[Run], hib: bool, gradients: bool = True) -> Check:
    attacks = sorted({r.attack for r in runs if r.kind != "baseline"})
    bad = []
    for attack in attacks:
        pts = sorted((r for r in runs if r.attack == attack), key=lambda r: r.epsilon)
        tol = 1.0 / max(len(pts[0].units), 1)
        best = pts[0]  # the worst metric seen at a smaller epsilon
        for b in pts[1:]:
            gain = (b.metric - best.metric) if hib else (best.metric - b.metric)
            if gain > tol + 1e-12:
                bad.append(
                    f"{attack}: {_fmt(best.metric)} at eps {best.epsilon:g} -> "
                    f"{_fmt(b.metric)} at {b.epsilon:g}"
                )
            if _worse(b.metric, best.metric, hib):
                best = b
    if bad:
        return Check(
            "monotone_in_epsilon", False, "metric improves as epsilon grows: " + "; ".join(bad)
        )
    if not attacks:
        return Check(
            "monotone_in_epsilon", None, "no attack ran", ("pgd",) if gradients else ("square",)
        )
    return Check(
        "monotone_in_epsilon",
        True,
        f"no attack's metric improves with epsilon ({', '.join(attacks)}; tolerance one example)",
    )


def pgd_vs_fgsm(runs: Sequence[Run], hib: bool = True, gradients: bool = True) -> Check:
    if not gradients:
        return Check("pgd_stronger_than_fgsm", None, "needs input gradients")
    pgd = {r.epsilon: r for r in runs if r.attack == "pgd" and r.epsilon > 0}
    fgsm = {r.epsilon: r for r in runs if r.attack == "fgsm" and r.epsilon > 0}
    common = sorted(set(pgd) & set(fgsm))
    if not common:
        ran = {r.attack for r in runs}
        missing = tuple(a for a in ("fgsm", "pgd") if a not in ran)
        return Check(
            "pgd_stronger_than_fgsm",
            None,
            "needs both fgsm and pgd in the attack list"
            + ("" if missing else " and an epsilon > 0"),
            missing,
        )
    ok, details = True, []
    for e in common:
        p, f = pgd[e].per_unit, fgsm[e].per_unit
        if p is None or f is None:  # continuous metric: PGD may not do better by over 1%
            tol = 0.01 * abs(fgsm[e].metric)
            better = (
                pgd[e].metric > fgsm[e].metric + tol
                if hib
                else pgd[e].metric < fgsm[e].metric - tol
            )
            ok &= not better
            details.append(f"eps {e:g}: pgd {_fmt(pgd[e].metric)} vs fgsm {_fmt(fgsm[e].metric)}")
            continue
        exceptions = int(np.sum((f < p) if hib else (f > p)))  # fgsm broke it, pgd did not
        ok &= exceptions <= 0.01 * max(len(p), 1) + 1e-12
        details.append(f"eps {e:g}: {exceptions}/{len(p)} examples broken by fgsm but not pgd")
    return Check("pgd_stronger_than_fgsm", bool(ok), "; ".join(details))


def reaches_chance(run: Run | None, chance: float, hib: bool, label: str) -> Check:
    if run is None:
        return Check("large_epsilon_reaches_chance", None, "needs pgd and input gradients")
    reached = run.ci_low <= chance + 1e-12 if hib else run.ci_high >= chance - 1e-12
    cmp = "<=" if hib else ">="
    return Check(
        "large_epsilon_reaches_chance",
        bool(reached),
        f"pgd at eps {run.epsilon:g} {label}: {_fmt(run.metric)} "
        f"(95% CI {_fmt(run.ci_low)}-{_fmt(run.ci_high)}); chance level {_fmt(chance)}; "
        f"needs CI {cmp} chance",
    )


def below_whitebox(runs: Sequence[Run], hib: bool, gradients: bool = True) -> Check:
    white = [r for r in runs if r.kind == "white-box" and r.epsilon > 0]
    others = [r for r in runs if r.kind in ("black-box", "baseline") and r.epsilon > 0]
    if not white or not others:
        needs = (() if white or not gradients else ("pgd",)) + (() if others else ("noise",))
        return Check(
            "blackbox_and_noise_below_whitebox",
            None,
            "needs a white-box attack and a black-box attack or noise"
            + ("" if gradients else " (the model has no input gradients)"),
            needs if gradients or others else (),
        )
    bad: list[Any] = []
    notes: list[Any] = []
    for o in others:
        same = [w for w in white if w.epsilon == o.epsilon]
        if not same:
            continue
        pos = {int(u): i for i, u in enumerate(o.units)}
        if o.per_unit is not None and all(w.per_unit is not None for w in same):
            best = None
            for w in same:  # strongest white-box per unit: an example is broken if any breaks it
                wpos = {int(u): i for i, u in enumerate(w.units)}
                vals = np.array([w.per_unit[wpos[int(u)]] for u in o.units])  # type: ignore[index]
                best = (
                    vals
                    if best is None
                    else (np.minimum(best, vals) if hib else np.maximum(best, vals))
                )
            assert best is not None
            wb_metric = float(np.mean(best))
            extra = int(np.sum(o.per_unit < best)) if hib else int(np.sum(o.per_unit > best))
        else:
            wb_metric = min(w.metric for w in same) if hib else max(w.metric for w in same)
            extra = -1
        tol = 1.0 / max(len(pos), 1)
        beats = (
            (o.metric < wb_metric - tol - 1e-12) if hib else (o.metric > wb_metric + tol + 1e-12)
        )
        note = (
            f"{o.attack} at eps {o.epsilon:g}: {_fmt(o.metric)} vs white-box {_fmt(wb_metric)}"
            + (f" ({extra} examples broken only by {o.attack})" if extra >= 0 else "")
        )
        (bad if beats else notes).append(note)
    if bad:
        return Check(
            "blackbox_and_noise_below_whitebox", False, "beats white-box: " + "; ".join(bad)
        )
    if not notes:
        return Check(
            "blackbox_and_noise_below_whitebox",
            None,
            "no epsilon > 0 at which a white-box and a black-box attack or noise both ran",
        )
    return Check("blackbox_and_noise_below_whitebox", True, "; ".join(notes[:6]))


def converged(
    base: Run | None, doubled: Run | None, steps: int, others: Sequence[Run] = ()
) -> Check:
    if base is None or doubled is None:
        return Check("pgd_converged", None, "needs pgd and input gradients")
    diff = abs(doubled.metric - base.metric)
    n = max(len(base.units), 1)
    limit = 0.01 if n > 100 else 1.0 / n  # under one point, or one example when that is coarser
    ok = diff < limit - 1e-12 if n > 100 else diff <= limit + 1e-12
    need = "< 0.01" if n > 100 else f"<= one example ({limit:.3g})"
    also = "; ".join(
        f"{o.attack} at this eps: {_fmt(o.metric)}"
        for o in others
        if o.epsilon == base.epsilon and o.attack != "pgd" and o.kind == "white-box"
    )
    return Check(
        "pgd_converged",
        bool(ok),
        f"eps {base.epsilon:g}: {steps} steps {_fmt(base.metric)}, {2 * steps} steps "
        f"{_fmt(doubled.metric)} (same step size; difference {diff:.4f}, needs {need})"
        + (f"; {also}" if also else ""),
    )


def gradients(grads: np.ndarray | None, reason: str = "") -> Check:
    if grads is None:
        return Check("gradients_nonzero_finite", None, reason or "no input gradients")
    flat = np.asarray(grads, np.float64).reshape(len(grads), -1)
    nonfinite = int(np.sum(~np.all(np.isfinite(flat), axis=1)))
    norms = np.sqrt(np.nansum(flat**2, axis=1))
    zero = int(np.sum(norms == 0))
    med = (
        float(np.median(norms[np.isfinite(norms)])) if np.any(np.isfinite(norms)) else float("nan")
    )
    return Check(
        "gradients_nonzero_finite",
        nonfinite == 0 and zero == 0,
        f"{zero} of {len(flat)} examples with an all-zero gradient, {nonfinite} non-finite; "
        f"median gradient norm {med:.3g}",
    )


def outputs(first: np.ndarray, second: np.ndarray, loss: str, gradients: bool = True) -> Check:
    """Logits, deterministic. Probabilities only matter to gradient attacks (their softmax
    saturates): a model attacked without gradients (a classic baseline) gets ``None`` for them."""
    same = bool(np.allclose(first, second, rtol=1e-5, atol=1e-6, equal_nan=False))
    maxdiff = float(np.max(np.abs(np.asarray(first, np.float64) - second))) if first.size else 0.0
    probs = False
    if loss == "cross_entropy" and first.ndim == 2:
        probs = bool(
            np.all(first >= 0)
            and np.all(first <= 1)
            and np.allclose(first.sum(axis=1), 1.0, atol=1e-3)
        )
    elif loss == "binary_cross_entropy":
        probs = bool(np.all(first >= 0) and np.all(first <= 1))
    kind = "probabilities" if probs else ("logits" if loss != "mse" else "raw scores")
    evidence = f"outputs look like {kind}; two passes differ by at most {maxdiff:.3g}"
    if probs and not gradients:
        return Check(
            "outputs_logits_deterministic",
            None if same else False,
            evidence + " (no gradient attacks on this model: probabilities do no harm)",
        )
    return Check("outputs_logits_deterministic", same and not probs, evidence)


def verdict(checks: Sequence[Check], warnings: Sequence[str] = ()) -> Verdict:
    """``failed`` when a check other than a budget check failed; else ``insufficient`` when a
    check did not run or a budget check failed; else ``passed``. ``warnings`` (the scenario's
    notes on escalating PGD) are kept with it."""
    ran = sum(1 for c in checks if c.passed is not None)
    total = len(checks)
    masked = tuple(c.check for c in checks if c.passed is False and c.check not in BUDGET_CHECKS)
    budget = [c for c in checks if c.passed is False and c.check in BUDGET_CHECKS]
    missing = tuple(dict.fromkeys(n for c in checks if c.passed is None for n in c.needs))
    cannot = [c for c in checks if c.passed is None and not c.needs]
    notes = list(warnings) + [f"{c.check} failed: {c.evidence}" for c in budget]
    if masked:
        return Verdict(
            "failed",
            f"evidence of gradient masking: {', '.join(masked)} failed ({ran} of {total} checks "
            "ran)",
            ran, total, masked, missing, tuple(notes),
        )
    if missing or cannot or budget or not checks:
        why = []
        if missing:
            why.append(f"add {_names(missing)} to attacks")
        why += [f"{c.check} cannot run: {c.evidence}" for c in cannot]
        if budget:
            why.append("PGD had not converged: raise pgd_steps")
        return Verdict(
            "insufficient",
            f"{ran} of {total} checks ran; " + ("; ".join(why) or "no checks"),
            ran, total, (), missing, tuple(notes),
        )
    return Verdict(
        "passed", f"every check ran and passed ({ran} of {total})", ran, total,
        warnings=tuple(notes),
    )


def passed(checks: Sequence[Check]) -> bool:
    """Every check ran and passed (a check that did not run is no pass)."""
    return verdict(checks).passed
