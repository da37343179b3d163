"""A new framework and a new task, one file each, run through ``dlbench run --plugins-dir``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli  # noqa: I001

from dlbench.results import load
from dlbench.store.database import Store


def test_new_framework_and_task_run_end_to_end(tmp_path, plugin_dir):
    suite = tmp_path / "mine.yaml"
    suite.write_text("""
name: mine
matrix:
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {epochs: 4, batch_size: 50}
  - scenario: speed
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {batch_size: [1, 32]}
    budget: {max_time: 0.3, warmup_time: 0.05, min_samples: 5, latency_samples: 120}
""")
    db = tmp_path / "r.db"
    res = run_cli("--plugins-dir", str(plugin_dir), "run", str(suite), "--store", f"sqlite:///{db}",
                  "--output-dir", str(tmp_path / "out"), "--report", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    df = load(f"sqlite:///{db}", suite="mine")
    assert set(df.status) == {"ok"}
    acc = df[(df.scenario == "accuracy") & (df.metric == "accuracy")].value.iloc[0]
    assert acc > 0.8  # softmax regression separates three well-separated blobs
    lat = df[(df.metric == "latency")]
    assert len(lat) == 1 and lat.batch_size.iloc[0] == 1
    run = Store(f"sqlite:///{db}").load_run(int(df["run"].iloc[0]))
    curve = next(r for r in run.results if r.cell.scenario == "accuracy").series["learning_curve"]
    assert [p["epoch"] for p in curve] == [1, 2, 3, 4]
    report = json.loads((tmp_path / "out" / f"run-{run.run.id}" / "report.json").read_text())
    assert report  # the JSON reporter wrote the run


def test_failures_are_recorded_and_the_run_goes_on(tmp_path, plugin_dir):
    suite = tmp_path / "bad.yaml"
    suite.write_text("""
name: bad
timeout: 20
matrix:
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {behaviour: [raise, crash, hang, normal], epochs: 1}
""")
    db = tmp_path / "r.db"
    res = run_cli("--plugins-dir", str(plugin_dir), "run", str(suite), "--store", f"sqlite:///{db}",
                  "--output-dir", str(tmp_path / "out"), "--report", "json", cwd=tmp_path)
    assert res.returncode == 1  # some cells did not finish ok
    st = Store(f"sqlite:///{db}")
    results = {r.cell.params["behaviour"]: r for r in st.results(st.latest_run_id("bad"))
               if r.cell.scenario != "canary"}
    assert results["raise"].status == "failed" and "planted failure" in results["raise"].error
    assert "Traceback" in results["raise"].log_tail
    assert results["crash"].status == "crashed" and "SIGKILL" in results["crash"].error
    assert "about to crash" in results["crash"].log_tail
    assert results["hang"].status == "timeout" and "timeout of 20 s" in results["hang"].error
    assert results["normal"].status == "ok" and results["normal"].metrics["accuracy"] > 0.5


def test_sigterm_keeps_results_and_kills_the_running_cell(tmp_path, plugin_dir):
    """``timeout``, a CI runner or ``kill`` stops a run as Ctrl-C does: no orphaned cell process,
    the finished cells stay stored, the run is marked interrupted."""
    suite = tmp_path / "long.yaml"
    suite.write_text("""
name: long
matrix:
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {behaviour: [normal, hang], epochs: 1}
""")
    db, pid_file = tmp_path / "r.db", tmp_path / "cell.pid"
    env = {**os.environ, "BLOBS_PID_FILE": str(pid_file)}
    proc = subprocess.Popen([sys.executable, "-m", "dlbench", "--plugins-dir", str(plugin_dir), "run",
                             str(suite), "--store", f"sqlite:///{db}", "--output-dir", str(tmp_path / "out")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not pid_file.exists() or not pid_file.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    cell_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr
    with pytest.raises(ProcessLookupError):
        os.kill(cell_pid, 0)
    st = Store(f"sqlite:///{db}")
    run = st.load_run(st.latest_run_id("long"))
    assert run.run.status == "interrupted"
    finished = [r for r in run.results if r.cell.scenario == "accuracy"]
    assert [r.cell.params["behaviour"] for r in finished] == ["normal"]
    assert finished[0].status == "ok"
