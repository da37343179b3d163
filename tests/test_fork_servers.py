"""Fork servers (issue 15): the cells that time a first call run in processes forked from a server
that imported their framework and never ran a model; each child's first call is its process's
first, a crash, exit or hang is recorded as a spawned process's would be, and a server whose
preload left a thread running declines, so its cells are spawned."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_warm_workers import _pid, _run  # noqa: I001

from dlbench.cell import Cell
from dlbench.plugins import PluginConfig, get_plugins
from dlbench.run import forkserver
from dlbench.run.launch.base import Job, LaunchConfig
from dlbench.run.launch.warm import WarmLauncher
from dlbench.run.session import RunOptions, fork_group, warm_group

# A cold scenario (warm_ok False: a fresh process each) that counts the models its process ran, a
# per-process state a reused process would show, and loads the task's data (planted behaviours).
PROBE = '''
import os
from dlbench.api import Measurement, Scenario, hookimpl

RAN: list[int] = []  # models this process ran: a fresh process has run none before its cell


class Cold(Scenario):
    name = "cold"

    def run(self, ctx):
        ctx.dataset  # the blobs task's planted behaviours happen here
        RAN.append(1)
        ctx.result.metrics["models_run_in_process"] = float(len(RAN))
        ctx.result.metrics["pid"] = float(os.getpid())
        ctx.result.metrics["ppid"] = float(os.getppid())
        rollup = dict(ln.split(":", 1) for ln in open("/proc/self/smaps_rollup").read().splitlines()[1:])
        for k in ("Shared_Dirty", "Private_Dirty"):  # pages still shared with a server, and its own
            ctx.result.metrics[k] = float(rollup[k].split()[0])
        ctx.result.measurements.append(Measurement("first_call", "s", [0.5], higher_is_better=False))
        ctx.result.metrics["first_call_s"] = 0.5


@hookimpl
def dlbench_register_scenarios(register):
    register(Cold())
'''

# A framework like numpyfw whose preload starts a thread: forking its server would be unsafe.
THREADED = '''
import importlib.util, pathlib, threading, time
from dlbench.api import hookimpl

_spec = importlib.util.spec_from_file_location("_numpy_fw_base", pathlib.Path(__file__).with_name("numpy_fw.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)
NumpyFramework = _base.NumpyFramework


class Threaded(NumpyFramework):
    name = "threadedfw"

    def preload(self, threads, params):
        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()


@hookimpl
def dlbench_register_frameworks(register):
    register(Threaded())
'''


@pytest.fixture
def cold_dir(plugin_dir: Path) -> Path:
    (plugin_dir / "cold_scenario.py").write_text(PROBE)
    (plugin_dir / "threaded_fw.py").write_text(THREADED)
    return plugin_dir


COLD = """
name: f
timeout: 10
matrix:
  - scenario: cold
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {seed: [1, 2, 3]}
  - scenario: speed
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {batch_size: [4]}
    budget: {max_time: 0.2, warmup_time: 0.02, min_samples: 3, latency_samples: 20}
