"""A cell never outlives its runner: after ``kill -9`` of ``dlbench run`` the hanging cell ends,
its temporary folder goes, and the run reads ``interrupted`` (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dlbench.run.launch.subprocess import remove_stale_cell_dirs
from dlbench.store.database import Store
from dlbench.store.liveness import orphaned

HANG = """
name: hang
matrix:
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {behaviour: [hang], epochs: 1}
"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie nobody reaped yet has ended too
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def _wait(predicate, what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit  # generous: the machine may be loaded; no timing asserted
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


COLD = """
from dlbench.api import Scenario, hookimpl


class Cold(Scenario):
    name = "cold"  # warm_ok False: its cells are forked from a fork server

    def run(self, ctx):
        ctx.dataset


@hookimpl
def dlbench_register_scenarios(register):
    register(Cold())
"""


@pytest.mark.parametrize("scenario", ["accuracy", "cold"])  # a warm worker's cell, a forked one
def test_kill_9_of_the_runner_ends_the_cell_and_interrupts_the_run(tmp_path, plugin_dir, scenario):
    suite = tmp_path / "hang.yaml"
    suite.write_text(HANG if scenario == "accuracy" else
                     HANG.replace("scenario: accuracy", "scenario: cold").replace(", epochs: 1", ""))
    (plugin_dir / "cold_scenario.py").write_text(COLD)
    db, pid_file = tmp_path / "r.db", tmp_path / "cell.pid"
    env = {**os.environ, "BLOBS_PID_FILE": str(pid_file)}
    proc = subprocess.Popen([sys.executable, "-m", "dlbench", "--plugins-dir", str(plugin_dir), "run",
                             str(suite), "--store", f"sqlite:///{db}", "--output-dir", str(tmp_path / "out")],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(lambda: pid_file.exists() and pid_file.read_text() != "" or proc.poll() is not None, "cell never started")
    assert proc.poll() is None
    cell_pid = int(pid_file.read_text())
    parent = int(Path(f"/proc/{cell_pid}/status").read_text().split("\nPPid:\t")[1].split()[0])
    assert (parent == proc.pid) == (scenario == "accuracy")  # a forked cell's parent: its server
    cell_dirs = list(Path(tempfile.gettempdir()).glob(f"dlbench-cell-{proc.pid}-*"))
    assert cell_dirs  # the cell's payload folder, named after its runner
    st = Store(f"sqlite:///{db}")
    run_id = st.latest_run_id("hang")
    assert st.run_info(run_id).status == "running"  # its runner is alive
    proc.kill()
    proc.wait()
    _wait(lambda: _gone(cell_pid), "the cell outlived its runner")
    _wait(lambda: _gone(parent), "the cell's fork server outlived its runner")
    _wait(lambda: not any(d.exists() for d in cell_dirs), "the cell's temporary folder was left")
    assert Store(f"sqlite:///{db}").run_info(run_id).status == "interrupted"


def test_stale_cell_folders_of_dead_runners_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"dlbench-cell-{dead.pid}-abc"
    live = tmp_path / f"dlbench-cell-{os.getpid()}-abc"
    other = tmp_path / "dlbench-cell-notapid"
    for d in (stale, live, other):
        d.mkdir()
        (d / "payload.json").write_text("{}")
    assert remove_stale_cell_dirs(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def test_orphaned_needs_this_host_and_a_dead_pid():
    import socket

    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert orphaned({"runner": {"pid": dead.pid, "host": host}})
    assert not orphaned({"runner": {"pid": dead.pid, "host": host + "-elsewhere"}})
    assert not orphaned({"runner": {"pid": os.getpid(), "host": host}})
    assert not orphaned({}) and not orphaned(None) and not orphaned({"runner": "x"})


def test_worker_guard_exits_when_its_parent_dies(tmp_path):
    """The poll thread alone (no parent-death signal): an intermediate parent exits, the worker
    that was waiting forever notices and removes its folder."""
    cell_dir = tmp_path / "dlbench-cell-0-x"
    cell_dir.mkdir()
    pid_file = tmp_path / "pid"
    code = f"""
import os, sys, time, subprocess
child = subprocess.Popen([sys.executable, "-c", '''
import os, time, pathlib
from dlbench.run import worker
worker.guard(None, pathlib.Path({str(cell_dir)!r}), poll=0.1)
pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))
time.sleep(3600)
'''], start_new_session=True)
while not os.path.exists({str(pid_file)!r}) or not open({str(pid_file)!r}).read():
    time.sleep(0.05)
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    pid = int(pid_file.read_text())
    _wait(lambda: _gone(pid), "the worker outlived its parent")
    _wait(lambda: not cell_dir.exists(), "the worker left its folder")


def test_sighup_ends_a_run_like_sigterm(tmp_path, plugin_dir):
    """Closing the terminal: the run is interrupted, its cell killed, the exit code is 130."""
    import signal

    suite = tmp_path / "hang.yaml"
    suite.write_text(HANG)
    db, pid_file = tmp_path / "r.db", tmp_path / "cell.pid"
    env = {**os.environ, "BLOBS_PID_FILE": str(pid_file)}
    proc = subprocess.Popen([sys.executable, "-m", "dlbench", "--plugins-dir", str(plugin_dir), "run",
                             str(suite), "--store", f"sqlite:///{db}", "--output-dir", str(tmp_path / "out")],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait(lambda: pid_file.exists() and pid_file.read_text() != "" or proc.poll() is not None, "cell never started")
    cell_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    _wait(lambda: _gone(cell_pid), "the cell outlived its runner")
    st = Store(f"sqlite:///{db}")
    assert st.run_info(st.latest_run_id("hang")).status == "interrupted"
