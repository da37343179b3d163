"""Robustness: clean and adversarial metrics over an epsilon grid, corruptions, and the
gradient-masking audit, on every framework and domain.

The cell trains its model exactly as the accuracy cell with the same training parameters does,
or reloads that cell's trained weights (``reuse``, on by default), then:

1. scores the clean evaluation subset (``eval_size`` examples, the same for every framework);
2. runs each attack (:mod:`dlbench.robustness.attacks`, through ART) at each epsilon (domain
   units: pixel/255, dB, relative embedding norm; see :mod:`dlbench.robustness.budgets`):
   metric with its 95% CI, attack success rate, attack time; black-box attacks on the first
   ``blackbox_size`` examples;
3. applies the task's own corruptions (:meth:`dlbench.task.Task.corruptions`) at every level;
4. runs the gradient-masking audit (:mod:`dlbench.robustness.audit`), which never fails the
   cell: its verdict, ``passed``, ``failed`` (evidence of masking) or ``insufficient`` (a check
   could not run: add the attacks it names; or PGD had not converged), is
   ``details["audit_verdict"]``, and ``audit_passed`` is 1 only for ``passed``. When doubling
   PGD's steps still moves the metric (``pgd_converged`` fails), the attack's budget was short:
   the cell re-runs PGD on the whole grid with twice the steps, up to :data:`PGD_STEP_CAP` times
   ``pgd_steps``, reports the strongest figure per epsilon, and records it in
   ``details["pgd_escalation"]``.

``defence`` wraps the model in an ART input-preprocessing defence (attacks then see it in the
forward pass and go through it with BPDA); ``train_attack`` trains adversarially. Results:
metrics ``clean_metric``/``clean_<headline>`` (+ CI in ``details["metric_ci"]``),
``robust_<attack>_eps<e>``, ``success_rate_<attack>_eps<e>``, ``attack_time_s_<attack>_eps<e>``,
``auc_<attack>`` and ``auc`` (area under the worst-case metric-vs-epsilon curve, epsilon scaled to
[0, 1]), ``corruption_mean``, ``audit_passed``, ``audit_checks_ran``; series ``robustness_curve``;
details ``corruptions``, ``audit``, ``audit_verdict`` and ``pgd_escalation``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dlbench.errors import DlbenchError, UnsupportedError
from dlbench.params import Param
from dlbench.result import Measurement, Result
from dlbench.robustness import audit
from dlbench.robustness.attacks import AttackSettings
from dlbench.robustness.audit import Run
from dlbench.robustness.budgets import budget_for
from dlbench.robustness.estimator import InputCodec
from dlbench.robustness.target import build_target, eval_subset, score
from dlbench.robustness.tokens import TOKEN_PARAMS, run_token_attack, token_figure
from dlbench.scenarios.accuracy import TRAINING_PARAMS, train_or_load, training_data
from dlbench.scenarios.base import Scenario
from dlbench.scenarios.figures import ATTACK_FIGURES, Column, Figure, attack_metric, metric_figure

if TYPE_CHECKING:
    from dlbench.robustness.audit import Run
    from dlbench.robustness.target import EvalSet, Score, Target
    from dlbench.run.context import CellContext
    from dlbench.task import Dataset

DEFAULT_ATTACKS = ("fgsm", "pgd", "apgd", "square", "noise")
PGD_STEP_CAP = 4
"""PGD's steps are doubled up to this multiple of ``pgd_steps`` while it has not converged."""


@dataclass
class Convergence:
    """``pgd_converged`` after acting on it: the check, the steps PGD ended with, and notes."""

    check: audit.Check
    steps: int
    warnings: list[str]


@dataclass(frozen=True)
class ListParam(Param):
    """A list-valued parameter: a YAML list (nested, ``[[a, b]]``, inside a suite matrix, whose
    lists expand into cells) or a string separated by commas, ``+`` or spaces."""

    item: type = str

    def validate(self, name: str, value: Any) -> str | None:
        try:
            items = parse_list(value, self.item)
        except (TypeError, ValueError) as exc:
            return f"{name}={value!r}: {exc}"
        for v in items or []:
            err = self.check_number(v)
            if err:
                return f"{name}={value!r}: {err}"
        return None