"""


def test_cold_cells_are_forked_from_one_server_and_each_is_a_new_process(tmp_path, cold_dir):
    results = _run(tmp_path, cold_dir, COLD, name="f")
    assert [r.status for r in results] == ["ok"] * 4, [(r.cell.key, r.error) for r in results]
    workers = [r.details["worker"] for r in results]
    assert all(w["forked"] and not w["warm"] and w["cells_before"] == 0 for w in workers)
    assert len({w["server"] for w in workers}) == 1  # one server for the group's four cells
    assert len({_pid(r) for r in results}) == 4  # four processes
    cold = [r for r in results if r.cell.scenario == "cold"]
    for r in cold:
        assert r.metrics["models_run_in_process"] == 1.0  # the server never ran one: no state
        assert r.metrics["ppid"] == r.details["worker"]["server"] and r.metrics["pid"] == _pid(r)
        assert r.metrics["first_call_s"] == 0.5 and r.measurement("first_call") is not None  # kept
        # the server's pages are the child's own, as a spawned process's imports are its own
        assert r.details["worker"]["populated"] and r.details["worker"]["populated_mb"] > 0
        assert r.metrics["Shared_Dirty"] < 0.25 * r.metrics["Private_Dirty"]
    speed = next(r for r in results if r.cell.scenario == "speed")
    assert speed.measurement("first_call") is not None and speed.measurement("throughput") is not None
    # --fresh-processes: a new interpreter per cell, and the same deterministic figures
    fresh = _run(tmp_path, cold_dir, COLD, "--fresh-processes", name="f")
    assert all("forked" not in r.details["worker"] for r in fresh)
    assert [r.metrics["models_run_in_process"] for r in fresh if r.cell.scenario == "cold"] == [1.0] * 3


PLANTED = """
name: f
timeout: 10
matrix:
  - {scenario: cold, tasks: [blobs], frameworks: [numpyfw], params: {behaviour: normal, seed: 1}}
  - {scenario: cold, tasks: [blobs], frameworks: [numpyfw], params: {behaviour: crash, seed: 0}}
  - {scenario: cold, tasks: [blobs], frameworks: [numpyfw], params: {behaviour: normal, seed: 2}}
  - {scenario: cold, tasks: [blobs], frameworks: [numpyfw], params: {behaviour: [exit, raise], seed: 0}}
  - {scenario: cold, tasks: [blobs], frameworks: [numpyfw], params: {behaviour: normal, seed: 3}}
  - {scenario: cold, tasks: [blobs], frameworks: [numpyfw], params: {behaviour: hang, seed: 0}}
  - {scenario: cold, tasks: [blobs], frameworks: [numpyfw], params: {behaviour: normal, seed: 4}}
