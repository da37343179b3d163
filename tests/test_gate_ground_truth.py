"""The gate against ground truth: planted slowdowns and accuracy drops are caught; identical
configurations rarely raise a false alarm. Runs real sessions (inline launcher) on a framework
plugin whose step time and error rate are set by the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlbench import suite as suites
from dlbench.compare import compare_runs
from dlbench.gate import GateConfig, decide
from dlbench.plugins import PluginConfig, get_plugins
from dlbench.session import RunOptions, Session
from dlbench.store import Store

PLUGINS = Path(__file__).resolve().parent / "fixtures" / "gate_plugins"
SUITE = """
name: gatecheck
matrix:
  - scenario: speed
    tasks: [labelled]
    frameworks: [steadyfw]
    params: {batch_size: 16}
    budget: {max_time: 1.5, warmup_time: 0.05, min_samples: 15, max_samples: 25, target_ci: 0.0, min_window: 0.04}
  - scenario: accuracy
    tasks: [labelled]
    frameworks: [steadyfw]
gate:
  thresholds: {speed: 0.05, accuracy: 0.01}
"""


@pytest.fixture
def setup(tmp_path):
    plugins = get_plugins(PluginConfig(plugins_dirs=(str(PLUGINS),)))
    path = tmp_path / "gatecheck.yaml"
    path.write_text(SUITE)
    suite = suites.load(str(path), plugins)
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    cfg = GateConfig.model_validate(suite.model.gate)

    def run(monkeypatch, step_ms=5.0, flip=0.0):
        monkeypatch.setenv("STEADYFW_STEP_MS", str(step_ms))
        monkeypatch.setenv("STEADYFW_FLIP", str(flip))
        opts = RunOptions(store.url, tmp_path, launcher="inline", reporters=(), quiet=True, canary=False)
        return store.results(Session(suite, plugins, opts, store).run().run_id)

    def gate(base, head):
        return decide(compare_runs(base, head, cfg.to_thresholds()), config=cfg)

    return run, gate


def test_planted_slowdown_is_a_regression(setup, monkeypatch):
    run, gate = setup
    base = run(monkeypatch, 5.0)
    head = run(monkeypatch, 6.0)  # 20% slower
    d = gate(base, head)
    assert d.exit_code == 1, _debug(d)
    assert any(r.verdict == "regression" and r.name == "throughput" for r in d.rows)


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


def _debug(d):
    return [(r.key, r.name, r.verdict, r.reason) for r in d.rows]
