"""Warm workers (issue 15): cells that time no first call share a long-lived process per group;
speed cells and scenarios with ``warm_ok = False`` always get a fresh one; a crash, an exit or a
hang kills only its worker and is recorded as a fresh process's would be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_cli  # noqa: I001

from dlbench.cell import Cell
from dlbench.plugins import PluginConfig, get_plugins
from dlbench.run.launch import warm
from dlbench.run.launch.base import Job, LaunchConfig
from dlbench.run.launch.warm import WarmLauncher, WarmLimits
from dlbench.run.session import RunOptions, warm_group
from dlbench.store.database import Store

# Two scenarios alike but for warm_ok; each reports its process and a first-call figure.
PROBE = '''
import os
from dlbench.api import Measurement, Scenario, hookimpl


class _Probe(Scenario):
    needs_data = False

    def run(self, ctx):
        ctx.result.metrics["pid"] = float(os.getpid())
        ctx.result.metrics["first_call_s"] = 1.0
        ctx.result.measurements.append(Measurement("first_call", "s", [1.0], higher_is_better=False))
        ctx.result.metrics["answer"] = 42.0


class WarmProbe(_Probe):
    name = "probe_warm"
    warm_ok = True


class ColdProbe(_Probe):
    name = "probe_cold"


@hookimpl
def dlbench_register_scenarios(register):
    register(WarmProbe())
    register(ColdProbe())
'''


@pytest.fixture
def probe_dir(plugin_dir: Path) -> Path:
    (plugin_dir / "probe_scenarios.py").write_text(PROBE)
    return plugin_dir


def _run(tmp_path: Path, plugins: Path, suite: str, *extra: str, name: str = "w") -> list:
    path = tmp_path / f"{name}.yaml"
    path.write_text(suite)
    db = tmp_path / f"{name}.db"
    res = run_cli("--plugins-dir", str(plugins), "run", str(path), "--store", f"sqlite:///{db}",
                  "--output-dir", str(tmp_path / "out"), "--report", "json", *extra, cwd=tmp_path)
    assert res.returncode in (0, 1), res.stderr + res.stdout
    st = Store(f"sqlite:///{db}")
    return [r for r in st.results(st.latest_run_id(name)) if r.cell.scenario != "canary"]


def _pid(r) -> int:
    return int(r.details["worker"]["pid"])


MIXED = """
name: w
matrix:
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {epochs: [1, 2, 3]}
  - scenario: speed
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {batch_size: [4]}
    budget: {max_time: 0.2, warmup_time: 0.02, min_samples: 3, latency_samples: 20}
  - scenario: probe_warm
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {seed: [1, 2]}
  - scenario: probe_cold
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {seed: [1, 2]}
"""


def test_accuracy_cells_share_a_worker_speed_and_cold_scenarios_do_not(tmp_path, probe_dir):
    results = _run(tmp_path, probe_dir, MIXED)
    assert {r.status for r in results} == {"ok"}, [(r.cell.key, r.error) for r in results]
    acc = [r for r in results if r.cell.scenario == "accuracy"]
    speed = [r for r in results if r.cell.scenario == "speed"]
    cold = [r for r in results if r.cell.scenario == "probe_cold"]
    warm = [r for r in results if r.cell.scenario == "probe_warm"]
    assert len(acc) == 3 and len(speed) == 1 and len(cold) == 2 and len(warm) == 2
    assert len({_pid(r) for r in acc}) == 1  # one worker ran the group's three cells
    assert all(r.details["worker"]["warm"] for r in acc)
    assert sorted(r.details["worker"]["cells_before"] for r in acc) == [0, 1, 2]
    # a speed cell and every cell of a warm_ok=False scenario: a fresh process each
    fresh = speed + cold
    assert all(not r.details["worker"]["warm"] and r.details["worker"]["cells_before"] == 0 for r in fresh)
    pids = [_pid(r) for r in fresh]
    assert len(set(pids)) == len(pids) and not set(pids) & {_pid(r) for r in acc + warm}
    assert speed[0].measurement("first_call") is not None  # its first call is a fresh process's
    assert all(r.metrics["first_call_s"] == 1.0 for r in cold)
    # a warm worker never reports a first-call figure past its first cell (first_epoch_s too)
    for r in acc + warm:
        if r.details["worker"]["cells_before"] > 0:
            assert "first_call_s" not in r.metrics and "first_epoch_s" not in r.metrics
            assert r.measurement("first_call") is None
            # nor its peak host memory as the cell's (it holds what earlier cells loaded)
            assert "peak_host_memory_mb" not in r.metrics
            if r in acc:  # the accuracy scenario measures it: kept as the worker's
                assert r.details["worker"]["peak_host_memory_mb"] > 0
    assert {int(r.metrics["pid"]) for r in warm} == {_pid(r) for r in warm}
    # each cell's log is its own, even in a shared worker
    logs = {r.cell.params["epochs"]: Path(r.details["log_file"]).read_text() for r in acc}
    assert len({r.details["log_file"] for r in acc}) == 3
    for epochs, text in logs.items():
        assert f"epoch {epochs}/{epochs}" in text
        assert not any(f"/{other}:" in text for other in logs if other != epochs)


PLANTED = """
name: w
timeout: 15
matrix:
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {behaviour: [normal], epochs: [1]}
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {behaviour: [crash], epochs: [1]}
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {behaviour: [normal], epochs: [2]}
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {behaviour: [exit, raise], epochs: [1]}
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {behaviour: [normal], epochs: [3]}
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {behaviour: [hang], epochs: [1]}
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {behaviour: [normal], epochs: [4]}
"""


def _by_case(results) -> dict:
    return {(r.cell.params["behaviour"], r.cell.params["epochs"]): r for r in results}


def test_a_crash_exit_or_hang_kills_only_its_worker_and_is_recorded_as_in_a_fresh_process(tmp_path, plugin_dir):
    warm = _by_case(_run(tmp_path, plugin_dir, PLANTED, name="w"))
    fresh = _by_case(_run(tmp_path, plugin_dir, PLANTED, "--fresh-processes", name="w"))
    assert warm.keys() == fresh.keys() and len(warm) == 8
    for case, r in warm.items():  # same statuses, same messages
        assert (r.status, r.error) == (fresh[case].status, fresh[case].error), case
    assert warm["crash", 1].status == "crashed" and "SIGKILL" in warm["crash", 1].error
    assert warm["exit", 1].status == "crashed" and "exit code 3" in warm["exit", 1].error
    assert warm["hang", 1].status == "timeout" and "timeout of 15 s" in warm["hang", 1].error
    assert warm["raise", 1].status == "failed" and "Traceback" in warm["raise", 1].log_tail
    assert "about to crash" in warm["crash", 1].log_tail and "about to exit" in warm["exit", 1].log_tail
    normal = [warm["normal", e] for e in (1, 2, 3, 4)]
    assert all(r.status == "ok" and r.metrics["accuracy"] > 0.8 for r in normal)  # the group went on
    # a new worker after each death: the crash, the exit and the hang each ended theirs
    assert len({_pid(r) for r in normal}) == 4
    assert all("about to" not in r.log_tail and "Traceback" not in r.log_tail for r in normal)
    # deterministic figures are the fresh processes' exactly
    for e in (1, 2, 3, 4):
        w, f = warm["normal", e], fresh["normal", e]
        assert w.metrics["accuracy"] == f.metrics["accuracy"]
        assert [p["train_loss"] for p in w.series["learning_curve"]] == \
            [p["train_loss"] for p in f.series["learning_curve"]]
        assert f.details["worker"] == {"pid": _pid(f), "cells_before": 0, "warm": False}


def _launcher(tmp_path: Path, plugin_dir: Path, limits: WarmLimits) -> WarmLauncher:
    cfg = LaunchConfig(PluginConfig(plugins_dirs=(str(plugin_dir),)), tmp_path / "artifacts", tmp_path / "logs")
    return WarmLauncher(cfg, limits)


def _jobs(n: int, group: str = "g") -> list[Job]:
    return [Job(Cell("accuracy", "blobs", "numpyfw", "cpu", {"epochs": e, "behaviour": "normal"}, timeout=120),
                group=group) for e in range(1, n + 1)]


GIB = 1024**3


@pytest.mark.parametrize(("limits", "rss", "pids"), [
    (WarmLimits(max_cells=2), None, [0, 0, 1, 1]),  # two cells per worker
    (WarmLimits(max_rss=1), None, [0, 1, 2, 3]),  # the real resident size is above 1 byte
    (WarmLimits(), [1 * GIB, 1.5 * GIB, 4.5 * GIB, 1 * GIB], [0, 0, 0, 1]),  # above 4 GiB after cell 3
    (WarmLimits(), [1 * GIB, 2.5 * GIB, 3.5 * GIB, 1 * GIB], [0, 0, 0, 1]),  # grew 2.5 GiB since cell 1
])
def test_a_worker_is_replaced_after_its_cell_count_or_memory_bound(tmp_path, plugin_dir, monkeypatch,
                                                                   limits, rss, pids):
    if rss is not None:
        sizes = iter(rss)
        monkeypatch.setattr(warm._Worker, "rss", lambda self: int(next(sizes)))
    launcher = _launcher(tmp_path, plugin_dir, limits)
    try:
        results = list(launcher.run_many(_jobs(4)))
    finally:
        launcher.close()
    assert [r.status for r in results] == ["ok"] * 4
    seen: dict[int, int] = {}
    assert [seen.setdefault(_pid(r), len(seen)) for r in results] == pids


def test_no_warm_worker_outlives_the_launcher_or_idles_beside_a_fresh_cell(tmp_path, plugin_dir):
    launcher = _launcher(tmp_path, plugin_dir, WarmLimits())
    try:
        first = launcher.run_job(_jobs(1)[0])
        assert first.status == "ok"
        pid = _pid(first)
        os.kill(pid, 0)  # waiting for the group's next cell
        fresh = launcher.run_job(Job(_jobs(1)[0].cell))  # no group: a fresh process
        assert fresh.status == "ok" and _pid(fresh) != pid and not fresh.details["worker"]["warm"]
        assert not launcher._idle  # the warm worker was stopped before the fresh process started
    finally:
        launcher.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_warm_group_follows_the_scenario_and_the_framework_settings(probe_dir):
    plugins = get_plugins(PluginConfig(plugins_dirs=(str(probe_dir),)))
    on = RunOptions()
    acc = Cell("accuracy", "blobs", "numpyfw", "cpu", {"epochs": 1, "variant": "eager"})
    group = warm_group(plugins, on, acc, 1)
    assert group is not None
    assert warm_group(plugins, on, acc.with_params(epochs=2, seed=3), 1) == group  # same group
    assert warm_group(plugins, on, acc.with_params(threads=2), 1) != group  # threads part it
    # variant and precision are options of a model, not of the process: they share it
    assert warm_group(plugins, on, acc.with_params(variant="compiled", precision="bf16"), 1) == group
    assert warm_group(plugins, on, Cell("probe_warm", "blobs", "numpyfw"), 1) is not None
    assert warm_group(plugins, on, Cell("speed", "blobs", "numpyfw", "cpu", {"batch_size": 1}), 1) is None
    assert warm_group(plugins, on, Cell("probe_cold", "blobs", "numpyfw"), 1) is None
    assert warm_group(plugins, on, acc, 3) is None  # repeats are process-level replicates
    assert warm_group(plugins, RunOptions(fresh_processes=True), acc, 1) is None
    assert warm_group(plugins, RunOptions(launcher="inline"), acc, 1) is None
    sweep = Cell("scalability", "blobs", "numpyfw", "cpu", {"axis": "train_fraction"})
    assert warm_group(plugins, on, sweep, 1) is not None
    assert warm_group(plugins, on, sweep.with_params(axis="batch_size"), 1) is None


# Two warm cells that each wait for the other (deadlock unless they run at once), then a cold
# cell that records whether both had ended before it started.
BARRIER = '''
import os, pathlib, time
from dlbench.api import Param, Scenario, hookimpl


class Barrier(Scenario):
    name = "barrier"
    warm_ok = True
    needs_data = False
    params = {"me": Param("a", "this cell's mark", ("a", "b"))}

    def run(self, ctx):
        folder = pathlib.Path(os.environ["BARRIER_DIR"])
        me = ctx.params["me"]
        (folder / me).write_text(str(os.getpid()))
        other = folder / ("b" if me == "a" else "a")
        while not other.exists():
            time.sleep(0.05)
        ctx.result.metrics["met"] = 1.0
        (folder / f"{me}.done").write_text("")


class Alone(Scenario):
    name = "alone"
    needs_data = False

    def run(self, ctx):
        folder = pathlib.Path(os.environ["BARRIER_DIR"])
        ctx.result.metrics["after_both"] = float((folder / "a.done").exists() and (folder / "b.done").exists())


@hookimpl
def dlbench_register_scenarios(register):
    register(Barrier())
    register(Alone())
'''

BARRIER_SUITE = """
name: w
timeout: 60
matrix:
  - scenario: barrier
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {me: [a, b]}
  - scenario: alone
    tasks: [blobs]
    frameworks: [numpyfw]