"""


def _cases(results) -> dict:
    return {(r.cell.params["behaviour"], r.cell.params.get("seed")): r for r in results}


def test_a_crash_exit_or_hang_in_a_forked_cell_is_recorded_as_in_a_spawned_one(tmp_path, cold_dir):
    forked = _cases(_run(tmp_path, cold_dir, PLANTED, name="f"))
    spawned = _cases(_run(tmp_path, cold_dir, PLANTED, "--fresh-processes", name="f"))
    assert forked.keys() == spawned.keys() and len(forked) == 8
    for case, r in forked.items():  # same statuses, same messages
        assert (r.status, r.error) == (spawned[case].status, spawned[case].error), case
    crash, exit_, hang, raised = (forked[b, 0] for b in ("crash", "exit", "hang", "raise"))
    assert crash.status == "crashed" and "SIGKILL" in crash.error and "about to crash" in crash.log_tail
    assert exit_.status == "crashed" and "exit code 3" in exit_.error and "about to exit" in exit_.log_tail
    assert hang.status == "timeout" and "timeout of 10 s" in hang.error
    assert raised.status == "failed" and "Traceback" in raised.log_tail
    normal = [forked["normal", s] for s in (1, 2, 3, 4)]
    assert all(r.status == "ok" and r.details["worker"]["forked"] for r in normal)
    # one server lived through the crash, the exit and the hang: only their children died
    assert len({r.details["worker"]["server"] for r in normal}) == 1
    assert all("about to" not in r.log_tail and "Traceback" not in r.log_tail for r in normal)


def test_a_server_whose_preload_starts_a_thread_declines_and_its_cells_are_spawned(tmp_path, cold_dir):
    cfg = LaunchConfig(PluginConfig(plugins_dirs=(str(cold_dir),)), tmp_path / "artifacts", tmp_path / "logs")
    launcher = WarmLauncher(cfg)
    try:
        jobs = [Job(Cell("cold", "blobs", fw, "cpu", {"seed": s}, timeout=60), fork=f"g-{fw}")
                for fw in ("threadedfw", "numpyfw") for s in (1, 2)]
        results = list(launcher.run_many(jobs))
    finally:
        launcher.close()
    assert [r.status for r in results] == ["ok"] * 4, [r.error for r in results]
    threaded, plain = results[:2], results[2:]
    assert all("forked" not in r.details["worker"] for r in threaded)  # spawned afresh
    assert "1 thread beyond OpenBLAS's pools" in launcher.forks.declined["g-threadedfw"]
    assert all(r.details["worker"]["forked"] for r in plain) and "g-numpyfw" not in launcher.forks.declined


def test_no_fork_server_outlives_its_launcher(tmp_path, cold_dir):
    cfg = LaunchConfig(PluginConfig(plugins_dirs=(str(cold_dir),)), tmp_path / "artifacts", tmp_path / "logs")
    launcher = WarmLauncher(cfg)
    try:
        r = launcher.run_job(Job(Cell("cold", "blobs", "numpyfw", "cpu", {}, timeout=60), fork="g"))
        server = int(r.details["worker"]["server"])
        os.kill(server, 0)  # waiting for the group's next cell
        with pytest.raises(ProcessLookupError):
            os.kill(_pid(r), 0)  # its child is gone
    finally:
        launcher.close()
    with pytest.raises(ProcessLookupError):
        os.kill(server, 0)


def test_fork_group_is_the_process_group_of_every_fresh_once_run_cell(cold_dir):
    plugins = get_plugins(PluginConfig(plugins_dirs=(str(cold_dir),)))
    on = RunOptions()
    speed = Cell("speed", "blobs", "numpyfw", "cpu", {"batch_size": 1})
    acc = Cell("accuracy", "blobs", "numpyfw", "cpu", {"epochs": 1})
    group = fork_group(plugins, on, speed, 1)
    assert group is not None and group == warm_group(plugins, on, acc, 1)  # one key for both
    assert fork_group(plugins, on, speed.with_params(batch_size=64, variant="compiled"), 1) == group
    assert fork_group(plugins, on, speed.with_params(threads=2), 1) != group
    assert fork_group(plugins, on, acc, 1) is None  # a warm worker's
    assert fork_group(plugins, on, speed, 3) is None  # repeats: a new interpreter each
    assert fork_group(plugins, RunOptions(fresh_processes=True), speed, 1) is None
    assert fork_group(plugins, RunOptions(launcher="inline"), speed, 1) is None


@pytest.mark.parametrize("fw_name", ["torch", "tensorflow", "jax", "keras", "sklearn"])
def test_each_frameworks_preload_leaves_a_process_that_forks_safely(fw_name, tmp_path):
    """The real frameworks: their preload imports them and starts no thread beyond OpenBLAS's
    (checked in a new interpreter, as a server would be)."""
    import subprocess
    import sys

    fw = get_plugins().frameworks.get(fw_name)
    if not fw.availability().installed:
        pytest.skip(f"{fw_name} is not installed")
    template = tmp_path / "t.json"
    template.write_text(json.dumps({"cell": Cell("speed", "vision", fw_name, "cpu", {}).to_dict()}))
    code = ("import json, sys; from dlbench.run import forkserver; "
            "print(forkserver.why_not_fork(json.load(open(sys.argv[1])))); "
            f"print({fw.modules[0]!r} in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(template)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["None", "True"], out.stdout + out.stderr[-2000:]


def test_threads_beyond_openblas_pools_are_counted(monkeypatch):
    monkeypatch.setattr(forkserver, "fork_safe_threads", lambda: 1)
    monkeypatch.setattr(forkserver, "preload", lambda template: None)
    monkeypatch.setattr(forkserver, "threads_running", lambda: 2)
    assert forkserver.why_not_fork({}) is None  # the main thread and one OpenBLAS worker
    monkeypatch.setattr(forkserver, "threads_running", lambda: 4)
    assert forkserver.why_not_fork({}) == "2 threads beyond OpenBLAS's pools run after the preload"
    monkeypatch.setattr(forkserver, "preload", lambda template: (_ for _ in ()).throw(ImportError("no lib")))
    assert forkserver.why_not_fork({}) == "preload failed: ImportError: no lib"
