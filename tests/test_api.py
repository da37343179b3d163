"""The public plugin API: built-in plugins import only ``dlbench.api``, everything it lists
exists, and importing it stays cheap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dlbench.api as api

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_FILES = sorted((ROOT / "plugins").rglob("*.py"))
FIXTURE_FILES = sorted((ROOT / "tests" / "fixtures").rglob("*.py"))


def private_imports(path: Path) -> list[str]:
    """``line: module`` for each import of a dlbench module other than ``dlbench.api`` (at any
    depth: function-level imports count). Relative imports (between built-ins) are allowed."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if (name == "dlbench" or name.startswith("dlbench.")) and name != "dlbench.api":
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                bad.append(f"{where}:{node.lineno}: {name}")
    return bad


def test_the_scan_sees_a_private_import(tmp_path: Path) -> None:
    f = tmp_path / "p.py"
    f.write_text("from dlbench.api import Task\nimport dlbench\n\n"
                 "def g():\n    from dlbench.spec_numpy import MASK_FILL\n"
                 "    import dlbench.measure.sampler as s\n")
    found = [b.split(": ", 1)[1] for b in private_imports(f)]
    assert found == ["dlbench", "dlbench.spec_numpy", "dlbench.measure.sampler"]


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_builtin_plugins_import_only_the_public_api(path: Path) -> None:
    assert private_imports(path) == [], "import these names from dlbench.api"


def test_fixture_plugins_import_the_public_api() -> None:
    """Third-party-style fixtures use dlbench.api; the one that extends a built-in plugin
    imports that plugin (dlbench.builtin), never a core module."""
    bad = [b for f in FIXTURE_FILES for b in private_imports(f)
           if not b.endswith(": dlbench.builtin.frameworks.torch")]
    assert bad == []


def test_everything_in_all_exists_and_is_listed_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    missing = [n for n in api.__all__ if not hasattr(api, n)]
    assert missing == []
    public = {n for n in vars(api) if n.isidentifier() and not n.startswith("_")}
    public -= {"annotations", "importlib", "TYPE_CHECKING", "Any"}
    assert public <= set(api.__all__), public - set(api.__all__)


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        api.NoSuchThing  # noqa: B018


def test_lazy_names_are_the_real_objects() -> None:
    from dlbench.measure.sampler import Budget
    from dlbench.robustness.autoattack import BUILTIN
    from dlbench.scenarios.speed import SpeedScenario

    assert api.Budget is Budget and api.SpeedScenario is SpeedScenario
    assert api.BUILTIN_ATTACKS is BUILTIN


def test_import_is_cheap_and_imports_no_framework() -> None:
    heavy = ["torch", "tensorflow", "jax", "keras", "sklearn", "scipy", "pandas", "sqlalchemy",
             "plotly", "art", "ray"]
    code = ("import sys, dlbench.api; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_plugins_doc_lists_every_name() -> None:
    doc = (ROOT / "docs" / "plugins.md").read_text()
    missing = [n for n in api.__all__ if f"`{n}`" not in doc]
    assert missing == [], "document these in docs/plugins.md (The plugin API)"
