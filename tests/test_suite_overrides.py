"""Command-line overrides of a suite (``dlbench run SUITE -o KEY=VALUE``), as optimum-benchmark
users set ``backend.device=cuda``: applied to the file's data, validated like the file, one line
for each mistake, stored with the run's config."""

from __future__ import annotations

import pytest

from dlbench.errors import SuiteError
from dlbench.run.suite import apply_overrides
from dlbench.store.database import Store
from tests.conftest import run_cli


def _suite() -> dict:
    return {"name": "s", "timeout": 60, "matrix": [
        {"scenario": "speed", "tasks": ["t"], "params": {"batch_size": [1, 64]}, "budget": {"max_time": 2.0}},
        {"scenario": "accuracy", "tasks": ["t"], "params": {"epochs": 5}},
    ]}


def test_block_fields_override_the_blocks_that_set_them_else_every_block():
    d = apply_overrides(_suite(), ["budget.max_time=1", "params.batch_size=[1, 256]", "params.seed=3"], "s.yaml")
    assert d["matrix"][0]["budget"] == {"max_time": 1} and "budget" not in d["matrix"][1]
    assert d["matrix"][0]["params"]["batch_size"] == [1, 256] and "batch_size" not in d["matrix"][1]["params"]
    assert [b["params"]["seed"] for b in d["matrix"]] == [3, 3]  # no block set it: every block


def test_suite_fields_and_one_block():
    d = apply_overrides(_suite(), ["timeout=120", "matrix.1.params.epochs=2", "gate.alpha=0.01"], "s.yaml")
    assert d["timeout"] == 120 and d["matrix"][1]["params"]["epochs"] == 2 and d["gate"] == {"alpha": 0.01}
    assert d["matrix"][0]["params"] == {"batch_size": [1, 64]}


@pytest.mark.parametrize(("item", "pattern"), [
    ("budget.max_time", r"-o 'budget.max_time': give KEY=VALUE"),
    ("=3", r"give KEY=VALUE"),
    ("bugdet.max_time=1", r"unknown field 'bugdet'.*did you mean 'budget'"),
    ("matrix.7.params.epochs=1", r"s.yaml has 2 matrix blocks \(0..1\)"),
    ("params.batch_size=[1, 2", r"-o params.batch_size line \d+: not valid YAML"),
    ("timeout.x=1", r"-o timeout.x: timeout is not a mapping"),
])
def test_malformed_overrides_are_one_line(item, pattern):
    with pytest.raises(SuiteError, match=pattern):
        apply_overrides(_suite(), [item], "s.yaml")


SUITE = """
name: s
matrix:
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {epochs: 1}
"""


def test_overrides_are_validated_like_the_file_and_stored_with_the_run(tmp_path, plugin_dir):
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    db = f"sqlite:///{tmp_path}/r.db"
    common = ("--plugins-dir", str(plugin_dir), "run", str(suite), "--store", db, "--report", "json",
              "--output-dir", str(tmp_path / "out"))
    bad = run_cli(*common, "-o", "params.epochs=0")
    assert bad.returncode == 2 and "with its -o overrides" in bad.stderr and "epochs=0" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.db").exists()
    bad = run_cli(*common, "-o", "timeout=-1")
    assert bad.returncode == 2 and "field timeout" in bad.stderr
    ok = run_cli(*common, "-o", "params.epochs=2", "-o", "timeout=120")
    assert ok.returncode == 0, ok.stderr
    st = Store(db)
    info = st.run_info(st.latest_run_id())
    assert info.config["overrides"] == ["params.epochs=2", "timeout=120"]
    assert info.config["suite"]["timeout"] == 120 and info.config["suite"]["matrix"][0]["params"]["epochs"] == 2
    (r,) = [r for r in st.results(info.id) if r.cell.scenario == "accuracy"]
    assert r.status == "ok" and r.cell.params["epochs"] == 2
