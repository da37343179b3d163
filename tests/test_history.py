"""Change-point detection and trend summaries on seeded synthetic histories."""

from __future__ import annotations

import numpy as np
import pytest

from dlbench.analysis.history import detect_steps, segments, trend


def series(rng: np.random.Generator, n: int, sigma: float = 0.02, level: float = 100.0):
    return level * np.exp(rng.normal(0, sigma, n))


@pytest.mark.parametrize("at", [6, 20, 33])
def test_planted_step_is_found_at_the_right_index(at):
    rng = np.random.default_rng(at)
    x = series(rng, 40)
    x[at:] *= 1.15
    assert detect_steps(x) == [at]


def test_two_steps_and_a_step_down():
    rng = np.random.default_rng(1)
    x = series(rng, 60)
    x[20:] *= 1.2
    x[42:] /= 1.3
    assert detect_steps(x) == [20, 42]


def test_no_step_in_flat_noise():
    rng = np.random.default_rng(2)
    false = sum(bool(detect_steps(series(rng, 40, sigma=0.05))) for _ in range(100))
    assert false <= 3  # alpha = 0.01 per searched segment (Bonferroni is conservative)


def test_single_outlier_is_not_a_step():
    rng = np.random.default_rng(3)
    x = series(rng, 30)
    x[15] *= 3
    assert detect_steps(x) == []


def test_step_is_located_despite_a_wild_outlier():
    rng = np.random.default_rng(8)
    x = series(rng, 40)
    x[28:] *= 1.15
    x[8] *= 20
    assert detect_steps(x) == [28]


def test_significant_but_tiny_step_is_ignored():
    rng = np.random.default_rng(4)
    x = series(rng, 60, sigma=0.002)
    x[30:] *= 1.01
    assert detect_steps(x, min_effect=0.05) == []
    assert detect_steps(x, min_effect=0.005) == [30]


def test_absolute_mode_and_bad_input():
    x = np.r_[np.zeros(10), np.ones(10)] + np.random.default_rng(5).normal(0, 0.05, 20)
    assert detect_steps(x, relative=False, min_effect=0.5) == [10]
    with pytest.raises(ValueError):
        detect_steps([1.0, float("nan"), 2.0])
    assert detect_steps([1.0, 2.0]) == []
    assert detect_steps([5.0] * 20) == []


def test_segments():
    segs = segments([1, 1, 1, 2, 2], [3])
    assert segs == [{"start": 0, "end": 3, "median": 1.0, "n": 3},
                    {"start": 3, "end": 5, "median": 2.0, "n": 2}]


def test_trend_of_a_latency_step_is_degrading():
    rng = np.random.default_rng(6)
    x = series(rng, 30)
    x[18:] *= 1.25
    pts = [{"run_id": i + 1, "commit": f"c{i}", "median": v} for i, v in enumerate(x)]
    t = trend(pts, higher_is_better=False)
    assert t["direction"] == "up" and t["assessment"] == "degrading"
    assert [s["index"] for s in t["steps"]] == [18]
    assert t["steps"][0]["commit"] == "c18" and t["steps"][0]["run_id"] == 19
    assert t["steps"][0]["change"] == pytest.approx(0.25, abs=0.05)
    assert t["change"] == pytest.approx(0.25, abs=0.05)
    assert t["n"] == 30 and len(t["segments"]) == 2


def test_trend_of_a_slow_drift_and_of_flat_noise():
    rng = np.random.default_rng(7)
    drift = series(rng, 40, sigma=0.01) * np.exp(-0.005 * np.arange(40))  # -0.5% per run
    t = trend(list(drift), higher_is_better=True)
    assert t["direction"] == "down" and t["assessment"] == "degrading"
    assert t["slope_ci"][0] <= -0.005 <= t["slope_ci"][1]
    flat = trend(list(series(rng, 40)), higher_is_better=True)
    assert flat["direction"] == "flat" and flat["assessment"] == "stable"
    assert trend([])["n"] == 0
    short = trend([1.0, None, 2.0])
    assert short["n"] == 2 and short["steps"] == []


def test_fewer_than_three_runs_say_so_instead_of_a_trend():
    one = trend([100.0], higher_is_better=True)
    assert one["n"] == 1 and one["change"] is None
    assert one["assessment"] == one["direction"] == "too few runs (1; a trend needs 3)"
    two = trend([100.0, 50.0], higher_is_better=True)  # halved: still no trend from two runs
    assert two["change"] == pytest.approx(-0.5) and two["assessment"].startswith("too few runs (2;")
    assert trend([100.0, 50.0])["assessment"] is None  # no direction of goodness asked
    three = trend([100.0, 100.0, 100.0], higher_is_better=True)
    assert three["assessment"] == "stable"