"""


def test_parallel_cells_run_warm_cells_at_once_and_a_fresh_cell_alone(tmp_path, plugin_dir, monkeypatch):
    (plugin_dir / "barrier_scenarios.py").write_text(BARRIER)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    monkeypatch.setenv("BARRIER_DIR", str(barrier))
    monkeypatch.setattr(warm, "idle_cores", lambda: 2)  # whatever the load of the test machine
    plugins = get_plugins(PluginConfig(plugins_dirs=(str(plugin_dir),)))
    opts = RunOptions()
    cells = [Cell("barrier", "blobs", "numpyfw", "cpu", {"me": me, "variant": "eager"}, timeout=60) for me in "ab"]
    alone = Cell("alone", "blobs", "numpyfw", "cpu", {"variant": "eager"}, timeout=60)
    jobs = [Job(c, group=warm_group(plugins, opts, c, 1)) for c in (*cells, alone)]
    assert jobs[0].group == jobs[1].group is not None and jobs[2].group is None
    cfg = LaunchConfig(PluginConfig(plugins_dirs=(str(plugin_dir),)), tmp_path / "artifacts", tmp_path / "logs")
    launcher = WarmLauncher(cfg, parallel=2)
    try:
        results = {r.cell.scenario + r.cell.params.get("me", ""): r for r in launcher.run_many(jobs)}
    finally:
        launcher.close()
    assert [results[k].status for k in ("barriera", "barrierb", "alone")] == ["ok"] * 3, \
        [(r.cell.key, r.error) for r in results.values()]
    assert _pid(results["barriera"]) != _pid(results["barrierb"])  # one group, two workers at once
    assert results["alone"].metrics["after_both"] == 1.0  # the fresh cell ran after both ended


def test_one_cell_at_a_time_by_default(tmp_path, plugin_dir, monkeypatch):
    """Without ``parallel`` the two barrier cells cannot meet: the first times out, alone."""
    (plugin_dir / "barrier_scenarios.py").write_text(BARRIER)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    monkeypatch.setenv("BARRIER_DIR", str(barrier))
    monkeypatch.setattr(warm, "idle_cores", lambda: 2)
    cfg = LaunchConfig(PluginConfig(plugins_dirs=(str(plugin_dir),)), tmp_path / "artifacts", tmp_path / "logs")
    launcher = WarmLauncher(cfg)
    cell = Cell("barrier", "blobs", "numpyfw", "cpu", {"me": "a", "variant": "eager"}, timeout=3)
    try:
        first = launcher.run_job(Job(cell, group="g"))
    finally:
        launcher.close()
    assert first.status == "timeout" and not (barrier / "b").exists()
