"""Bad input: one clear line naming the problem and the fix, non-zero exit, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli  # noqa: I001


def one_line_error(res, pattern: str) -> None:
    import re

    assert res.returncode != 0
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in res.stderr + res.stdout


@pytest.mark.parametrize(("suite_text", "pattern"), [
    ("name: x\nmatrix:\n  - scenario: speed\n    tasks: [vision]\n    frameworks: [pytorch]\n",
     r"unknown framework 'pytorch' in .*bad.yaml matrix\[0\].frameworks: choose one of .*torch"),
    ("name: x\nmatrix:\n  - scenario: speed\n    tasks: [visoin]\n", r"unknown task 'visoin'.*vision"),
    ("name: x\nmatrix:\n  - scenario: speed\n    tasks: [vision]\n    devices: [tpu]\n",
     r"unknown device 'tpu': choose cpu, cuda or cuda:N"),
    ("name: x\nmatrixx: []\n", r"bad.yaml: field matrixx: unknown field.*did you mean 'matrix'"),
])
def test_malformed_suites(tmp_path, suite_text, pattern):
    p = tmp_path / "bad.yaml"
    p.write_text(suite_text)
    one_line_error(run_cli("run", str(p), "--store", f"sqlite:///{tmp_path}/r.db"), pattern)


def test_unknown_suite_name(tmp_path):
    one_line_error(run_cli("run", "quik", "--store", f"sqlite:///{tmp_path}/r.db"),
                   r"unknown suite 'quik': choose one of .*quick")


def test_unreachable_store(tmp_path):
    one_line_error(run_cli("run", "quick", "--store", "postgresql+psycopg://u:pw@127.0.0.1:9/none"),
                   r"cannot open results store .*\*\*\*.*check the --store URL")


def test_plugin_that_fails_to_import(tmp_path):
    (tmp_path / "broken.py").write_text("raise ImportError('planted')\n")
    res = run_cli("--plugins-dir", str(tmp_path), "list", "plugins")
    one_line_error(res, r"plugin file .*broken.py failed to import: ImportError: planted.*--disable-plugin broken")
    debug = run_cli("--plugins-dir", str(tmp_path), "--debug", "list", "plugins")
    assert "Traceback" in debug.stderr and debug.returncode != 0


def test_unknown_list_and_report_run(tmp_path):
    one_line_error(run_cli("list", "gadgets"), r"unknown list 'gadgets': choose one of .*frameworks")
    from dlbench.store.database import Store

    Store(f"sqlite:///{tmp_path}/r.db")
    one_line_error(run_cli("report", "7", "--store", f"sqlite:///{tmp_path}/r.db"), r"no run 7 in store")


MNIST_AND_BLOBS = """
name: s
matrix:
  - scenario: accuracy
    tasks: {vision: {dataset: mnist, model: mlp}}
    frameworks: [numpyfw]
    params: {epochs: 1}
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {epochs: 1}
"""


def test_missing_dataset_skips_only_its_cells_with_the_fix(tmp_path, plugin_dir):
    suite = tmp_path / "s.yaml"
    suite.write_text(MNIST_AND_BLOBS)
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    db = f"sqlite:///{tmp_path}/r.db"
    res = run_cli("--plugins-dir", str(plugin_dir), "run", str(suite), "--store", db, "--report", "json",
                  "--output-dir", str(tmp_path / "out"), env={"DLBENCH_DATA_DIR": str(empty), "DLBENCH_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    from dlbench.store.database import Store

    st = Store(db)
    by_task = {r.cell.task: r for r in st.results(st.latest_run_id())}
    assert by_task["vision"].status == "skipped"
    assert "dlbench data fetch mnist" in by_task["vision"].error
    assert by_task["blobs"].status == "ok"


SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs the shared datasets in ../shared/data")
def test_corrupt_dataset_fails_its_cells_and_the_run_exits_non_zero(tmp_path, plugin_dir):
    """A checksum mismatch is bad data, refused: its cell fails (not skipped) and the run exits 1."""
    from dlbench.data.registry import copy_dataset
    from dlbench.plugins import get_plugins
    from dlbench.store.database import Store

    cache = tmp_path / "cache"
    copy_dataset(get_plugins().datasets.get("mnist"), SHARED_DATA, cache)
    bad = cache / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(bad.read_bytes())
    raw[100] ^= 0xFF
    bad.write_bytes(bytes(raw))
    suite = tmp_path / "s.yaml"
    suite.write_text(MNIST_AND_BLOBS)
    db = f"sqlite:///{tmp_path}/r.db"
    res = run_cli("--plugins-dir", str(plugin_dir), "run", str(suite), "--store", db, "--report", "json",
                  "--output-dir", str(tmp_path / "out"), env={"DLBENCH_DATA_DIR": str(cache), "DLBENCH_OFFLINE": "1"})
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    st = Store(db)
    by_task = {r.cell.task: r for r in st.results(st.latest_run_id())}
    assert by_task["vision"].status == "failed"
    assert "corrupt file t10k-labels-idx1-ubyte.gz: digest mismatch" in by_task["vision"].error
    assert "dlbench data fetch mnist" in by_task["vision"].error
    assert by_task["blobs"].status == "ok"  # the other cell still ran


def test_list_attacks_names_each_attack_and_its_kind():
    res = run_cli("list", "attacks")
    assert res.returncode == 0, res.stderr
    rows = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if line.count("│") >= 3}
    assert {"fgsm", "pgd", "apgd", "square", "noise"} <= set(rows)
    assert "black-box" in rows["square"] and "white-box" in rows["pgd"] and "baseline" in rows["noise"]


def test_unsupported_variant_is_rejected_before_any_cell_starts(tmp_path):
    suite = tmp_path / "graph.yaml"
    suite.write_text("name: g\nmatrix:\n  - scenario: speed\n    tasks: [vision]\n    frameworks: [torch]\n"
                     "    params: {batch_size: 8, variant: graph}\n")
    pattern = (r"graph.yaml matrix\[0\].params: torch has no variant 'graph': choose one of eager, compiled "
               r"\(or exclude: \[\{framework: torch, variant: graph\}\]\)$")
    for extra in ((), ("--dry-run",)):
        res = run_cli("run", str(suite), "--store", f"sqlite:///{tmp_path}/r.db", "--output-dir",
                      str(tmp_path / "out"), *extra)
        one_line_error(res, pattern)
        assert res.returncode == 2
    assert not (tmp_path / "r.db").exists() and not (tmp_path / "out").exists()  # nothing stored


def test_a_wildcards_unoffered_cells_are_skipped_in_the_parent(tmp_path, plugin_dir):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nmatrix:\n  - scenario: accuracy\n    tasks: [blobs]\n    frameworks: installed\n"
                     "    params: {epochs: 1, variant: [eager, compiled]}\n")
    db = f"sqlite:///{tmp_path}/r.db"
    builtins = [a for fw in ("torch", "tensorflow", "jax", "keras", "sklearn", "onnxruntime",
                             "openvino") for a in ("--disable-plugin", fw)]
    res = run_cli("--plugins-dir", str(plugin_dir), *builtins, "run", str(suite), "--store", db,
                  "--report", "json", "--output-dir", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    from dlbench.store.database import Store

    st = Store(db)
    by_variant = {("compiled" if ",compiled" in r.cell.key else "eager"): r for r in st.results(st.latest_run_id())}
    assert by_variant["eager"].status == "ok"
    skipped = by_variant["compiled"]
    assert skipped.status == "skipped" and skipped.duration == 0.0  # recorded by the parent: no process
    assert skipped.error == "numpyfw has no variant 'compiled': choose one of eager"


@pytest.mark.parametrize(("body", "pattern"), [
    ("@dlbench.hookimpl\ndef dlbench_register_taskz(register):\n    pass\n",
     r"^error: plugin 'myplug' \(.*myplug.py\) implements unknown hook 'dlbench_register_taskz': "
     r"did you mean 'dlbench_register_tasks'\?$"),
    ("from dlbench.framework import Framework\nclass F(Framework):\n    name = 'f'\n"
     "@dlbench.hookimpl\ndef dlbench_register_frameworks(register):\n    register(F)\n",
     r"^error: plugin 'myplug' \(.*myplug.py\) registered the class F as a framework: register an instance, "
     r"register\(F\(\)\)$"),
])
def test_plugin_mistakes_are_one_line_and_exit_2(tmp_path, body, pattern):
    (tmp_path / "myplug.py").write_text("import dlbench\n" + body)
    res = run_cli("--plugins-dir", str(tmp_path), "list", "plugins")
    one_line_error(res, pattern)
    assert res.returncode == 2 and "internal error" not in res.stderr
