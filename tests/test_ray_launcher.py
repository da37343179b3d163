"""The Ray launcher runs cells on a (local) Ray cluster with the same isolation and statuses."""

from __future__ import annotations

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