def parse_list(value: Any, item: type) -> list[Any] | None:
    if value is None:
        return None
    items = re.split(r"[,+\s]+", value.strip()) if isinstance(value, str) else list(value)
    out: list[Any] = []
    for v in items:
        if v == "":
            continue
        if item is float:
            if isinstance(v, bool):
                raise TypeError("expected numbers")
            out.append(float(v))
        else:
            if not isinstance(v, str):
                raise TypeError("expected names")
            out.append(v)
    if not out:
        raise ValueError("expected at least one value")
    return out


ROBUSTNESS_PARAMS: dict[str, Param] = {
    "attacks": ListParam(
        list(DEFAULT_ATTACKS),
        "attacks to run: fgsm, pgd, apgd, square, noise, pgd-eot, pgd-bpda, autoattack, "
        "autoattack-robustbench (a preset: L-inf 8/255), or any a plugin registers",
    ),
    "epsilons": ListParam(
        None,
        "epsilon grid in the task's unit (pixel/255, dB, relative-norm); "
        "None: the domain's default",
        item=float,
        min=0,
    ),
    "eval_size": Param(
        200, "evaluation examples (groups for ranking), same for every framework", type=int, min=1
    ),
    "pgd_steps": Param(20, "PGD and APGD iterations", type=int, min=1),
    "restarts": Param(1, "random restarts of PGD and APGD", type=int, min=1),
    "blackbox_size": Param(50, "examples the black-box attack runs on", type=int, min=1),
    "square_queries": Param(200, "iterations (queries) of the Square attack", type=int, min=1),
    "corruptions": Param(True, "evaluate the task's corruptions", type=bool),
    "audit": Param(True, "run the gradient-masking audit", type=bool),
    "defence": Param(
        "none",
        "ART input-preprocessing defence",
        ("none", "feature_squeezing", "spatial_smoothing"),
    ),
    "budget": Param(
        "relative",
        "embedding budgets: relative (eps x the embedding norm) or absolute (eps in embedding "
        "units, shared-row recommendation attacks)",
        ("relative", "absolute"),
    ),
    **TOKEN_PARAMS,
}


