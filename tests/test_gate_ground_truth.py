"""The gate against ground truth.

Real sessions (inline launcher) on a framework plugin whose step is a fixed amount of CPU work and
whose error rate is set by the test: planted slowdowns and accuracy drops are caught, identical
configurations rarely raise a false alarm, and a run taken while CPU-burning processes load the
machine never gives a regression (its figures are flagged and their rows inconclusive, or they
are measured right). Then simulated results (seeded AR(1) windows around a fixed mean with
process-level random offsets, in-process, fast): the false-positive rate over repeated identical
trials stays under alpha and a planted 20% slowdown is found. No wall-clock threshold is asserted.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

from dlbench.analysis.compare import Thresholds, compare_runs
from dlbench.analysis.effects import ratio_effect
from dlbench.analysis.gate import GateConfig, decide
from dlbench.cell import Cell
from dlbench.plugins import PluginConfig, get_plugins
from dlbench.result import Measurement, Result, Stats
from dlbench.run import suite as suites
from dlbench.run.session import RunOptions, Session
from dlbench.store.database import Store
from tests.sim_clock import ar1

PLUGINS = Path(__file__).resolve().parent / "fixtures" / "gate_plugins"
SUITE = """
name: gatecheck
matrix:
  - scenario: speed
    tasks: [labelled]
    frameworks: [steadyfw]
    params: {batch_size: 16}
    budget: {max_time: 2.0, warmup_time: 0.05, min_samples: 15, max_samples: 400, target_ci: 0.02, min_window: 0.04}
  - scenario: accuracy
    tasks: [labelled]
    frameworks: [steadyfw]
gate:
  thresholds: {speed: 0.05, accuracy: 0.01}
