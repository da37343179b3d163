from __future__ import annotations

import re
from pathlib import Path

import pytest

from dlbench.errors import PluginError
from dlbench.plugins import PluginConfig, Plugins, hook_names

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