class RobustnessScenario(Scenario):
    name = "robustness"
    warm_ok = True  # no first-call or compile time: a warm worker may run it
    charts: ClassVar[tuple[str, ...]] = ("robustness",)
    description = (
        "adversarial metric over an epsilon grid per attack (ART), corruptions, "
        "gradient-masking audit"
    )
    params: ClassVar[dict[str, Param]] = {
        **TRAINING_PARAMS,
        "reuse": Param(
            True, "reload the weights trained by the identical accuracy cell", type=bool
        ),
        **ROBUSTNESS_PARAMS,
    }

    def run(self, ctx: CellContext) -> None:
        p = ctx.params
        dataset = training_data(ctx)
        trained = train_or_load(ctx, dataset, bool(p.get("reuse", True)))
        r = ctx.result
        info = ctx.model_info(trained.spec, trained.initial)
        info.trained_digest, info.artifact = trained.trained_digest, trained.artifact
        r.model = info
        r.metrics["train_time_s"] = trained.train_time
        r.details["reused_trained_weights"] = trained.reused
        evalset = eval_subset(dataset, int(p.get("eval_size") or 200), ctx.seed)
        headline = ctx.task.headline(p)
        hib = ctx.task.higher_is_better.get(headline, True)
        attacks = self._attacks(ctx)
        domain = ctx.task.perturbation(p)
        mode = str(p.get("budget") or "relative")
        budget = budget_for(domain, dataset, mode)
        epsilons = sorted({0.0, *(parse_list(p.get("epsilons"), float) or budget.defaults)})
        if any(e < 0 for e in epsilons):
            raise DlbenchError(f"epsilons={p.get('epsilons')!r}: epsilons must be >= 0")
        max_eps = budget.to_attack(max(max(epsilons), budget.large))
        weights = trained.model.get_weights() if trained.spec is not None else None
        target: Target | None = None
        try:
            target = build_target(
                ctx,
                trained.model,
                trained.spec,
                weights,
                dataset,
                evalset,
                str(p.get("defence") or "none"),
                max_eps,
                mode=mode,
            )
        except UnsupportedError as exc:
            if p.get("defence", "none") != "none":
                raise
            r.details["attacks_skipped"] = {a.name: str(exc) for a in attacks}
            ctx.log(f"no attacks: {exc}")
        r.details["metric"] = {"name": headline, "higher_is_better": hib}
        r.details["budget"] = {
            "unit": budget.unit,
            "norm": budget.norm_name,
            "scale": budget.scale,
            "space": domain.space,
            "defence": p.get("defence", "none"),
        }
        if target is not None and target.extras:  # e.g. the trained embeddings' row norms
            r.metrics.update(target.extras)
            r.details["budget"]["norms"] = dict(target.extras)
        r.details["eval"] = {"units": evalset.units, "rows": len(evalset.y), "group": evalset.group}

        clean_out = target.outputs(target.x) if target else trained.model.predict(evalset.inputs)
        clean = score(ctx.task, p, headline, evalset.y, clean_out, evalset.group, ctx.seed)
        self._record_clean(ctx, headline, clean)
        runs: list[Run] = []
        if target is not None:
            runs = self._attack_grid(ctx, target, evalset, attacks, epsilons, clean, headline)
        if p.get("audit", True):  # first: a short PGD budget is re-run before it is summed up
            runs = self._audit(ctx, target, evalset, runs, epsilons, clean, headline, hib)
        self._summarise(ctx, runs, epsilons, hib)
        run_token_attack(ctx, trained.model, trained.spec, target, weights, dataset, evalset,
                         headline)
        if p.get("corruptions", True):
            self._corruptions(ctx, trained, dataset, evalset, target, headline)

    # -- parts ------------------------------------------------------------------------------------
    def _attacks(self, ctx: CellContext) -> list[Any]:
        names = parse_list(ctx.params.get("attacks"), str) or list(DEFAULT_ATTACKS)
        return [ctx.plugins.attacks.get(n, "robustness param 'attacks'") for n in names]

    def _settings(self, ctx: CellContext, steps: int | None = None) -> Any:
        p = ctx.params
        base = int(p.get("pgd_steps") or 20)
        return AttackSettings(
            steps=int(steps or base),
            restarts=int(p["restarts"]) if p.get("restarts") is not None else 1,
            square_queries=int(p.get("square_queries") or 200),
            seed=ctx.seed,
            step_steps=base,
        )

    def _record_clean(self, ctx: CellContext, headline: str, clean: Score) -> None:
        r = ctx.result
        r.metrics["clean_metric"] = clean.value
        r.metrics[f"clean_{headline}"] = clean.value
        cis = r.details.setdefault("metric_ci", {})
        cis["clean_metric"] = cis[f"clean_{headline}"] = [clean.ci_low, clean.ci_high]
        if clean.per_unit is not None:
            r.measurements.append(
                Measurement(
                    "clean_correct", "fraction", clean.per_unit.tolist(), higher_is_better=True
                )
            )

    def run_attack(
        self,
        ctx: CellContext,
        target: Target,
        evalset: EvalSet,
        attack: Any,
        eps: float,
        clean: Score,
        headline: str,
        steps: int | None = None,
    ) -> Run:
        """One attack at one epsilon (domain units) on its units of the evaluation set."""
        units = np.arange(evalset.units)
        if attack.subset:
            units = units[: max(1, int(ctx.params.get("blackbox_size") or 50))]
        rows = evalset.unit_rows(units)
        view = target.select(rows)
        t0 = time.perf_counter()
        if eps > 0:
            x_adv = attack.generate(
                view,
                view.x,
                view.labels,
                target.budget.to_attack(eps),
                view.settings(self._settings(ctx, steps)),
                view.mask,
            )
        else:
            x_adv = view.x
        dt = time.perf_counter() - t0 if eps > 0 else 0.0
        s = score(
            ctx.task,
            ctx.params,
            headline,
            evalset.y[rows],
            view.outputs(x_adv),
            evalset.group,
            ctx.seed,
        )
        success = math.nan
        if s.per_unit is not None and clean.per_unit is not None:
            before = clean.per_unit[units]
            ok = before > 0.5
            success = float(np.sum(ok & (s.per_unit < 0.5)) / max(int(ok.sum()), 1))
        return Run(
            attack.name,
            attack.kind,
            float(eps),
            s.value,
            s.ci_low,
            s.ci_high,
            s.per_unit,
            units,
            dt,
            success,
            {} if steps is None else {"steps": float(steps)},
        )

    def _attack_grid(
        self,
        ctx: CellContext,
        target: Target,
        evalset: EvalSet,
        attacks: list[Any],
        epsilons: list[float],
        clean: Score,
        headline: str,
    ) -> list[Run]:
        r = ctx.result
        runs: list[Run] = []
        skipped = r.details.setdefault("attacks_skipped", {})
        for attack in attacks:
            reason = attack.skip_reason(target)
            if reason:
                skipped[attack.name] = reason
                ctx.log(f"skip {attack.name}: {reason}")
                continue
            for eps in attack.grid(epsilons):  # a preset (autoattack-robustbench) fixes its own
                run = self.run_attack(ctx, target, evalset, attack, eps, clean, headline)
                runs.append(run)
                self._record(ctx, target, run, headline)
        return runs

    def _record(self, ctx: CellContext, target: Target, run: Run, headline: str) -> None:
        """A run's metrics and its point of the robustness curve (replacing the same attack's
        point at the same epsilon: an escalated PGD run)."""
        r = ctx.result
        for figure, value in zip(ATTACK_FIGURES, (run.metric, run.success_rate, run.time_s), strict=True):
            r.metrics[attack_metric(figure, run.attack, run.epsilon)] = value
        point: dict[str, Any] = {
            "attack": run.attack,
            "kind": run.kind,
            "epsilon": run.epsilon,
            "unit": target.budget.unit,
            "metric": run.metric,
            "ci_low": run.ci_low,
            "ci_high": run.ci_high,
            "success_rate": run.success_rate,
            "time_s": run.time_s,
            "n": len(run.units),
        }
        if "steps" in run.extra:
            point["steps"] = int(run.extra["steps"])
        curve = r.series.setdefault("robustness_curve", [])
        same = [
            i
            for i, q in enumerate(curve)
            if q["attack"] == run.attack and q["epsilon"] == run.epsilon
        ]
        if same:
            curve[same[0]] = point
        else:
            curve.append(point)
        ctx.log(
            f"{run.attack} eps {run.epsilon:g} {target.budget.unit}: {headline} {run.metric:.4f} "
            f"[{run.ci_low:.3f}, {run.ci_high:.3f}] ({run.time_s:.2f} s)"
            + (f", {int(run.extra['steps'])} steps" if "steps" in run.extra else "")
        )

    def _summarise(
        self, ctx: CellContext, runs: list[Run], epsilons: list[float], hib: bool
    ) -> None:
        r = ctx.result
        top = max(epsilons) or 1.0
        full = [x for x in runs if x.kind != "black-box"]
        for name in sorted({x.attack for x in runs}):
            pts = sorted((x for x in runs if x.attack == name), key=lambda x: x.epsilon)
            if len(pts) > 1:
                r.metrics[f"auc_{name}"] = _auc(
                    [x.epsilon / top for x in pts], [x.metric for x in pts]
                )
        worst = []
        for e in epsilons:
            vals = [x.metric for x in full if x.epsilon == e]
            if vals:
                worst.append((e, min(vals) if hib else max(vals)))
        if len(worst) > 1:
            r.metrics["auc"] = _auc([e / top for e, _ in worst], [v for _, v in worst])
            r.metrics["robust_metric"] = worst[-1][1]

    def _corruptions(
        self,
        ctx: CellContext,
        trained: Any,
        dataset: Dataset,
        evalset: EvalSet,
        target: Target | None,
        headline: str,
    ) -> None:
        r = ctx.result
        rows: list[dict[str, Any]] = []
        skipped: dict[str, str] = {}
        corruptions = ctx.task.corruptions(ctx.params)
        if not corruptions:
            reason = f"task {ctx.task.name!r} declares no corruptions (Task.corruptions)"
            skipped["all"] = reason
            ctx.log(f"corruptions: {reason}")
        for c in corruptions:
            for level in c.levels:
                rng = np.random.default_rng(c.seed(ctx.seed, level))
                try:
                    if c.split == "test":
                        xc, yc = ctx.task.corrupt(
                            evalset.inputs, evalset.y, c.name, level, rng, dataset
                        )
                        out = self._outputs(trained.model, target, xc)
                    else:
                        xt, yt = ctx.task.corrupt(
                            dataset.x_train, dataset.y_train, c.name, level, rng, dataset
                        )
                        corrupted = type(dataset)(
                            xt,
                            yt,
                            dataset.x_test,
                            dataset.y_test,
                            dataset.num_classes,
                            dataset.name,
                            dict(dataset.meta),
                        )
                        model = train_or_load(
                            ctx, corrupted, True, {"corruption": c.name, "level": level}
                        ).model
                        out, yc = model.predict(evalset.inputs), evalset.y
                except UnsupportedError as exc:
                    skipped[c.name] = str(exc)
                    break
                s = score(ctx.task, ctx.params, headline, yc, out, evalset.group, ctx.seed)
                rows.append(
                    {
                        "corruption": c.name,
                        "severity": level,
                        "value": c.value(level),
                        "unit": c.unit,
                        "split": c.split,
                        "metric": s.value,
                        "ci_low": s.ci_low,
                        "ci_high": s.ci_high,
                    }
                )
                ctx.log(
                    f"corruption {c.name} level {level} ({c.value(level):g} {c.unit}): "
                    f"{headline} {s.value:.4f}"
                )
        r.details["corruptions"] = rows
        if skipped:
            r.details["corruptions_skipped"] = skipped
        if rows:
            r.metrics["corruption_mean"] = float(np.mean([row["metric"] for row in rows]))
            for name in dict.fromkeys(row["corruption"] for row in rows):
                r.metrics[f"corruption_mean_{name}"] = float(
                    np.mean([row["metric"] for row in rows if row["corruption"] == name])
                )

    # -- reports ---------------------------------------------------------------------------------
    def headline(self, result: Result) -> Figure | None:
        """The clean headline metric (clean_accuracy, clean_rmse, clean_hr@10...), else the AUC."""
        metric = result.details.get("metric")
        clean = f"clean_{metric['name']}" if isinstance(metric, dict) and "name" in metric else None
        for name in (n for n in (clean, "clean_accuracy", "auc") if n):
            if name in result.metrics:
                return metric_figure(result, name)
        return None

    def columns(self, results: Sequence[Result]) -> list[Column]:
        """Ranked by the worst-case robustness AUC (high first for accuracies, low for errors):
        the clean metric with its CI, the AUC, the audit's checks."""
        metric = next((r.details["metric"] for r in results
                       if isinstance(r.details.get("metric"), dict)),
                      {"name": "accuracy", "higher_is_better": True})
        name, hib = str(metric.get("name", "accuracy")), bool(metric.get("higher_is_better", True))

        def auc(r: Result) -> Figure | None:
            v = r.metrics.get("auc")
            return None if v is None else Figure("auc", float(v), higher_is_better=hib, sig=4)

        return [Column(f"Clean {name}", lambda r: metric_figure(r, "clean_metric", sig=4)),
                Column(f"Robustness AUC {'↑' if hib else '↓'}", auc, rank=True),
                Column("Audit checks", _audit_figure),
                *([Column("Token attack success ↓", token_figure)]
                  if any("token_attack" in r.details for r in results) else [])]

    def _outputs(
        self, model: Any, target: Target | None, inputs: dict[str, np.ndarray]
    ) -> np.ndarray:
        """Outputs on (corrupted) model inputs: through the defended estimator in input space."""
        if target is not None and isinstance(target.estimator.codec, InputCodec):
            return target.outputs(target.estimator.codec.encode(inputs))
        return model.predict(inputs)

    def _converge_pgd(
        self,
        ctx: CellContext,
        target: Target | None,
        evalset: EvalSet,
        runs: list[Run],
        epsilons: list[float],
        clean: Score,
        headline: str,
        hib: bool,
        escalate: bool = True,
    ) -> tuple[list[Run], Convergence]:
        """``pgd_converged``, acted on: PGD at the grid's middle epsilon against twice its steps
        (same step size); while that moves the metric, or FGSM breaks examples PGD does not (a
        short PGD is weaker than one full step), the whole grid's PGD is re-run with twice the
        steps (up to :data:`PGD_STEP_CAP` x ``pgd_steps``) and each epsilon keeps its strongest
        run. A short budget is a warning, not masking; what still fails at the cap is judged by
        the audit's checks. ``escalate=False`` (masking found already): the check only."""
        steps = int(ctx.params.get("pgd_steps") or 20)
        pgd = ctx.plugins.attacks.get("pgd") if "pgd" in ctx.plugins.attacks else None
        if target is None or not target.gradients or pgd is None:
            return runs, Convergence(audit.converged(None, None, steps), steps, [])
        grid = {x.epsilon: x for x in runs if x.attack == "pgd" and x.epsilon > 0}
        base: Run | None = None
        if grid:
            mid = (min(x.metric for x in grid.values()) + max(x.metric for x in grid.values())) / 2
            base = min(grid.values(), key=lambda x: abs(x.metric - mid))
        else:
            eps = sorted(e for e in epsilons if e > 0)
            if eps:
                base = self.run_attack(
                    ctx, target, evalset, pgd, eps[len(eps) // 2], clean, headline, steps
                )
        if base is None:
            return runs, Convergence(audit.converged(None, None, steps), steps, [])
        at, cap = base.epsilon, PGD_STEP_CAP * steps

        def attack(eps: float, n: int) -> Run:
            assert target is not None
            return self.run_attack(ctx, target, evalset, pgd, eps, clean, headline, n)

        doubled = attack(at, 2 * steps)
        check = audit.converged(base, doubled, steps, runs)
        tried: dict[float, list[Run]] = {e: [x] for e, x in grid.items()}

        def strongest() -> dict[float, Run]:  # ties: the longer attack
            return {
                e: min(reversed(xs), key=lambda x: x.metric if hib else -x.metric)
                for e, xs in tried.items()
            }

        def with_strongest() -> list[Run]:
            best = strongest()
            return [
                best[x.epsilon] if x.attack == "pgd" and x.epsilon in best else x for x in runs
            ]

        weak = audit.pgd_vs_fgsm(runs, hib)
        why = [c.evidence for c in (check, weak) if c.passed is False]
        cur = steps
        while escalate and (check.passed is False or weak.passed is False) and 2 * cur <= cap:
            cur *= 2  # the grid at twice the steps (its run at the audit's epsilon exists)
            level = {e: doubled if e == at else attack(e, cur) for e in grid}
            for e, x in level.items():
                tried[e].append(x)
            weak = audit.pgd_vs_fgsm(with_strongest(), hib)
            if 2 * cur > cap:
                break
            if check.passed is False or at not in level:
                again = attack(at, 2 * cur)
                check = audit.converged(level.get(at, doubled), again, cur, runs)
                doubled = again
        warnings: list[str] = []
        if cur > steps:
            runs, best = with_strongest(), strongest()
            for x in best.values():
                self._record(ctx, target, x, headline)
            levels = [steps * 2**i for i in range(int(math.log2(cur // steps)) + 1)]
            left = [c.check for c in (check, weak) if c.passed is False]
            warnings.append(
                f"attack budget: {'; '.join(why)}; PGD re-ran with "
                f"{' and '.join(map(str, levels[1:]))} steps and reports the strongest figure per "
                "epsilon"
                + (f"; {' and '.join(left)} still failing at the cap ({cur} steps)" if left else "")
            )
            ctx.result.details["pgd_escalation"] = {
                "steps": levels,
                "cap": cap,
                "converged": bool(check.passed),
                "reported_steps": {
                    f"{e:g}": int(x.extra.get("steps", steps)) for e, x in best.items()
                },
                "metric": {
                    f"{e:g}": {str(int(x.extra.get("steps", steps))): x.metric for x in xs}
                    for e, xs in tried.items()
                },
            }
            ctx.result.metrics["pgd_steps_used"] = float(cur)
            check = audit.Check(
                check.check, check.passed, f"escalated from {steps} steps; {check.evidence}"
            )
            ctx.log(f"audit warning: {warnings[-1]}")
        return runs, Convergence(check, cur, warnings)

    def _audit(
        self,
        ctx: CellContext,
        target: Target | None,
        evalset: EvalSet,
        runs: list[Run],
        epsilons: list[float],
        clean: Score,
        headline: str,
        hib: bool,
    ) -> list[Run]:
        """The checks, in ``details["audit"]``, and their verdict; returns the runs with PGD's
        strongest figures when its budget was escalated (only when no other check found
        masking: a masked model gets its verdict without the longer attacks)."""
        r = ctx.result
        pgd = ctx.plugins.attacks.get("pgd") if "pgd" in ctx.plugins.attacks else None
        grads = target is not None and target.gradients
        large = None
        if target is not None and target.gradients and pgd is not None:
            large = self.run_attack(ctx, target, evalset, pgd, target.budget.large, clean, headline)
        chance = audit.reaches_chance(
            large,
            _chance(ctx, evalset, headline, hib),
            hib,
            f"{target.budget.unit if target else ''}",
        )
        if target is not None and target.gradients:
            g = target.estimator.loss_gradient(target.x, target.labels)
            if target.mask is not None:
                g = g * target.mask
            gradients = audit.gradients(g)
        else:
            gradients = audit.gradients(
                None, target.no_gradient_reason if target else "no attack target"
            )
        outputs = []
        if target is not None:
            outputs.append(
                audit.outputs(
                    target.outputs(target.x),
                    target.outputs(target.x),
                    target.estimator.loss_name,
                    target.gradients,
                )
            )
        masked = any(
            c.passed is False
            for c in (
                audit.monotone(runs, hib, grads),
                chance,
                audit.below_whitebox(runs, hib, grads),
                gradients,
                *outputs,
            )
        )
        runs, convergence = self._converge_pgd(
            ctx, target, evalset, runs, epsilons, clean, headline, hib, escalate=not masked
        )
        checks = [
            audit.monotone(runs, hib, grads),
            audit.pgd_vs_fgsm(runs, hib, grads),
            chance,
            audit.below_whitebox(runs, hib, grads),
            convergence.check,
            gradients,
            *outputs,
        ]
        verdict = audit.verdict(checks, convergence.warnings)
        r.details["audit"] = [c.to_dict() for c in checks]
        r.details["audit_verdict"] = verdict.to_dict()
        r.metrics["audit_passed"] = float(verdict.passed)
        r.metrics["audit_checks_ran"] = float(verdict.ran)
        for c in checks:
            state = "not run" if c.passed is None else ("pass" if c.passed else "FAIL")
            ctx.log(f"audit {c.check}: {state} - {c.evidence}")
        ctx.log(f"audit verdict: {verdict.verdict} - {verdict.message}")
        return runs

    def verdict(self, result: Result) -> Figure | None:
        """The gradient-masking audit's verdict, with its reasons and warnings."""
        return _audit_figure(result, full=True)


def _auc(xs: list[float], ys: list[float]) -> float:
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def _chance(ctx: CellContext, evalset: EvalSet, headline: str, hib: bool) -> float:
    """The metric of a model that ignores its input: a constant class (the majority) for
    classifiers, the better of random and constant scores otherwise."""
    y = evalset.y
    loss = ctx.task.train_config(ctx.params).loss
    if loss == "cross_entropy":
        counts = np.bincount(np.asarray(y).astype(int).reshape(-1))
        return float(counts.max() / counts.sum()) if counts.sum() else 0.0
    rng = np.random.default_rng([ctx.seed, 19])
    shape = (len(y), 1)
    candidates = [
        float(
            np.mean(
                [
                    ctx.task.evaluate(y, rng.standard_normal(shape).astype(np.float32), ctx.params)[
                        headline
                    ]
                    for _ in range(5)
                ]
            )
        ),
        float(ctx.task.evaluate(y, np.zeros(shape, np.float32), ctx.params)[headline]),
    ]
    return max(candidates) if hib else min(candidates)


def audit_verdict(r: Result) -> audit.Verdict | None:
    """The audit's verdict on a result: as stored, or (results stored before verdicts were)
    summed up again from its checks; None: no audit."""
    rows = [a for a in r.details.get("audit") or [] if isinstance(a, dict)]
    if not rows:
        return None
    v = r.details.get("audit_verdict")
    if isinstance(v, dict) and v.get("verdict") in audit.VERDICTS:
        return audit.Verdict(
            str(v["verdict"]),
            str(v.get("message", "")),
            int(v.get("ran", 0)),
            int(v.get("total", len(rows))),
            tuple(map(str, v.get("failed") or ())),
            tuple(map(str, v.get("missing") or ())),
            tuple(map(str, v.get("warnings") or ())),
        )
    return audit.verdict([audit.Check.from_dict(a) for a in rows])


def _audit_figure(r: Result, full: bool = False) -> Figure | None:
    """``passed (7 of 7 checks ran)``, green; ``failed``, red; ``insufficient``, grey. ``full``:
    with the verdict's message (the attacks to add) and warnings."""
    v = audit_verdict(r)
    if v is None:
        return None
    text = f"{v.verdict}: {v.message}" if full else f"{v.verdict} ({v.ran_text})"
    if v.warnings:
        text += f"; warning: {'; '.join(v.warnings)}" if full else "; PGD escalated"
    return Figure("audit", v.ran / max(v.total, 1),
                  passed=None if v.verdict == "insufficient" else v.passed,
                  inconclusive=v.verdict == "insufficient", display=text)
