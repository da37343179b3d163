"""A new framework and a new task, one file each, run through ``dlbench run --plugins-dir``."""

from __future__ import annotations

import json

from conftest import run_cli  # noqa: I001

from dlbench.results import load
from dlbench.store import Store


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
    acc = df[(df.scenario == "accuracy") & (df.name == "accuracy")].value.iloc[0]
    assert acc > 0.8  # softmax regression separates three well-separated blobs
    lat = df[(df.name == "latency")]
    assert len(lat) == 1 and lat.batch_size.iloc[0] == 1
    run = Store(f"sqlite:///{db}").load_run(int(df.run_id.iloc[0]))
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
