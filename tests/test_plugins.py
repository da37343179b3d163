from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from dlbench.errors import PluginError
from dlbench.plugins import PluginConfig, Plugins, Registry, hook_names

ROOT = Path(__file__).resolve().parent.parent


def test_builtins_register_through_entry_points():
    p = Plugins(PluginConfig())
    assert {i.source for i in p.infos} == {"entry point"}
    assert "torch" in p.frameworks and "vision" in p.tasks
    assert {"speed", "accuracy", "parity"} <= set(p.scenarios.names())
    # every built-in plugin is a module of dlbench.builtin (sources in plugins/), declared in
    # pyproject's entry points exactly as a third-party package declares its own
    pyproject = (ROOT / "pyproject.toml").read_text()
    for info in p.infos:
        assert info.module.startswith("dlbench.builtin."), info
        assert f'{info.name} = "{info.module}"' in pyproject


def test_autoload_can_be_disabled(monkeypatch):
    monkeypatch.setenv("DLBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    p = Plugins(PluginConfig())
    assert p.infos == [] and len(p.frameworks) == 0


def test_plugins_dir_adds_framework_and_task(plugin_dir):
    p = Plugins(PluginConfig(plugins_dirs=(str(plugin_dir),)))
    assert "numpyfw" in p.frameworks and "blobs" in p.tasks
    assert p.frameworks.owner("numpyfw") == "numpy_fw"


def test_disable_plugin_by_name(plugin_dir):
    p = Plugins(PluginConfig(plugins_dirs=(str(plugin_dir),), disabled=("numpy_fw", "torch")))
    assert "numpyfw" not in p.frameworks and "torch" not in p.frameworks
    assert "blobs" in p.tasks


def test_unknown_disabled_name_lists_valid_names():
    with pytest.raises(PluginError, match=r"unknown plugin 'nope' in --disable-plugin: choose one of .*torch"):
        Plugins(PluginConfig(disabled=("nope",)))


def test_duplicate_name_is_an_error(plugin_dir):
    (plugin_dir / "again.py").write_text((plugin_dir / "numpy_fw.py").read_text())
    with pytest.raises(PluginError, match=r"duplicate framework name 'numpyfw'.*'numpy_fw'.*'again'"):
        Plugins(PluginConfig(plugins_dirs=(str(plugin_dir),)))


def test_plugin_that_fails_to_import_is_one_clear_error(tmp_path):
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    with pytest.raises(PluginError, match=r"plugin file .*broken.py failed to import: ModuleNotFoundError.*--disable-plugin broken"):
        Plugins(PluginConfig(plugins_dirs=(str(tmp_path),)))
    p = Plugins(PluginConfig(plugins_dirs=(str(tmp_path),), disabled=("broken",)))
    assert "torch" in p.frameworks


def test_unknown_framework_lists_choices():
    p = Plugins(PluginConfig())
    with pytest.raises(PluginError, match=r"unknown framework 'pytorch' in x.yaml: choose one of .*torch"):
        p.frameworks.get("pytorch", "x.yaml")


def test_every_hook_is_documented_with_a_docstring():
    import dlbench.hookspecs as hs

    docs = (ROOT / "docs" / "plugins.md").read_text()
    names = hook_names()
    assert len(names) >= 9
    for name in names:
        assert getattr(hs, name).__doc__, f"{name} has no docstring"
        assert re.search(rf"`{name}\(", docs), f"hook {name} is not documented in docs/plugins.md"


# -- hooks a plugin misspells, and objects of the wrong kind -------------------------------------
def plugin_file(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text("import dlbench\n" + textwrap.dedent(body))
    return path


@pytest.mark.parametrize(("hook", "closest"), [
    ("dlbench_register_framework", "dlbench_register_frameworks"),
    ("dlbench_register_taskz", "dlbench_register_tasks"),
    ("dlbench_cell_results", "dlbench_cell_result"),
])
def test_misspelled_hook_names_the_hook_the_plugin_and_the_closest(tmp_path, hook, closest):
    path = plugin_file(tmp_path / "p", "myplug", f"""
        @dlbench.hookimpl
        def {hook}(register):
            pass
        """)
    with pytest.raises(PluginError) as info:
        Plugins(PluginConfig(plugins_dirs=(str(path.parent),)))
    assert str(info.value) == (f"plugin 'myplug' ({path}) implements unknown hook {hook!r}: "
                               f"did you mean {closest!r}?")


def test_unknown_hook_far_from_any_lists_every_hook(tmp_path):
    path = plugin_file(tmp_path / "p", "far", "@dlbench.hookimpl\ndef dlbench_zzz():\n    pass\n")
    with pytest.raises(PluginError, match=r"unknown hook 'dlbench_zzz': choose one of dlbench_cell_result, .*"
                                          r"dlbench_session_finish .*optionalhook=True"):
        Plugins(PluginConfig(plugins_dirs=(str(path.parent),)))
    # an optional hook (one some other plugin may specify) is not an error
    plugin_file(path.parent, "far", "@dlbench.hookimpl(optionalhook=True)\ndef dlbench_zzz():\n    pass\n")
    assert "far" in Plugins(PluginConfig(plugins_dirs=(str(path.parent),))).names()


def test_hook_without_hookimpl_and_wrong_arguments_are_one_line(tmp_path):
    path = plugin_file(tmp_path / "a", "bare", "def dlbench_register_tasks(register):\n    pass\n")
    with pytest.raises(PluginError, match=r"^plugin 'bare' \(.*bare.py\) defines dlbench_register_tasks "
                                          r"without @dlbench.hookimpl: decorate it"):
        Plugins(PluginConfig(plugins_dirs=(str(path.parent),)))
    path = plugin_file(tmp_path / "b", "badargs", "@dlbench.hookimpl\ndef dlbench_register_tasks(registr):\n    pass\n")
    with pytest.raises(PluginError) as info:
        Plugins(PluginConfig(plugins_dirs=(str(path.parent),)))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"plugin 'badargs' ({path}) is invalid: ")
    assert "'registr'" in msg and msg.endswith("(the specification is dlbench_register_tasks(register))")


WRONG_KIND = [
    ("register(NumpyFramework)", "dlbench_register_frameworks",
     r"registered the class NumpyFramework as a framework: register an instance, register\(NumpyFramework\(\)\)"),
    ("register(BlobsTask())", "dlbench_register_frameworks",
     r"registered a BlobsTask named 'blobs' as a framework: expected an instance of dlbench.framework.Framework "
     r"\(it is a task: register it in dlbench_register_tasks\)"),
    ("register(NumpyFramework())", "dlbench_register_tasks",
     r"registered a NumpyFramework named 'numpyfw' as a task: expected an instance of dlbench.task.Task "
     r"\(it is a framework: register it in dlbench_register_frameworks\)"),
    ("register(object())", "dlbench_register_scenarios",
     r"registered an object as a scenario: expected an instance of dlbench.scenarios.base.Scenario$"),
    ("register(Nameless())", "dlbench_register_frameworks",
     r"registered a Nameless as a framework without a 'name' string \(got None\)"),
    ("register(Spaced())", "dlbench_register_frameworks",
     r"registered a framework named 'my fw': a name is a letter, then .*no spaces"),
]


@pytest.mark.parametrize(("call", "hook", "pattern"), WRONG_KIND)
def test_registering_the_wrong_kind_of_object_is_one_clear_line(tmp_path, call, hook, pattern):
    fixtures = Path(__file__).parent / "fixtures" / "plugins"
    path = plugin_file(tmp_path / "p", "wrong", f"""
        import importlib.util, sys
        def _load(name):
            spec = importlib.util.spec_from_file_location(name, {str(fixtures)!r} + "/" + name + ".py")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
        NumpyFramework = _load("numpy_fw").NumpyFramework
        BlobsTask = _load("blobs_task").BlobsTask

        class Nameless(NumpyFramework):
            name = None

        class Spaced(NumpyFramework):
            name = "my fw"

        @dlbench.hookimpl
        def {hook}(register):
            {call}
        """)
    with pytest.raises(PluginError, match=rf"^plugin 'wrong' \({re.escape(str(path))}\) {pattern}") as info:
        Plugins(PluginConfig(plugins_dirs=(str(path.parent),)))
    assert "\n" not in str(info.value)


def test_registries_are_typed_and_builtins_pass_their_checks():
    from dlbench.framework import Framework
    from dlbench.scenarios.base import Scenario
    from dlbench.task import Task

    p = Plugins(PluginConfig())
    assert p.frameworks.expected is Framework and p.tasks.expected is Task and p.scenarios.expected is Scenario
    for registry in (p.frameworks, p.tasks, p.scenarios, p.attacks, p.reporters, p.datasets):
        assert registry.expected is not None and len(registry) > 0
        assert all(isinstance(obj, registry.expected) for obj in registry), registry.kind
    loose: Registry[object] = Registry("thing")  # no class given: any object with a valid name
    loose.register_from("t")(type("X", (), {"name": "x-1.2"})())
    assert loose.names() == ["x-1.2"]
