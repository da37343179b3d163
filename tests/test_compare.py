"""Ground-truth tests of the statistical comparison on seeded synthetic samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from dlbench.analysis.compare import (
    Thresholds,
    compare_runs,
    environment_diff,
    matches,
    metric_direction,
)
from dlbench.analysis.effects import (
    benjamini_hochberg,
    paired_proportion_effect,
    ratio_effect,
    two_proportion_effect,
)
from dlbench.cell import Cell
from dlbench.errors import DlbenchError
from dlbench.measure.canary import canary_workload
from dlbench.result import Measurement, Result, Stats
from dlbench.stats import effective_sample_size
from tests.sim_clock import ar1

ALPHA = 0.05
NAN = float("nan")


def quick_stats(x: np.ndarray) -> Stats:
    """Cheap summary for the many synthetic measurements (comparisons read raw samples only)."""
    return Stats(x.size, float(np.median(x)), float(x.mean()), float(x.std()), float(x.min()),
                 float(x.max()), NAN, NAN, NAN, NAN)


def speed_result(rng: np.random.Generator, scale: float = 1.0, *, n: int = 30,
                 sigma: float = 0.05, task: str = "vision", device: str = "cpu",
                 scenario: str = "speed", bs: int = 32, metrics: dict | None = None) -> Result:
    """Throughput windows (higher is better) and latencies (lower is better) with lognormal noise;
    ``scale`` < 1 is a slowdown by 1/scale."""
    cell = Cell(scenario, task, "torch", device, {"batch_size": bs, "mode": "train"})
    thr = 1000 * scale * np.exp(rng.normal(0, sigma, n))
    lat = 10 / scale * np.exp(rng.normal(0, sigma, n))
    return Result(cell, measurements=[
        Measurement("throughput", "samples/s", thr.tolist(), quick_stats(thr)),
        Measurement("latency", "ms", lat.tolist(), quick_stats(lat), higher_is_better=False)],
        metrics=dict(metrics or {}))


def canary_result(rng: np.random.Generator, scale: float = 1.0, n: int = 30) -> Result:
    cell = Cell("canary", "matmul", "numpy")
    gf = 50 * scale * np.exp(rng.normal(0, 0.02, n))
    return Result(cell, measurements=[Measurement("gflops", "GFLOP/s", gf.tolist())])


def accuracy_result(correct: np.ndarray, task: str = "vision", **metrics: float) -> Result:
    cell = Cell("accuracy", task, "torch", "cpu", {"epochs": 2})
    m = Measurement("test_correct", "0/1", correct.astype(float).tolist())
    return Result(cell, measurements=[m], metrics={"accuracy": float(correct.mean()), **metrics})


def row(cmp, key_part: str, name: str):
    return next(r for r in cmp.rows if key_part in r.key and r.name == name)


# ----------------------------------------------------------------------------- speed


def test_planted_20_percent_slowdown_is_a_regression():
    rng = np.random.default_rng(1)
    cmp = compare_runs([speed_result(rng)], [speed_result(rng, 1 / 1.2)])
    thr, lat = row(cmp, "speed", "throughput"), row(cmp, "speed", "latency")
    assert thr.verdict == "regression" and lat.verdict == "regression"
    # the CI covers the planted ratio
    assert thr.ci_low <= 1 / 1.2 <= thr.ci_high
    assert lat.ci_low <= 1.2 <= lat.ci_high
    assert thr.q_value < ALPHA
    assert cmp.worst_verdict == "regression"
    assert "regression" in cmp.summary()


def test_planted_speedup_is_an_improvement():
    rng = np.random.default_rng(2)
    cmp = compare_runs([speed_result(rng)], [speed_result(rng, 1.25)])
    assert {r.verdict for r in cmp.rows} == {"improvement"}
    assert cmp.worst_verdict == "improvement"


def test_identical_distributions_rarely_give_a_regression():
    """200 seeded trials without any change: regressions (and any 'significant' verdict) occur
    at most at the stated level alpha, with a binomial margin."""
    rng = np.random.default_rng(3)
    trials = 200
    regressions = significant = unchanged = 0
    for _ in range(trials):
        cmp = compare_runs([speed_result(rng, n=15, sigma=0.1)],
                           [speed_result(rng, n=15, sigma=0.1)])
        v = [r.verdict for r in cmp.rows]
        regressions += v.count("regression")
        significant += sum(x in ("regression", "improvement") for x in v)
    margin = st.binom.ppf(0.999, 2 * trials, ALPHA)  # 2 rows per trial
    assert regressions <= margin
    assert significant <= margin
    for _ in range(20):  # with little noise the same comparison proves "unchanged"
        cmp = compare_runs([speed_result(rng, n=15, sigma=0.02)],
                           [speed_result(rng, n=15, sigma=0.02)])
        unchanged += [r.verdict for r in cmp.rows].count("unchanged")
    assert unchanged >= 30


def test_noisy_tiny_samples_are_inconclusive():
    rng = np.random.default_rng(4)
    cmp = compare_runs([speed_result(rng, n=3, sigma=0.3)],
                       [speed_result(rng, 1 / 1.2, n=3, sigma=0.3)])
    assert {r.verdict for r in cmp.rows} == {"inconclusive"}
    one = compare_runs([speed_result(rng, n=1)], [speed_result(rng, 0.5, n=20)])
    assert {r.verdict for r in one.rows} == {"inconclusive"}
    assert "too few samples" in one.rows[0].reason and one.rows[0].gated
    untestable = compare_runs([speed_result(rng, n=1)], [speed_result(rng, 0.5, n=1)])
    assert not any(r.gated for r in untestable.rows)  # one sample per run: reported only


def test_small_significant_change_within_threshold_is_not_a_regression():
    rng = np.random.default_rng(5)
    cmp = compare_runs([speed_result(rng, n=200, sigma=0.02)],
                       [speed_result(rng, 1 / 1.02, n=200, sigma=0.02)])
    thr = row(cmp, "speed", "throughput")
    assert thr.q_value < ALPHA and thr.verdict == "unchanged"


def test_hodges_lehmann_ci_covers_the_true_ratio():
    rng = np.random.default_rng(6)
    cover = 0
    for _ in range(200):
        x = np.exp(rng.normal(0, 0.1, 12))
        y = 1.1 * np.exp(rng.normal(0, 0.1, 17))
        e = ratio_effect(x, y)
        cover += e.ci_low <= 1.1 <= e.ci_high
        # exact U distribution on both sides: the CI excludes 1 exactly when p <= alpha
        assert (e.p_value <= 0.05) == (not e.ci_low <= 1.0 <= e.ci_high)
    assert cover >= st.binom.ppf(0.001, 200, 0.95)


def test_threshold_overrides_by_glob():
    rng = np.random.default_rng(7)
    th = Thresholds(overrides={"speed/vision/*": {"speed": 0.3}})
    base = [speed_result(rng), speed_result(rng, task="nlp")]
    head = [speed_result(rng, 1 / 1.2), speed_result(rng, 1 / 1.2, task="nlp")]
    cmp = compare_runs(base, head, th)
    assert row(cmp, "vision", "throughput").verdict != "regression"
    assert row(cmp, "vision", "throughput").threshold == 0.3
    assert row(cmp, "nlp", "throughput").verdict == "regression"
    assert matches("speed/vision/torch[cpu,*]", "speed/vision/torch[cpu,bs=32,train]")
    assert not matches("speed/vision/torch[gpu,*]", "speed/vision/torch[cpu,bs=32,train]")
    with pytest.raises(DlbenchError, match="unknown threshold 'sped'"):
        Thresholds(overrides={"*": {"sped": 0.1}})


def test_first_call_is_informational():
    rng = np.random.default_rng(8)
    b, h = speed_result(rng, sigma=0.02), speed_result(rng, sigma=0.02)
    b.measurements.append(Measurement("first_call", "s", [1.0]))
    h.measurements.append(Measurement("first_call", "s", [9.0], higher_is_better=False))
    cmp = compare_runs([b], [h])
    fc = row(cmp, "speed", "first_call")
    assert not fc.gated and fc.verdict == "inconclusive"
    assert cmp.worst_verdict == "unchanged"


# ----------------------------------------------------------------------------- FDR


def test_benjamini_hochberg_controls_fdr_on_a_mixed_family():
    rng = np.random.default_rng(9)
    fdp = []
    for _ in range(15):
        base, head, truth = [], [], {}
        for i in range(30):
            changed = i < 8
            b = speed_result(rng, n=12, sigma=0.1, bs=i)
            h = speed_result(rng, 1 / 1.3 if changed else 1.0, n=12, sigma=0.1, bs=i)
            base.append(b)
            head.append(h)
            truth[b.cell.key] = changed
        cmp = compare_runs(base, head)
        disc = [r for r in cmp.rows if r.verdict in ("regression", "improvement")]
        false = sum(not truth[r.key] for r in disc)
        fdp.append(false / max(len(disc), 1))
        assert sum(truth[r.key] for r in disc) >= 8  # power: planted changes are found
    assert np.mean(fdp) <= ALPHA + 0.03


def test_bh_matches_the_textbook_procedure():
    p = [0.01, 0.04, 0.03, 0.005, 0.5, float("nan")]
    q = benjamini_hochberg(p)
    m = 5
    order = sorted(range(m), key=lambda i: p[i])
    expect = [0.0] * m
    prev = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        prev = min(prev, p[i] * m / rank)
        expect[i] = prev
    assert np.allclose(q[:5], expect) and math.isnan(q[5])


# ----------------------------------------------------------------------------- accuracy


def test_planted_paired_accuracy_drop_is_caught():
    rng = np.random.default_rng(10)
    base = rng.random(2000) < 0.9
    head = base.copy()
    flip = np.flatnonzero(base)[rng.random(base.sum()) < 0.05]  # lose ~4.5 points
    head[flip] = False
    cmp = compare_runs([accuracy_result(base)], [accuracy_result(head)])
    acc = row(cmp, "accuracy", "accuracy")
    assert acc.verdict == "regression" and "McNemar" in acc.method
    assert acc.delta_ci_low <= head.mean() - base.mean() <= acc.delta_ci_high


def test_identical_predictions_are_unchanged_and_tiny_noise_inconclusive():
    rng = np.random.default_rng(11)
    base = rng.random(2000) < 0.9
    cmp = compare_runs([accuracy_result(base)], [accuracy_result(base.copy())])
    assert row(cmp, "accuracy", "accuracy").verdict == "unchanged"
    small = rng.random(40) < 0.8
    other = small.copy()
    other[:3] = ~other[:3]
    cmp = compare_runs([accuracy_result(small)], [accuracy_result(other)])
    assert row(cmp, "accuracy", "accuracy").verdict == "inconclusive"


def test_paired_effect_matches_mcnemar_by_hand():
    base = np.array([1] * 50 + [0] * 50)
    head = np.array([1] * 40 + [0] * 10 + [1] * 2 + [0] * 48)  # 10 lost, 2 gained
    e = paired_proportion_effect(base, head)
    assert e.estimate == pytest.approx(-8 / 100)
    assert e.p_value == pytest.approx(st.binomtest(2, 12, 0.5).pvalue)


def test_unpaired_accuracy_without_samples():
    b = Result(Cell("accuracy", "nlp", "jax"), metrics={"accuracy": 0.90, "n_test": 5000})
    h = Result(Cell("accuracy", "nlp", "jax"), metrics={"accuracy": 0.86, "n_test": 5000})
    cmp = compare_runs([b], [h])
    acc = row(cmp, "accuracy", "accuracy")
    assert acc.verdict == "regression" and "Fisher" in acc.method
    e = two_proportion_effect(450, 500, 430, 500)
    assert e.ci_low < -0.04 < e.ci_high
    # without n: the threshold rule alone
    b2 = Result(Cell("accuracy", "nlp", "tf"), metrics={"accuracy": 0.90, "macro_f1": 0.8,
                                                        "rmse": 1.0})
    h2 = Result(Cell("accuracy", "nlp", "tf"), metrics={"accuracy": 0.895, "macro_f1": 0.7,
                                                        "rmse": 1.2})
    cmp2 = compare_runs([b2], [h2])
    assert row(cmp2, "tf", "accuracy").verdict == "unchanged"
    assert row(cmp2, "tf", "macro_f1").verdict == "regression"
    assert row(cmp2, "tf", "rmse").verdict == "regression"


def test_metric_directions():
    assert metric_direction("accuracy") == (True, "points")
    assert metric_direction("robust_accuracy@pgd:0.03") == (True, "points")
    assert metric_direction("hr@10") == (True, "points")
    assert metric_direction("rmse") == (False, "ratio")
    assert metric_direction("peak_host_memory_mb") is None
    assert metric_direction("time_to_accuracy_s") is None


# ----------------------------------------------------------------------------- memory, cells


def test_memory_rule():
    rng = np.random.default_rng(12)
    b = speed_result(rng, metrics={"peak_host_memory_mb": 1000.0, "peak_device_memory_mb": 500})
    h = speed_result(rng, metrics={"peak_host_memory_mb": 1300.0, "peak_device_memory_mb": 505})
    cmp = compare_runs([b], [h])
    assert row(cmp, "speed", "peak_host_memory_mb").verdict == "regression"
    assert row(cmp, "speed", "peak_device_memory_mb").verdict == "unchanged"
    cmp = compare_runs([b], [h], Thresholds(memory_increase=0.5, memory_limit_mb=1200))
    assert "limit" in row(cmp, "speed", "peak_host_memory_mb").reason


def test_missing_new_failed_and_skipped_cells():
    rng = np.random.default_rng(13)
    a, b, c, d = (speed_result(rng, task=t) for t in ("a", "b", "c", "d"))
    c_head = Result(c.cell, status="crashed", error="SIGSEGV")
    d_base = Result(d.cell, status="skipped", error="tensorflow not installed")
    e = speed_result(rng, task="e")
    cmp = compare_runs([a, b, c, d_base], [b, c_head, d, e])
    verdicts = {r.key.split("/")[1]: r.verdict for r in cmp.rows if r.name == "cell"}
    assert verdicts == {"a": "missing", "c": "failed", "d": "new", "e": "new"}
    assert cmp.worst_verdict == "failed"
    parity = Result(Cell("parity", "vision", "jax"), details={"rows": []})
    only = compare_runs([parity], [parity]).rows
    assert [(r.verdict, r.gated) for r in only] == [("skipped", False)]
    assert "SIGSEGV" in next(r.reason for r in cmp.rows if r.verdict == "failed")


# ----------------------------------------------------------------------------- drift


def test_canary_drift_is_discounted():
    rng = np.random.default_rng(14)
    slow = 1 / 1.15  # the head machine is 15% slower for everything
    base = [speed_result(rng, task=t) for t in "abc"] + [canary_result(rng)]
    head = [speed_result(rng, slow, task=t) for t in "ab"] + [speed_result(rng, slow / 1.3,
                                                                           task="c")]
    no_canary = compare_runs(base[:3], head)
    assert row(no_canary, "/a/", "throughput").verdict == "regression"
    reported = compare_runs(base, head + [canary_result(rng, slow)])
    assert reported.drift is not None and reported.drift.applied == 1.0  # reported, not applied
    assert row(reported, "/a/", "throughput").verdict == "regression"
    cmp = compare_runs(base, head + [canary_result(rng, slow)], Thresholds(drift_correction=True))
    assert cmp.drift is not None and cmp.drift.applied == pytest.approx(slow, rel=0.03)
    assert row(cmp, "/a/", "throughput").verdict != "regression"
    assert row(cmp, "/a/", "latency").verdict != "regression"
    assert row(cmp, "/c/", "throughput").verdict == "regression"  # real regression survives
    canary_row = row(cmp, "canary", "gflops")
    assert not canary_row.gated
    assert "drift" in cmp.summary()


def test_implausible_drift_is_reported_not_applied():
    rng = np.random.default_rng(16)
    base = [speed_result(rng, task="a"), canary_result(rng)]
    head = [speed_result(rng, task="a"), canary_result(rng, 1 / 13)]  # canary x13, cells unchanged
    cmp = compare_runs(base, head, Thresholds(drift_correction=True))
    assert cmp.drift is not None and cmp.drift.applied == 1.0
    assert row(cmp, "/a/", "throughput").verdict != "regression"


def test_no_drift_correction_for_an_unchanged_canary():
    rng = np.random.default_rng(15)
    cmp = compare_runs([canary_result(rng), speed_result(rng)],
                       [canary_result(rng), speed_result(rng)])
    assert cmp.drift is not None and cmp.drift.applied == 1.0


def test_a_drift_not_applied_says_which_rule_kept_it_out():
    rng = np.random.default_rng(17)
    base = [speed_result(rng, task="a"), canary_result(rng)]
    on = Thresholds(drift_correction=True)
    cases = {  # head canary speed factor, thresholds -> the reason
        "drift correction is off": (1 / 1.15, Thresholds()),
        "beyond drift_max (25%)": (1 / 13, on),
        "within drift_tolerance (50%)": (1 / 1.15, Thresholds(drift_correction=True, drift_tolerance=0.5)),
    }
    for reason, (factor, th) in cases.items():
        d = compare_runs(base, [speed_result(rng, task="a"), canary_result(rng, factor)], th).drift
        assert d is not None and d.applied == 1.0 and d.why_not.startswith(f"not corrected: {reason}"), (reason, d)
        assert d.describe().endswith(d.why_not)
    flagged_head = [speed_result(rng, task="a"), flagged(canary_result(rng, 1 / 1.15), "contended", 0.4)]
    d = compare_runs(base, flagged_head, on).drift
    assert d is not None and d.why_not.startswith("ignored: head canary contended")
    applied = compare_runs(base, [speed_result(rng, task="a"), canary_result(rng, 1 / 1.15)], on).drift
    assert applied is not None and applied.applied != 1.0 and applied.why_not == ""
    assert applied.describe().endswith("corrected") and "not corrected" not in applied.describe()


def test_canary_workload_measures_gflops():
    m = canary_workload(n=64, max_time=0.2)
    assert m.name == "gflops" and m.higher_is_better and len(m.samples) >= 30
    assert all(v > 0 for v in m.samples) and m.stats is not None
    assert "contention" in m.meta and isinstance(m.flags, list)  # sampled like every speed figure
    again = canary_workload(n=64, max_time=0.1)
    assert again.meta["checksum"] == m.meta["checksum"]  # the same fixed workload


# ----------------------------------------------------------------------------- environment


def test_environment_diff():
    a = {"python": "3.11.7", "frameworks": {"torch": "2.12.0", "jax": "0.10.2"},
         "cpu": {"model": "AMD EPYC", "count": 2}, "gpu": [], "time": 1.0,
         "memory": {"available_mb": 100}}
    b = {"python": "3.12.1", "frameworks": {"torch": "2.13.0", "jax": "0.10.2"},
         "cpu": {"model": "Intel Xeon", "count": 2}, "gpu": [{"name": "H100"}], "time": 2.0,
         "memory": {"available_mb": 900}}
    lines = environment_diff(a, b)
    text = "\n".join(lines)
    assert "frameworks.torch: 2.12.0 -> 2.13.0" in text
    assert "python: 3.11.7 -> 3.12.1" in text
    assert "cpu.model: AMD EPYC -> Intel Xeon" in text
    assert "H100" in text
    assert "jax" not in text and "time" not in text and "available" not in text
    assert environment_diff(a, a) == []
    assert environment_diff(a, {}) and environment_diff({}, {}) == []
    rng = np.random.default_rng(16)
    r1, r2 = speed_result(rng), speed_result(rng)
    r1.environment, r2.environment = a, b
    assert compare_runs([r1], [r2]).environment == lines


def test_environment_diff_of_real_fingerprints():
    from dlbench.measure.environment import fingerprint

    a = fingerprint()
    b = {**a, "versions": {**a["versions"], "torch": "9.9.9"}, "hostname": "elsewhere",
         "digest": "0" * 16}
    assert environment_diff(a, dict(a)) == []
    assert environment_diff(a, b) == [f"versions.torch: {a['versions'].get('torch', '(none)')}"
                                      " -> 9.9.9" if "torch" in a["versions"] else
                                      "versions.torch: only in head (9.9.9)"]


# ----------------------------------------------------------------------------- flags, processes


def flagged(r: Result, flag: str, contention: float = 0.31) -> Result:
    for m in r.measurements:
        m.flag(flag)
        if flag == "contended":
            m.meta["contention"] = contention
    return r


FLAG_REASONS = {"contended": "contended (31% run-queue wait)", "not_converged": "not converged",
                "drifting": "drifting", "inconsistent": "inconsistent",
                "repeats_disagree": "repeats disagree"}


@pytest.mark.parametrize("side", ["base", "head"])
@pytest.mark.parametrize("flag", sorted(FLAG_REASONS))
def test_a_flag_makes_a_would_be_regression_inconclusive(flag, side):
    rng = np.random.default_rng(20)
    base, head = speed_result(rng), speed_result(rng, 1 / 1.2)
    flagged(base if side == "base" else head, flag)
    cmp = compare_runs([base], [head])
    for name in ("throughput", "latency"):
        r = row(cmp, "speed", name)
        assert r.verdict == "inconclusive", r.reason
        assert f"{side} {FLAG_REASONS[flag]}" in r.reason
        assert "would be a regression" in r.reason
        assert r.flags == [f"{side} {flag}"]
        assert math.isnan(r.q_value) and f"p={r.p_value:.2g}" in r.reason  # not in the family
    assert cmp.worst_verdict == "inconclusive"
    again = np.random.default_rng(20)
    unflagged = compare_runs([speed_result(again)], [speed_result(again, 1 / 1.2)])
    assert unflagged.rows[0].verdict == "regression"
    assert cmp.rows[0].ratio == pytest.approx(unflagged.rows[0].ratio)  # same figure, other verdict


def test_flagged_unchanged_only_when_the_ci_survives_the_flag():
    rng = np.random.default_rng(21)
    base = [speed_result(rng, sigma=0.01, task=t) for t in "abc"]
    head = [speed_result(rng, sigma=0.01, task=t) for t in "abc"]
    flagged(head[0], "not_converged")  # a wider CI, still honest: may prove "unchanged"
    flagged(head[1], "contended")  # a biased figure: proves nothing
    flagged(head[2], "repeats_disagree")  # window-level test ignores the between-process spread
    cmp = compare_runs(base, head)
    assert row(cmp, "/a/", "throughput").verdict == "unchanged"
    assert "despite: head not converged" in row(cmp, "/a/", "throughput").reason
    b = row(cmp, "/b/", "throughput")
    assert b.verdict == "inconclusive" and "biased figure" in b.reason
    assert row(cmp, "/c/", "throughput").verdict == "inconclusive"


def process_result(rng: np.random.Generator, medians: list[float], n: int = 30,
                   sigma: float = 0.02, rho: float = 0.5) -> Result:
    """k fresh processes of AR(1) windows around each process's median, combined as the repeats
    helper does: pooled samples, ``meta["process_medians"]``, ``meta["repeats"]``."""
    cell = Cell("speed", "vision", "torch", "cpu", {"batch_size": 32, "mode": "train"})
    samples: list[float] = []
    pm = []
    for med in medians:
        w = med * np.exp(ar1(rng, n, rho, sigma))
        samples += w.tolist()
        pm.append(float(np.median(w)))
    m = Measurement("throughput", "samples/s", samples, quick_stats(np.asarray(samples)),
                    meta={"process_medians": pm, "repeats": len(medians)})
    return Result(cell, measurements=[m])


def test_consistent_slowdown_over_three_processes_is_a_regression():
    rng = np.random.default_rng(22)
    base = process_result(rng, [1000, 1010, 990])
    head = process_result(rng, [830, 840, 825])  # 20% slower in every process
    r = row(compare_runs([base], [head]), "speed", "throughput")
    assert r.verdict == "regression", r.reason
    assert r.level == "processes" and "Welch" in r.method and (r.n_base, r.n_head) == (3, 3)
    assert r.ci_low <= 1 / 1.2 <= r.ci_high
    assert r.base_median == pytest.approx(1000, rel=0.02)


def test_between_process_spread_is_not_a_confirmed_regression():
    """Three processes per side whose medians spread by +-20%: the pooled windows differ by 20%
    and a rank test on them is certain, the process medians are not."""
    rng = np.random.default_rng(23)
    base = process_result(rng, [1000, 1250, 1500])
    head = process_result(rng, [850, 1050, 1250])
    pooled = ratio_effect(base.measurements[0].samples, head.measurements[0].samples,
                          serial=False)
    assert pooled.p_value < 1e-6 and pooled.estimate < 1 / 1.15  # what pooling would claim
    r = row(compare_runs([base], [head]), "speed", "throughput")
    assert r.level == "processes" and r.verdict == "inconclusive", r.reason
    assert r.p_value > 0.05 and r.ci_low < 1 < r.ci_high


def test_one_process_against_several_uses_their_spread():
    rng = np.random.default_rng(24)
    several = process_result(rng, [1000, 1200, 900])
    one = speed_result(rng, 1.0)  # a baseline without repeats: one process
    r = row(compare_runs([one], [several]), "speed", "throughput")
    assert r.level == "processes" and "one process against 3" in r.method
    assert r.verdict == "inconclusive"
    consistent = process_result(rng, [800, 805, 795])
    assert row(compare_runs([one], [consistent]), "speed", "throughput").verdict == "regression"


def test_effective_sample_size_of_autocorrelated_windows():
    rng = np.random.default_rng(25)
    iid = [effective_sample_size(np.exp(rng.normal(0, 0.05, 60))) for _ in range(50)]
    slow = [effective_sample_size(np.exp(ar1(rng, 60, 0.8, 0.05))) for _ in range(50)]
    assert 40 < np.median(iid) <= 60
    assert np.median(slow) < 15  # AR(1) rho=0.8: n (1-rho)/(1+rho) = 6.7
    assert effective_sample_size([1.0, 2.0, 3.0]) == 3.0
    e = ratio_effect(np.exp(ar1(rng, 30, 0.8, 0.05)), np.exp(ar1(rng, 30, 0.8, 0.05)))
    assert "autocorrelation-aware" in e.method and e.n_eff_base < 30


def test_contended_canary_is_reported_not_applied():
    rng = np.random.default_rng(26)
    slow = 1 / 1.15
    base = [speed_result(rng, task="a"), canary_result(rng)]
    head = [speed_result(rng, slow, task="a"), flagged(canary_result(rng, slow), "contended",
                                                        0.4)]
    cmp = compare_runs(base, head, Thresholds(drift_correction=True))
    assert cmp.drift is not None and cmp.drift.applied == 1.0
    assert cmp.drift.ignored == "head canary contended (40% run-queue wait)"
    text = cmp.summary()
    assert "ignored: head canary contended (40% run-queue wait)" in text
    assert f"95% CI {cmp.drift.ci_low:.3f}..{cmp.drift.ci_high:.3f}" in text
    assert row(cmp, "/a/", "throughput").verdict == "regression"  # not corrected away
    clean = compare_runs(base, head[:1] + [canary_result(rng, slow)],
                         Thresholds(drift_correction=True))
    assert clean.drift is not None and clean.drift.applied != 1.0
    assert "corrected" in clean.summary() and "95% CI" in clean.summary()
