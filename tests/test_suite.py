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


# -- what a framework declares it offers, checked in the parent at load ----------------------------
def block(frameworks: str, extra: str = "") -> str:
    return f"name: t\nmatrix:\n  - scenario: speed\n    tasks: [vision]\n    frameworks: {frameworks}\n{extra}"


@pytest.mark.parametrize(("text", "pattern"), [
    (block("[torch, tensorflow]", "    params: {variant: [eager, graph]}\n"),
     r"s.yaml matrix\[0\].params: torch has no variant 'graph': choose one of eager, compiled "
     r"\(or exclude: \[\{framework: torch, variant: graph\}\]\)$"),
    (block("{torch: {}, sklearn: {precision: bf16}}"),
     r"s.yaml matrix\[0\].frameworks.sklearn: sklearn has no precision 'bf16': choose one of fp32 "),
    (block("[torch, sklearn]", "    devices: [cpu, 'cuda:1']\n"),
     r"s.yaml matrix\[0\].devices: sklearn has no device 'cuda:1': choose one of cpu "
     r"\(or exclude: \[\{framework: sklearn, device: cuda:1\}\]\)$"),
    (block("{keras: {backend: [jax, mxnet]}}"),
     r"s.yaml matrix\[0\].frameworks.keras: keras backend='mxnet': choose one of tensorflow, jax, torch$"),
    (block("{keras: {backend: jax}}", "    params: {variant: graph}\n"),
     r"s.yaml matrix\[0\].params: keras\[backend=jax\] has no variant 'graph' \(tensorflow backend only\)"),
])
def test_what_a_named_framework_does_not_offer_is_an_error_at_load(tmp_path, plugins, text, pattern):
    with pytest.raises(SuiteError, match=pattern) as info:
        suites.load(str(write(tmp_path, text)), plugins)
    assert "\n" not in str(info.value)


def test_exclude_lifts_the_check_and_wildcards_keep_their_cells(tmp_path, plugins):
    text = block("[torch, tensorflow]", "    params: {variant: [eager, graph]}\n"
                 "    exclude: [{framework: torch, variant: graph}]\n")
    keys = [c.key for c in suites.load(str(write(tmp_path, text)), plugins).cells(plugins)]
    assert len(keys) == 3 and not any(k.startswith("speed/vision/torch[cpu,graph") for k in keys)
    # `all` and `installed` name no framework: a cell its framework does not offer is kept, and
    # skipped in the parent with the reason (see test_cli_errors), never started
    cells = suites.load(str(write(tmp_path, block("all", "    params: {variant: graph}\n"))), plugins).cells(plugins)
    torch = next(c for c in cells if c.framework == "torch")
    assert plugins.frameworks.get("torch").unsupported(torch.device, torch.params) == \
        "torch has no variant 'graph': choose one of eager, compiled"
    assert plugins.frameworks.get("tensorflow").unsupported("cuda:0", {"variant": "graph", "precision": "bf16"}) is None


MISSING_FW = '''
import dlbench
from dlbench.framework import Framework

class Absent(Framework):
    name = "absentfw"
    modules = ("no_such_module_for_dlbench_tests",)
    variants = ("eager",)
    device_kinds = ("cpu",)
    def devices(self):
        raise AssertionError("the parent never asks an absent framework for its devices")
    def build(self, spec, weights, options):
        raise AssertionError("never built")

@dlbench.hookimpl
def dlbench_register_frameworks(register):
    register(Absent())
'''


def test_checks_use_class_attributes_only(tmp_path):
    """A framework that is not installed is checked (and stays skippable); nothing is imported."""
    import subprocess
    import sys

    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "absent.py").write_text(MISSING_FW)
    ok = write(tmp_path, block("[absentfw, torch]"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(block("[absentfw, torch, jax, tensorflow, keras]", "    params: {variant: compiled}\n"))
    script = textwrap.dedent(f"""
        import sys
        from dlbench.errors import SuiteError
        from dlbench.plugins import PluginConfig, Plugins
        from dlbench.run import suite as suites
        plugins = Plugins(PluginConfig(plugins_dirs=({str(tmp_path / "plug")!r},)))
        assert not plugins.frameworks.get("absentfw").availability().installed
        assert len(suites.load({str(ok)!r}, plugins).cells(plugins)) == 2
        try:
            suites.load({str(bad)!r}, plugins)
        except SuiteError as exc:
            print(exc)
        heavy = {{"torch", "tensorflow", "jax", "keras", "sklearn"}} & set(sys.modules)
        print("imported:", sorted(heavy))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "matrix[0].params: absentfw has no variant 'compiled': choose one of eager" in res.stdout
    assert "imported: []" in res.stdout
