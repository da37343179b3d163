"""The import graph (issue 11): no import cycle anywhere in dlbench or the built-in plugins,
function-level imports included; the layers written in pyproject's [tool.importlinter] hold and
place every module; the core never imports a built-in plugin.

The graph is grimp's (import-linter's engine): every ``import`` statement, at module level or
inside a function, except those under ``if TYPE_CHECKING:`` (annotations, never executed).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the dev extra)")

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


def _config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return config


@pytest.fixture(scope="module")
def graph() -> Any:
    # `plugins` (the built-ins' source folder, installed as dlbench.builtin) imports by that name
    # from the checkout's root, as lint-imports sees it
    sys.path.insert(0, str(ROOT))
    try:
        return grimp.build_graph(*_config()["root_packages"], cache_dir=None,
                                 exclude_type_checking_imports=True)
    finally:
        sys.path.remove(str(ROOT))


def _cycles(graph: Any) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_there_is_no_import_cycle(graph: Any) -> None:
    problems = []
    for comp in _cycles(graph):
        lines = []
        for m in comp:
            for other in sorted(graph.find_modules_directly_imported_by(m) & set(comp)):
                at = [d["line_number"] for d in graph.get_import_details(importer=m, imported=other)]
                lines.append(f"    {m} -> {other} (line {', '.join(map(str, at))})")
        problems.append(f"a cycle of {len(comp)} modules:\n" + "\n".join(lines))
    assert not problems, ("move the code that closes the cycle to the module it belongs to (a "
                          "function-level import only hides it):\n" + "\n".join(problems))


def test_the_cycle_finder_counts_function_level_imports_not_annotations(tmp_path: Path) -> None:
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import cyclepkg.c\n\ndef f():\n    from cyclepkg import b\n")
    (pkg / "b.py").write_text("from cyclepkg.a import f\n")  # a <-> b, hidden in a function
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from cyclepkg import a\n")  # a -> c -> a only in annotations
    sys.path.insert(0, str(tmp_path))
    try:
        g = grimp.build_graph("cyclepkg", cache_dir=None, exclude_type_checking_imports=True)
    finally:
        sys.path.remove(str(tmp_path))
    assert _cycles(g) == [["cyclepkg.a", "cyclepkg.b"]]


def _layer_modules() -> list[str]:
    names = []
    for contract in _config()["contracts"]:
        if contract["type"] == "layers":
            for layer in contract["layers"]:
                for part in layer.replace(":", "|").split("|"):
                    names.append(part.strip().strip("()"))
    return names


def test_every_core_module_sits_in_a_layer(graph: Any) -> None:
    layers = _layer_modules()
    assert len(layers) == len(set(layers)), "a module is named in two layers"

    def placed(m: str) -> bool:
        return any(m == name or m.startswith(name + ".") for name in layers)

    unplaced = sorted(m for m in graph.modules
                      if m.startswith("dlbench.") and not placed(m)
                      and (graph.find_children(m) == set() or graph.find_modules_directly_imported_by(m)))
    assert not unplaced, (f"{unplaced}: not in any layer of pyproject's [tool.importlinter]; add each "
                          "to the layer it belongs to (what may import it, what it may import)")


def test_the_layer_contracts_hold() -> None:
    pytest.importorskip("importlinter")
    proc = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import "
                           "lint_imports_command; sys.exit(lint_imports_command())", "--no-cache"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "KEPT" in proc.stdout


def _imported_names(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def test_the_core_imports_no_built_in_plugin() -> None:
    bad = []
    for path in sorted((ROOT / "dlbench").rglob("*.py")):
        for line, name in _imported_names(path):
            if name == "plugins" or name.startswith(("plugins.", "dlbench.builtin")):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, ("the core knows no plugin by name (docs/architecture.md); reach plugins through "
                     "the registries:\n" + "\n".join(bad))
