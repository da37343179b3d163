from __future__ import annotations

import textwrap

import pytest

from dlbench.errors import DlbenchError, SuiteError
from dlbench.plugins import PluginConfig, Plugins
from dlbench.run import suite as suites


@pytest.fixture(scope="module")
def plugins():
    return Plugins(PluginConfig())


def write(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent(text))
    return p


GOOD = """
name: t
matrix:
  - scenario: speed
    tasks: {vision: {dataset: digits}}
    frameworks: [torch]
    params: {batch_size: [1, 64], mode: [infer, train]}
"""


def test_expands_matrix_into_cells_with_stable_keys(tmp_path, plugins):
    s = suites.load(str(write(tmp_path, GOOD)), plugins)
    keys = [c.key for c in s.cells(plugins)]
    assert len(keys) == 4 == len(set(keys))
    assert "speed/vision/torch[cpu,eager,fp32,bs=64,dataset=digits,train]" in keys
    # defaults are filled in for the cell process but stay out of the key
    cell = s.cells(plugins)[0]
    assert cell.params["precision"] == "fp32" and cell.params["model"] in ("cnn", "mlp")
    assert keys == [c.key for c in suites.load(str(write(tmp_path, GOOD)), plugins).cells(plugins)]


def test_exclude_and_duplicates(tmp_path, plugins):
    text = GOOD + "    exclude: [{mode: train, batch_size: 1}]\n"
    s = suites.load(str(write(tmp_path, text)), plugins)
    assert len(s.cells(plugins)) == 3


@pytest.mark.parametrize(("text", "pattern"), [
    ("name: t\nmatrix:\n  - scenario: sped\n    tasks: [vision]\n",
     r"s.yaml matrix\[0\].scenario: choose one of accuracy, .*speed"),
    ("name: t\nmatrix:\n  - scenario: speed\n    tasks: [vison]\n",
     r"unknown task 'vison' in .*matrix\[0\].tasks: choose one of .*vision"),
    ("name: t\nmatrix:\n  - scenario: speed\n    tasks: [vision]\n    frameworks: [pytorch]\n",
     r"unknown framework 'pytorch' in .*frameworks: choose one of .*torch"),
    ("name: t\nmatrix:\n  - scenario: speed\n    tasks: [vision]\n    params: {bs: 4}\n",
     r"unknown parameter 'bs' .*choose one of .*batch_size"),
    ("name: t\nmatrix:\n  - scenario: speed\n    tasks: [vision]\n    params: {mode: fast}\n",
     r"mode='fast': choose one of infer, train"),
    ("name: t\nmatrix:\n  - scenario: speed\n    tasks: [vision]\n    devices: [gpu0]\n",
     r"field matrix.0.devices: .*unknown device 'gpu0': choose cpu, cuda or cuda:N"),
    ("name: t\nmatrx: []\n", r"field matrx: unknown field; choose one of .*matrix"),
    ("name: t\nmatrix:\n  - scenario: speed\n    task: [vision]\n", r"field matrix.0.task"),
    ("name: [t\n", r"line \d+: not valid YAML"),
])
def test_mistakes_name_file_field_and_choices(tmp_path, plugins, text, pattern):
    path = write(tmp_path, text)
    with pytest.raises(DlbenchError, match=pattern) as info:
        suites.load(str(path), plugins)
    assert "\n" not in str(info.value)


def test_names_resolve_to_suites_folder(plugins):
    assert suites.resolve("quick").name == "quick.yaml"
    with pytest.raises(SuiteError, match=r"unknown suite 'quik': choose one of .*quick"):
        suites.resolve("quik")


def test_every_shipped_suite_is_valid(plugins):
    for name in suites.available():
        s = suites.load(name, plugins)
        assert s.cells(plugins), name


def test_per_framework_overrides(tmp_path, plugins):
    text = """
name: t
matrix:
  - scenario: speed
    tasks: [vision]
    frameworks: {torch: {}, jax: {variant: compiled}}
    params: {batch_size: 8}
"""
    cells = suites.load(str(write(tmp_path, text)), plugins).cells(plugins)
    by_fw = {c.framework: c for c in cells}
    assert by_fw["torch"].params["variant"] == "eager" and by_fw["jax"].params["variant"] == "compiled"
    assert by_fw["jax"].key == "speed/vision/jax[cpu,compiled,fp32,bs=8]"