"""
BURNERS = 3  # CPU-bound processes loading this 2-core machine during one run


@pytest.fixture
def setup(tmp_path):
    plugins = get_plugins(PluginConfig(plugins_dirs=(str(PLUGINS),)))
    path = tmp_path / "gatecheck.yaml"
    path.write_text(SUITE)
    suite = suites.load(str(path), plugins)
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    cfg = GateConfig.model_validate(suite.model.gate)

    def run(monkeypatch, step_ms=5.0, flip=0.0, repeats=None):
        monkeypatch.setenv("STEADYFW_STEP_MS", str(step_ms))
        monkeypatch.setenv("STEADYFW_FLIP", str(flip))
        opts = RunOptions(tmp_path, launcher="inline", reporters=(), quiet=True,
                          canary=False, repeats=repeats)
        return store.results(Session(suite, plugins, opts, store).run().run_id)

    def gate(base, head):
        return decide(compare_runs(base, head, cfg.to_thresholds()), config=cfg)

    return run, gate


@contextmanager
def burning(n: int = BURNERS) -> Iterator[None]:
    """``n`` processes spinning ``while True: pass`` for as long as the block runs."""
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _speed_rows(d):
    return [r for r in d.rows if r.kind == "speed" and r.gated]


@pytest.mark.parametrize("repeats", [None, 3])
def test_planted_slowdown_is_a_regression(setup, monkeypatch, repeats):
    """20% more CPU work per step on unloaded runs, one process per side (window-level test) or
    three (process-level test). Other work on this shared machine can still contend a run; its
    figures then say so and the row is inconclusive, never a wrong verdict. Such a pair is
    measured again (three tries); only when every try was contended is the test skipped, since
    the planted change could not be measured."""
    run, gate = setup
    tries = []
    for _ in range(3):
        base = run(monkeypatch, 5.0, repeats=repeats)
        head = run(monkeypatch, 6.0, repeats=repeats)  # 20% slower
        d = gate(base, head)
        thr = next(r for r in _speed_rows(d) if r.name == "throughput")
        assert thr.level == ("processes" if repeats else "windows"), _debug(d)
        assert thr.verdict in ("regression", "inconclusive"), _debug(d)
        assert thr.verdict == "regression" or thr.flags, _debug(d)  # inconclusive: flagged
        if d.exit_code == 1:
            break
        tries.append(_debug(d))
    else:
        pytest.skip(f"every try was contended by other work on this machine: {tries}")
    planted = 1 / 1.2  # the CI (widened by 5% each way for the unmodelled offset) covers it
    assert thr.ci_low / 1.05 <= planted <= thr.ci_high * 1.05, _debug(d)


def test_planted_accuracy_drop_is_caught(setup, monkeypatch):
    run, gate = setup
    base = run(monkeypatch, flip=0.0)
    head = run(monkeypatch, flip=0.05)  # 5 points worse on the same 1000 examples
    d = gate(base, head)
    assert d.exit_code == 1, _debug(d)
    assert any(r.verdict == "regression" and r.kind == "accuracy" for r in d.rows)


def test_identical_configurations_rarely_alarm(setup, monkeypatch):
    run, gate = setup
    trials = 6
    runs = [run(monkeypatch, 5.0) for _ in range(trials + 1)]
    false_alarms = sum(gate(runs[0], r).exit_code == 1 for r in runs[1:])
    # alpha is 5% per row with FDR control; allow one alarm in six trials on a noisy shared machine
    assert false_alarms <= 1


@pytest.mark.parametrize("loaded", ["head", "base"])
def test_a_run_under_cpu_load_gives_no_wrong_verdict(setup, monkeypatch, loaded):
    """The same configuration twice, CPU-burning processes running during one of the two runs:
    the fixed CPU work takes longer in wall time there, exactly as a real model's would. No row
    may be a regression (or, with the base loaded, an improvement): either the sampler retook
    the contended windows and measured right, or the figure is flagged and the row inconclusive."""
    run, gate = setup
    if loaded == "base":
        with burning():
            base = run(monkeypatch, 5.0)
        head = run(monkeypatch, 5.0)
    else:
        base = run(monkeypatch, 5.0)
        with burning():
            head = run(monkeypatch, 5.0)
    d = gate(base, head)
    wrong = [r for r in d.rows if r.gated and r.verdict in ("regression", "improvement")]
    assert not wrong, _debug(d)
    assert d.exit_code != 1, _debug(d)
    for r in _speed_rows(d):  # a row that is not flagged was measured right
        if not r.flags:
            assert r.verdict in ("unchanged", "inconclusive"), _debug(d)


def _debug(d):
    return [(r.key, r.name, r.verdict, r.reason) for r in d.rows]


# ----------------------------------------------------------------------------- simulated

ALPHA = 0.05
TRIALS = 300
CELL = Cell("speed", "vision", "steadyfw", "cpu", {"batch_size": 16, "mode": "infer"})
NAN = float("nan")


def simulated_run(rng: np.random.Generator, processes: int, scale: float = 1.0, *,
                  windows: int = 40, rho: float = 0.6, sigma: float = 0.03,
                  between: float = 0.03) -> list[Result]:
    """One run of one speed cell: ``processes`` fresh processes, each with its own log-normal
    offset (sd ``between``: thread placement, clock, neighbours) and AR(1) windows around it
    (lag-1 autocorrelation ``rho``, sd ``sigma``), combined as process repeats are."""
    parts, medians = [], []
    for _ in range(processes):
        w = 1000 * scale * np.exp(rng.normal(0, between) + ar1(rng, windows, rho, sigma))
        parts.append(w)
        medians.append(float(np.median(w)))
    x = np.concatenate(parts)
    meta = {"process_medians": medians, "repeats": processes} if processes > 1 else {}
    stats = Stats(x.size, float(np.median(x)), float(x.mean()), float(x.std()), float(x.min()),
                  float(x.max()), NAN, NAN, NAN, NAN)
    return [Result(CELL, measurements=[Measurement("throughput", "samples/s", x.tolist(), stats,
                                                   meta=meta)])]


def _margin(trials: int, p: float = ALPHA) -> float:
    """Largest false-positive count an honest level-p test reaches with probability 0.999."""
    return float(st.binom.ppf(0.999, trials, p))


def test_simulated_false_positive_rate_and_power_with_process_repeats():
    """3 vs 3 processes with between-process offsets: the process-level test keeps its level
    (pooling the windows of those processes into one rank test would not), the gate rarely
    alarms, and a planted 20% slowdown is a regression in nearly every trial."""
    rng = np.random.default_rng(2026)
    significant = alarms = pooled = found = 0
    for _ in range(TRIALS):
        base, head = simulated_run(rng, 3), simulated_run(rng, 3)
        pure = compare_runs(base, head, Thresholds(min_effect=0.0)).rows[0]  # the test alone
        assert pure.level == "processes"
        significant += pure.verdict in ("regression", "improvement")
        alarms += decide(compare_runs(base, head)).exit_code == 1
        pooled += ratio_effect(base[0].measurements[0].samples,
                               head[0].measurements[0].samples, serial=False).p_value < ALPHA
        found += decide(compare_runs(base, simulated_run(rng, 3, 1 / 1.2))).exit_code == 1
    print(f"3 vs 3 processes: FPR {significant / TRIALS:.3f} (test), {alarms / TRIALS:.3f} "
          f"(gate alarms); pooled windows {pooled / TRIALS:.3f}; power at 20% {found / TRIALS:.3f}")
    assert significant <= _margin(TRIALS)
    assert alarms <= _margin(TRIALS)
    assert pooled > 3 * ALPHA * TRIALS  # the offsets are large enough to fool a pooled test
    assert found >= 0.9 * TRIALS


def test_simulated_false_positive_rate_of_one_process_per_side():
    """One process per side, autocorrelated windows (rho 0.6), no process offset: the
    autocorrelation-aware rank test keeps its level where the plain one (windows as independent
    draws) does not, and still finds a 20% slowdown. (With one process per side no test can see
    between-process variance: that is what process repeats are for.)"""
    rng = np.random.default_rng(2027)
    significant = naive = found = 0
    for _ in range(TRIALS):
        base, head = simulated_run(rng, 1, between=0.0), simulated_run(rng, 1, between=0.0)
        pure = compare_runs(base, head, Thresholds(min_effect=0.0)).rows[0]
        assert pure.level == "windows"
        significant += pure.verdict in ("regression", "improvement")
        naive += ratio_effect(base[0].measurements[0].samples, head[0].measurements[0].samples,
                              serial=False).p_value < ALPHA
        slow = simulated_run(rng, 1, 1 / 1.2, between=0.0)
        found += decide(compare_runs(base, slow)).exit_code == 1
    print(f"1 vs 1 process: FPR {significant / TRIALS:.3f} (autocorrelation-aware), "
          f"{naive / TRIALS:.3f} (windows as independent); power at 20% {found / TRIALS:.3f}")
    assert significant <= _margin(TRIALS)
    assert naive > 2 * ALPHA * TRIALS
    assert found >= 0.9 * TRIALS


def test_simulated_contended_head_never_regresses():
    """Every trial's head figure is 20% slower *and flagged contended* (the machine, not the
    code): never a regression, always inconclusive, and the gate exits 2."""
    rng = np.random.default_rng(2028)
    for _ in range(50):
        base, head = simulated_run(rng, 3), simulated_run(rng, 3, 1 / 1.2)
        head[0].measurements[0].flag("contended")
        head[0].measurements[0].meta["contention"] = 0.4
        d = decide(compare_runs(base, head))
        assert d.rows[0].verdict == "inconclusive" and d.exit_code == 2
        assert "head contended (40% run-queue wait)" in d.rows[0].reason
