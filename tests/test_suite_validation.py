"""Suites are validated completely at load: a careless or hostile file is one SuiteError line
naming the file (and the field, key or line), never a traceback, a hang or a memory blow-up."""

from __future__ import annotations

import os
import textwrap
import tracemalloc
from pathlib import Path

import pytest
from conftest import run_cli  # noqa: I001

from dlbench.errors import SuiteError
from dlbench.params import Param
from dlbench.plugins import PluginConfig, Plugins
from dlbench.run import suite as suites
from dlbench.run import yamlfile


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins(PluginConfig())


def write(tmp_path: Path, text: str | bytes, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(textwrap.dedent(text))
    return p


def refused(path: Path, plugins: Plugins, pattern: str) -> str:
    with pytest.raises(SuiteError, match=pattern) as info:
        suites.load(str(path), plugins)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def block(extra: str = "", params: str = "{batch_size: 8}", head: str = "") -> str:
    return (f"name: t\n{head}matrix:\n  - scenario: speed\n    tasks: [vision]\n    frameworks: [torch]\n"
            f"    params: {params}\n{extra}")


def laughs(levels: int) -> str:
    """The "billion laughs": each level a list of nine aliases of the one before (9**levels)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


# -- reading the file ------------------------------------------------------------------------------
def test_alias_bomb_is_refused_before_it_is_built_with_little_memory(tmp_path, plugins):
    text = f"name: bomb\n{laughs(9)}matrix:\n  - scenario: speed\n    tasks: [vision]\n    params: {{x: *a9}}\n"
    path = write(tmp_path, text)
    assert len(text.encode()) < 1000
    tracemalloc.start()
    try:
        refused(path, plugins, r"line \d+: more than 100,000 values once its aliases are expanded")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20, f"peak {peak:,} bytes"


def test_shipped_anchors_and_merges_still_load(tmp_path, plugins):
    """Aliases are bounded, not refused: the ready suites use anchors and merge keys, and a
    mapping may override what it merges."""
    for name in ("gpu", "robustness"):
        assert suites.load(name, plugins).cells(plugins)
    text = block(params="{<<: *p, batch_size: 16}", head="defaults: &p {batch_size: 8, mode: train}\n")
    data = yamlfile.read(write(tmp_path, text))
    assert data["matrix"][0]["params"] == {"batch_size": 16, "mode": "train"}


@pytest.mark.parametrize(("text", "pattern"), [
    (block(params="{batch_size: " + "[" * 40 + "1" + "]" * 40 + "}"), r"line 6: nested more than 32 deep"),
    (block(params="[" * 5000 + "]" * 5000), r"line 6: not valid YAML \(.*nesting depth.*\); fix the syntax"),
    (block(params="&p {batch_size: *p}"), r"alias \*p is inside the node it names"),
    ("name: t\ntimeout: 30\nmatrix: []\ntimeout: 60\n", r"line 4: duplicate key 'timeout' \(first on line 2\)"),
    (block(params="{batch_size: 8, mode: train, batch_size: 16}"),
     r"line 6: duplicate key 'batch_size' \(first on line 6\)"),
    ("name: t\nmatrix: [1\n", r"line \d+: not valid YAML"),
    ("name: t\nwhen: 2001-13-45\n", r"not valid YAML \(month must be in 1..12\)"),
    ("name: t\nn: " + "9" * 5000 + "\n", r"not valid YAML \(Exceeds the limit"),
])
def test_yaml_problems_are_one_line_naming_the_file(tmp_path, plugins, text, pattern):
    refused(write(tmp_path, text), plugins, pattern)


def test_non_utf8_directory_missing_fifo_and_oversized_files(tmp_path, plugins):
    refused(write(tmp_path, b"name: caf\xe9\nmatrix: []\n"), plugins, r"not UTF-8 text \(byte 9 is 0xe9\)")
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    refused(folder, plugins, r"is a directory, not a suite file")
    with pytest.raises(SuiteError, match=r"does not exist"):
        suites.load(str(tmp_path / "absent.yaml"), plugins)
    with pytest.raises(SuiteError, match=r"does not exist"):
        yamlfile.read(tmp_path / "absent.yaml")  # removed between resolve and read
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    refused(fifo, plugins, r"is not a regular file")  # opening it would block forever
    big = write(tmp_path, b"# " + b"x" * yamlfile.MAX_BYTES + b"\nname: t\n")
    refused(big, plugins, rf"{big.stat().st_size:,} bytes, more than the 1,048,576 a suite may have")
    bom = write(tmp_path, "\ufeff" + block(), name="bom.yaml")
    assert suites.load(str(bom), plugins).cells(plugins)


def test_memory_and_recursion_errors_are_one_line_naming_the_file(tmp_path, plugins, monkeypatch):
    path = write(tmp_path, block())

    def exhausted(*_: object) -> None:
        raise MemoryError

    monkeypatch.setattr(yamlfile.StrictLoader, "get_single_data", exhausted)
    refused(path, plugins, r"too large or too deeply nested to load; simplify the suite")
    monkeypatch.undo()

    def deep(*_: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(suites.SuiteModel, "model_validate", deep)
    refused(path, plugins, r"too large or too deeply nested to validate; simplify the suite")


# -- numbers have ranges ---------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "pattern"), [
    (block(head="timeout: .nan\n"), r"field timeout: Input should be a finite number"),
    (block(head="timeout: .inf\n"), r"field timeout: Input should be a finite number"),
    (block(head="timeout: -5\n"), r"field timeout: Input should be greater than 0"),
    (block("    timeout: .nan\n"), r"field matrix.0.timeout: Input should be a finite number"),
    (block(head="seed: -1\n"), r"field seed: Input should be greater than or equal to 0"),
    (block(params="{batch_size: 0}"), r"matrix\[0\].params: batch_size=0: must be an integer >= 1$"),
    (block(params="{batch_size: [8, -4]}"), r"batch_size=-4: must be an integer >= 1$"),
    (block(params="{seed: -3}"), r"seed=-3: must be an integer >= 0 and <= 4294967295"),
    (block(params="{threads: 0}"), r"threads=0: must be an integer >= 1"),
    ("name: t\nmatrix:\n  - scenario: accuracy\n    tasks: [vision]\n    frameworks: [torch]\n"
     "    params: {train_fraction: 1.5}\n", r"train_fraction=1.5: must be a number > 0 and <= 1$"),
    ("name: t\nmatrix:\n  - scenario: accuracy\n    tasks: [vision]\n    frameworks: [torch]\n"
     "    params: {learning_rate: .nan}\n", r"learning_rate=nan: must be a finite number$"),
    ("name: t\nmatrix:\n  - scenario: accuracy\n    tasks: [vision]\n    frameworks: [torch]\n"
     "    params: {epochs: 0}\n", r"epochs=0: must be an integer >= 1"),
    ("name: t\nmatrix:\n  - scenario: robustness\n    tasks: [vision]\n    frameworks: [torch]\n"
     "    params: {epsilons: [[4, -1]]}\n", r"epsilons=\[4, -1\]: must be a number >= 0$"),
    ("name: t\nmatrix:\n  - scenario: scalability\n    tasks: [vision]\n    frameworks: [torch]\n"
     "    params: {axis: train_fraction, values: [[0.5, 1.5]]}\n",
     r"matrix\[0\].params: values=\[0.5, 1.5\] for axis train_fraction: give a non-empty list of fractions"),
    ("name: t\nmatrix:\n  - scenario: speed\n    tasks: {nlp: {vocab_size: 2}}\n    frameworks: [torch]\n",
     r"matrix\[0\].tasks.nlp: vocab_size=2: must be an integer >= 3"),
    (block("    budget: {max_time: .nan}\n"), r"field matrix.0.budget: max_time=nan: must be a finite number"),
    (block("    budget: {max_time: 0}\n"), r"field matrix.0.budget: max_time=0: Input should be greater than 0"),
    (block("    budget: {target_ci: 1.5}\n"), r"target_ci=1.5: Input should be less than or equal to 1"),
    (block("    budget: {latency_samples: -4}\n"), r"latency_samples=-4: Input should be greater than or equal to 1"),
    (block("gate: {thresholds: {speed: .nan}}\n"), r"field gate.thresholds.speed: Input should be a finite number"),
    (block("gate: {thresholds: {alpha: 1.5}}\n"), r"field gate.thresholds.alpha: Input should be less than 1"),
])
def test_every_number_is_finite_and_in_range(tmp_path, plugins, text, pattern):
    refused(write(tmp_path, text), plugins, pattern)


def test_budget_values_are_stored_as_validated(tmp_path, plugins):
    cell = suites.load(str(write(tmp_path, block("    budget: {max_time: '2.5', min_samples: 40}\n"))),
                       plugins).cells(plugins)[0]
    assert cell.budget == {"max_time": 2.5, "min_samples": 40}


def test_plugins_declare_ranges_with_param_min_max():
    frac = Param(1.0, type=float, min=0, exclusive_min=True, max=1)
    assert frac.validate("f", 1.0) is None and frac.validate("f", 0.25) is None
    assert frac.validate("f", 0) == "f=0: must be a number > 0 and <= 1"
    assert frac.validate("f", float("inf")) == "f=inf: must be a finite number"
    count = Param(None, type=int, min=1)
    assert count.validate("n", None) is None and count.validate("n", True) == "n=True: expected int"
    assert Param([1], type=list, min=1).validate("v", [1, 0]) == "v=[1, 0]: must be a number >= 1"


# -- no empty lists, no unknown keys ---------------------------------------------------------------
@pytest.mark.parametrize(("text", "pattern"), [
    ("name: t\nmatrix: []\n", r"field matrix: List should have at least 1 item"),
    ("name: ''\nmatrix: [{scenario: speed, tasks: [vision]}]\n", r"field name: String should have at least 1"),
    ("name: t\nmatrix:\n  - scenario: speed\n    tasks: []\n", r"field matrix.0.tasks: an empty tasks list gives no cells"),
    ("name: t\nmatrix:\n  - scenario: speed\n    tasks: {}\n", r"field matrix.0.tasks: an empty tasks list"),
    ("name: t\nmatrix:\n  - scenario: speed\n    tasks: [vision]\n    frameworks: []\n",
     r"field matrix.0.frameworks: an empty frameworks list gives no cells: name at least one"),
    (block("    devices: []\n"), r"field matrix.0.devices: an empty devices list"),
    (block(params="{batch_size: []}"), r"matrix\[0\].params: batch_size=\[\]: an empty list gives no cells"),
    (block("    exclude: [{}]\n"), r"field matrix.0.exclude: an empty exclude entry would exclude every cell"),
    (block("    exclude: [{framework: torch}]\n"), r"matrix\[0\].exclude: excludes every cell of the block"),
    (block("    budget: {max_tme: 3}\n"),
     r"field matrix.0.budget: unknown key 'max_tme': choose one of .*max_time.* \(did you mean 'max_time'\?\)$"),
    (block("    exclude: [{framwork: sklearn}]\n"),
     r"matrix\[0\].exclude\[0\]: unknown key 'framwork': choose one of .*\(did you mean 'framework'\?\)$"),
    (block("gate: {thresold: {speed: 0.1}}\n"),
     r"field gate.thresold: unknown field; choose one of .*thresholds.*\(did you mean 'thresholds'\?\)$"),
    (block("gate: {thresholds: {sped: 0.1}}\n"),
     r"field gate.thresholds.sped: unknown field; choose one of .*\(did you mean 'speed'\?\)$"),
    (block("gate: {cells: {'speed/*': {acuracy: 0.1}}}\n"),
     r"field gate.cells.speed/\*.acuracy: unknown field;.*\(did you mean 'accuracy'\?\)$"),
    (block("    timout: 5\n"), r"field matrix.0.timout: unknown field; .*\(did you mean 'timeout'\?\)$"),
    (block(params="{bach_size: 8}"), r"unknown parameter 'bach_size' .*\(did you mean 'batch_size'\?\)$"),
    ('name: t\n"mat\\nrix\\e[31m": 1\n', r"field 'mat\\nrix\\x1b\[31m': unknown field; .*\(did you mean 'matrix'\?\)$"),
])
def test_empty_lists_and_unknown_keys_in_every_section(tmp_path, plugins, text, pattern):
    refused(write(tmp_path, text), plugins, pattern)


def test_a_combinatorial_explosion_is_refused_before_it_is_expanded(tmp_path, plugins):
    sizes = ", ".join(str(i) for i in range(1, 201))
    threads = ", ".join(str(i) for i in range(1, 101))
    refused(write(tmp_path, block(params=f"{{batch_size: [{sizes}], threads: [{threads}]}}")), plugins,
            r"matrix\[0\]: expands to more than 10,000 cells")


def test_the_cli_shows_a_hostile_suite_as_one_line_exit_2(tmp_path):
    bad = write(tmp_path, f"name: bomb\n{laughs(9)}matrix: [{{scenario: speed, tasks: [vision], x: *a9}}]\n")
    res = run_cli("run", str(bad), "--dry-run", "--store", f"sqlite:///{tmp_path}/r.db")
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "more than 100,000 values once its aliases are expanded" in lines[0]
    assert "Traceback" not in res.stderr + res.stdout and not (tmp_path / "r.db").exists()
