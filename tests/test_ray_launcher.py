"""The Ray launcher runs cells on a (local) Ray cluster with the same isolation and statuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli  # noqa: I001

pytest.importorskip("ray")


def test_ray_launcher_runs_cells_and_records_failures(tmp_path, plugin_dir):
    suite = tmp_path / "r.yaml"
    suite.write_text("""
name: r
timeout: 60
matrix:
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {behaviour: [normal, raise], epochs: 2}
""")
    db = f"sqlite:///{tmp_path}/r.db"
    res = run_cli("--plugins-dir", str(plugin_dir), "run", str(suite), "--store", db, "--launcher", "ray",
                  "--cpus-per-cell", "1", "--report", "json", "--output-dir", str(tmp_path / "out"))
    assert res.returncode == 1, res.stderr  # the planted failure is reported, the run completes
    from dlbench.store.database import Store

    st = Store(db)
    by = {r.cell.params["behaviour"]: r for r in st.results(st.latest_run_id()) if r.cell.scenario != "canary"}
    assert by["normal"].status == "ok" and by["normal"].metrics["accuracy"] > 0.5
    assert by["raise"].status == "failed" and "planted failure" in by["raise"].error


SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def test_driver_env_ships_dlbench_variables_with_an_absolute_data_dir(tmp_path, monkeypatch):
    from dlbench.run.launch.ray import driver_env

    monkeypatch.chdir(tmp_path)
    env = driver_env({"DLBENCH_DATA_DIR": "rel/data", "DLBENCH_OFFLINE": "1", "DLBENCH_PARENT_PID": "7",
                      "HOME": "/root", "PATH": "/bin"})
    assert env == {"DLBENCH_DATA_DIR": str(tmp_path / "rel" / "data"), "DLBENCH_OFFLINE": "1"}


@pytest.mark.skipif(not (SHARED_DATA / "mnist-5k").is_dir(), reason="needs the shared datasets in ../shared/data")
def test_a_data_dependent_cell_on_the_cluster_sees_the_drivers_data_dir(tmp_path, monkeypatch):
    """The cluster is started without the driver's DLBENCH_DATA_DIR (as a cluster started
    elsewhere would be); the driver's variables reach the cells through the runtime_env."""
    import ray

    from dlbench.data.registry import copy_dataset
    from dlbench.plugins import PluginConfig, get_plugins
    from dlbench.run import suite as suites
    from dlbench.run.session import RunOptions, Session
    from dlbench.store.database import Store

    plugins = get_plugins(PluginConfig())
    data = tmp_path / "data"
    for name in plugins.tasks.get("vision").datasets({"dataset": "mnist-5k"}):
        copy_dataset(plugins.datasets.get(name), SHARED_DATA, data)
    monkeypatch.delenv("DLBENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "node-cache"))  # the nodes' default: empty
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        monkeypatch.setenv("DLBENCH_DATA_DIR", str(data))
        monkeypatch.setenv("DLBENCH_OFFLINE", "1")
        path = tmp_path / "s.yaml"
        path.write_text("name: s\nmatrix:\n  - scenario: accuracy\n    tasks: {vision: {dataset: mnist-5k, model: mlp}}\n"
                        "    frameworks: [sklearn]\n    params: {epochs: 1, train_fraction: 0.3}\n")
        st = Store(f"sqlite:///{tmp_path}/r.db")
        opts = RunOptions(tmp_path / "out", "ray", reporters=(), quiet=True, cpus_per_cell=1, canary=False)
        session = Session(suites.load(str(path), plugins), plugins, opts, st).run()
        (result,) = st.results(session.run_id)
        assert result.status == "ok", result.error
        assert result.metrics["accuracy"] > 0.5
    finally:
        ray.shutdown()
