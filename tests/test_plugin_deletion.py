"""Deleting any one built-in plugin breaks no core import (issue 11).

A copy of the package as it installs (``dlbench/`` with ``plugins/`` as ``dlbench/builtin`` and
``suites/`` as ``dlbench/suites``) goes into a temporary folder. One isolated interpreter (``-I``,
the editable install's finder taken off ``sys.meta_path``, so only the copy is importable) deletes
each built-in plugin in turn (every framework folder or file, every task module and private helper,
the scenarios, attacks and reporters shims), imports every core module afresh, and puts the plugin
back. The imports of the core must all succeed, come from the copy and load no built-in plugin.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(r'''
    import importlib, json, os, shutil, sys
    from pathlib import Path

    copy, units = Path(sys.argv[1]), json.loads(sys.argv[2])
    # the editable install maps dlbench (and dlbench.builtin) to the checkout: only the copy counts
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                        and "editable" not in getattr(f, "__name__", "").lower()]
    sys.path.insert(0, str(copy))
    core = sorted(
        ".".join(p.relative_to(copy).with_suffix("").parts).removesuffix(".__init__")
        for p in (copy / "dlbench").rglob("*.py")
        if not p.relative_to(copy / "dlbench").parts[0] in ("builtin", "suites")
        and p.name != "__main__.py" and "__pycache__" not in p.parts
        # Alembic's env and revision scripts are loaded by path inside a migration, not imported
        and not (p.parent.name in ("migrations", "versions") and p.name != "__init__.py"))
    builtin, hold = copy / "dlbench" / "builtin", copy.parent / "held"
    report = {"core": core, "failures": {}, "elsewhere": {}, "plugins_loaded": {}, "still_found": []}
    for unit in units:
        src, dst = builtin / unit, hold / unit
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(src, dst)
        for name in [m for m in sys.modules if m == "dlbench" or m.startswith("dlbench.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        for mod in core:
            try:
                importlib.import_module(mod)
            except BaseException as exc:  # noqa: BLE001 - reported, with the deleted plugin
                report["failures"].setdefault(unit, []).append(f"{mod}: {type(exc).__name__}: {exc}")
        for name, m in sys.modules.items():
            if name == "dlbench" or name.startswith("dlbench."):
                where = getattr(m, "__file__", None) or ""
                if where and not Path(where).resolve().is_relative_to(copy.resolve()):
                    report["elsewhere"][name] = where
                if name.startswith("dlbench.builtin."):
                    report["plugins_loaded"].setdefault(unit, []).append(name)
        # after the core's imports (finding it imports its parent packages): the plugin is gone
        gone = "dlbench.builtin." + unit.removesuffix(".py").replace("/", ".")
        if importlib.util.find_spec(gone) is not None:
            report["still_found"].append(gone)
        shutil.move(dst, src)
    print(json.dumps(report))
''')


def _units() -> list[str]:
    """Every built-in plugin and private helper, as a path under plugins/."""
    plugins = ROOT / "plugins"
    units = [p.name for p in sorted(plugins.glob("*.py")) if p.name != "__init__.py"]
    for kind in ("frameworks", "tasks"):
        for p in sorted((plugins / kind).iterdir()):
            if p.name not in ("__init__.py", "__pycache__", "data") and (p.suffix == ".py" or p.is_dir()):
                units.append(f"{kind}/{p.name}")
    return units


def _installed_layout(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "dlbench", dest / "dlbench", ignore=ignore)
    shutil.copytree(ROOT / "plugins", dest / "dlbench" / "builtin", ignore=ignore)
    shutil.copytree(ROOT / "suites", dest / "dlbench" / "suites", ignore=ignore)
    return dest


def test_deleting_any_built_in_plugin_breaks_no_core_import(tmp_path: Path) -> None:
    units = _units()
    assert {"frameworks/torch", "frameworks/sklearn.py", "tasks/vision.py", "scenarios.py",
            "attacks.py", "reporters.py"} <= set(units)
    copy = _installed_layout(tmp_path / "site")
    proc = subprocess.run([sys.executable, "-I", "-c", CHILD, str(copy), json.dumps(units)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report["core"]) > 50 and "dlbench.cli.main" in report["core"]
    assert report["still_found"] == [], "a deleted plugin was still importable: the test deletes nothing"
    assert report["elsewhere"] == {}, f"modules imported from outside the copy: {report['elsewhere']}"
    assert report["failures"] == {}, "\n".join(f"without plugins/{u}: {f}"
                                               for u, fs in report["failures"].items() for f in fs)
    assert report["plugins_loaded"] == {}, f"importing the core loaded built-in plugins: {report['plugins_loaded']}"
