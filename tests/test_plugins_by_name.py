"""The core knows no plugin by name: a third-party task brings its own corruptions and a
third-party scenario its own headline and leaderboard, both loaded from ``--plugins-dir``; and no
branch of the core compares against a built-in plugin's name."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import run_cli  # noqa: I001

from dlbench.plugins import get_plugins

ROOT = Path(__file__).resolve().parent.parent

THIRD_PARTY = '''
"""A third-party task and scenario in one file, importing only dlbench.api."""
import numpy as np

from dlbench.api import (Column, Corruption, Dataset, Figure, Scenario, SpecBuilder, Task,
                         TrainConfig, find_corruption, hookimpl, metric_figure)


JITTER = Corruption("jitter", (0.05, 0.1, 0.2), "sigma")


class RingsTask(Task):
    name = "rings"
    domain = "points"  # no built-in domain: its corruptions must still run
    metrics = ("accuracy",)

    def load(self, params):
        rng = np.random.default_rng(0)
        y = rng.integers(0, 2, 400)
        x = np.clip(np.where(y[:, None] == 1, 0.7, 0.3) + rng.normal(0, 0.1, (400, 4)), 0, 1)
        x = x.astype(np.float32)
        return Dataset({"x": x[:300]}, y[:300], {"x": x[300:]}, y[300:], 2, "rings")

    def model_spec(self, params, dataset=None):
        b = SpecBuilder("rings")
        return b.build(b.dense(b.input("x", (4,)), 2))

    def train_config(self, params):
        return TrainConfig("cross_entropy", "sgd", 0.1)

    def evaluate(self, y_true, outputs, params):
        return {"accuracy": float(np.mean(np.argmax(outputs, 1) == y_true))}

    def corruptions(self, params):
        return (JITTER,)

    def corrupt(self, x, y, corruption, level, rng, dataset):
        sigma = find_corruption((JITTER,), corruption, self.name).value(level)
        return {"x": (x["x"] + rng.normal(0, sigma, x["x"].shape)).astype(np.float32)}, y


class TallyScenario(Scenario):
    name = "tally"
    title = "Tally"
    description = "a score the reports learn only from the scenario (test plugin)"
    needs_data = False

    def run(self, ctx):
        data = ctx.task.load(ctx.params)
        ctx.result.metrics["tally_score"] = 42.0
        ctx.result.metrics["examples"] = float(data.n_test)

    def headline(self, result):
        v = result.metrics.get("tally_score")
        return None if v is None else Figure("tally score", float(v), "points")

    def columns(self, results):
        return [Column("Tally score (points)", self.headline, rank=True, keep=True),
                Column("Examples", lambda r: metric_figure(r, "examples"))]


@hookimpl
def dlbench_register_tasks(register):
    register(RingsTask())


@hookimpl
def dlbench_register_scenarios(register):
    register(TallyScenario())
'''

SUITE = """
name: byname
matrix:
  - scenario: tally
    tasks: [rings]
    frameworks: [numpyfw]
  - scenario: robustness
    tasks: [rings, blobs]
    frameworks: [numpyfw]
    params: {attacks: noise, audit: false, epochs: 2, batch_size: 50, eval_size: 60, epsilons: "0,8"}
  - scenario: parity
    tasks: [rings]
    frameworks: [numpyfw]
    params: {reference: numpy}
"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("byname")
    plugins = tmp / "plugins"
    plugins.mkdir()
    (plugins / "thirdparty.py").write_text(THIRD_PARTY)
    for f in (ROOT / "tests" / "fixtures" / "plugins").glob("*.py"):  # numpyfw and blobs
        (plugins / f.name).write_text(f.read_text())
    (tmp / "byname.yaml").write_text(SUITE)
    res = run_cli("--plugins-dir", str(plugins), "run", str(tmp / "byname.yaml"), "--store",
                  f"sqlite:///{tmp / 'r.db'}", "--output-dir", str(tmp / "out"),
                  "--report", "json,markdown", cwd=tmp)
    assert res.returncode == 0, res.stdout + res.stderr
    run = next((tmp / "out").glob("run-*"))
    doc = json.loads((run / "report.json").read_text())
    by = {(r["cell"]["scenario"], r["cell"]["task"]): r for r in doc["results"]}
    return {"json": by, "md": (run / "report.md").read_text(), "stdout": res.stdout}


def test_a_third_party_scenario_names_its_headline(reports: dict) -> None:
    tally = reports["json"][("tally", "rings")]
    assert tally["status"] == "ok"
    assert tally["headline"]["name"] == "tally score" and tally["headline"]["value"] == 42.0
    assert tally["headline"]["unit"] == "points"
    assert "tally score 42" in reports["stdout"]  # the live log and the terminal table


def test_a_third_party_scenario_has_its_leaderboard(reports: dict) -> None:
    md = reports["md"]
    assert "### Tally — rings" in md
    header = next(line for line in md.splitlines() if "Tally score (points)" in line)
    assert header.startswith("| # | Framework | Tally score (points) | Examples | Status |")
    assert "| 1 | numpyfw | 42.0 | 100 | ok |" in md


def test_a_third_party_task_brings_its_corruptions(reports: dict) -> None:
    rob = reports["json"][("robustness", "rings")]
    assert rob["status"] == "ok", rob["error"]
    rows = rob["details"]["corruptions"]
    assert [(r["corruption"], r["severity"], r["value"]) for r in rows] == [
        ("jitter", 1, 0.05), ("jitter", 2, 0.1), ("jitter", 3, 0.2)]
    assert "corruption_mean_jitter" in rob["metrics"]
    md = reports["md"]
    assert "### Corruptions — rings" in md
    jitter = next(line for line in md.splitlines() if line.startswith("| numpyfw | jitter |"))
    assert jitter.count("|") == 6  # framework, corruption, three severities


def test_a_task_without_corruptions_says_so(reports: dict) -> None:
    rob = reports["json"][("robustness", "blobs")]
    assert rob["status"] == "ok", rob["error"]
    assert rob["details"]["corruptions"] == []
    assert "declares no corruptions" in rob["details"]["corruptions_skipped"]["all"]
    assert "Corruptions — blobs" not in reports["md"]


def test_parity_against_the_numpy_reference(reports: dict) -> None:
    par = reports["json"][("parity", "rings")]
    assert par["status"] == "ok", par["error"]
    rows = {r["check"]: r for r in par["details"]["parity"]}
    assert set(rows) == {"outputs", "loss"}
    assert all(r["reference"] == "numpy" and r["passed"] for r in rows.values())
    assert par["headline"]["name"] == "max rel_error" and par["headline"]["passed"] is True


def test_parity_reference_auto_is_the_first_installed_neural_framework() -> None:
    from dlbench.scenarios.parity import resolve_reference

    def fw(name: str, kind: str = "neural", installed: bool = True, trains: bool = True) -> SimpleNamespace:
        return SimpleNamespace(name=name, kind=kind, trains=trains,
                               availability=lambda: SimpleNamespace(installed=installed))

    def ctx(reference: object, *fws: SimpleNamespace) -> Any:  # a CellContext's two fields
        return SimpleNamespace(params={} if reference is None else {"reference": reference},
                               plugins=SimpleNamespace(frameworks=list(fws)))

    found = (fw("aaa", kind="classic"), fw("bbb", installed=False), fw("ccc"), fw("ddd"))
    assert resolve_reference(ctx(None, *found)) == "ccc"
    assert resolve_reference(ctx("auto", *found)) == "ccc"
    assert resolve_reference(ctx("ddd", *found)) == "ddd"
    assert resolve_reference(ctx(None, fw("aaa", kind="classic"))) == "numpy"
    # an inference runtime (no train step, no gradients) is never the reference
    assert resolve_reference(ctx(None, fw("aaa", trains=False), fw("bbb"))) == "bbb"


def test_environment_lists_what_the_framework_plugins_declare() -> None:
    from dlbench.measure.environment import core_distributions, framework_distributions, versions

    assert core_distributions()[:3] == ("dlbench", "numpy", "scipy")
    fake: list[Any] = [SimpleNamespace(distributions=(), distribution="numpy"),
                       SimpleNamespace(distributions=("pluggy", "no-such-dist-xyz"),
                                       distribution="pluggy")]
    assert framework_distributions(fake) == ["numpy", "pluggy", "no-such-dist-xyz"]
    v = versions(["no-such-dist-xyz"])
    assert "dlbench" in v and "numpy" in v and "no-such-dist-xyz" not in v
    plugins = get_plugins()
    declared = framework_distributions(plugins.frameworks)
    for f in plugins.frameworks:
        assert (f.distributions or (f.distribution,))[0] in declared


# -- the core never branches on a built-in plugin's name -----------------------------------------
def builtin_names() -> tuple[set[str], set[str]]:
    """(frameworks, tasks and their domains; scenarios) that the built-in plugins register."""
    plugins = get_plugins()
    builtin = {i.name for i in plugins.infos if i.module.startswith("dlbench.builtin")}

    def owned(reg: object) -> set[str]:
        return {n for n in reg.names() if reg.owner(n) in builtin}  # type: ignore[attr-defined]

    tasks = owned(plugins.tasks)
    named = owned(plugins.frameworks) | tasks | {plugins.tasks.get(t).domain for t in tasks}
    return named, owned(plugins.scenarios)


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _strings(e)]
    return []


def name_branches(source: str, names: set[str], filename: str = "<src>",
                  comparisons_only: bool = False) -> list[str]:
    """Where ``source`` decides on one of ``names``: a comparison (``==``, ``!=``, ``in``,
    ``not in``) with it, a ``match`` case, and unless ``comparisons_only`` a dict key, a
    subscript or ``.get()`` with it."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        hits: list[str] = []
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                hits += _strings(side)
        elif isinstance(node, ast.MatchValue):
            hits += _strings(node.value)
        elif comparisons_only:
            continue
        elif isinstance(node, ast.Dict):
            hits += [s for k in node.keys if k is not None for s in _strings(k)]
        elif isinstance(node, ast.Subscript):
            hits += _strings(node.slice)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("get", "pop", "setdefault") and node.args):
            hits += _strings(node.args[0])
        found += [f"{filename}:{node.lineno}: {h!r}" for h in hits if h in names]  # type: ignore[attr-defined]
    return found


def name_literals(source: str, names: set[str], filename: str = "<src>") -> list[str]:
    """Every string literal that is exactly one of ``names`` (a default such as
    ``Param("torch")``, a list of packages, a key), docstrings left out: prose may name plugins."""
    tree = ast.parse(source, filename)
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}
    return [f"{filename}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in names
            and id(n) not in docs]


def test_the_scan_catches_branches_and_ignores_prose() -> None:
    src = '''
"""The torch plugin and the vision task are built in."""
def f(fw, task, d):
    if fw == "torch" or task in ("vision", "x"):
        pass
    d.get("jax"); d["speech"]
    print("keras is fine in a message")
    table = {"nlp": 1}
    match task:
        case "recsys":
            pass
'''
    hits = [h.split(": ", 1)[1] for h in name_branches(src, {"torch", "vision", "jax", "speech",
                                                             "nlp", "recsys", "keras"})]
    assert sorted(hits) == sorted(["'torch'", "'vision'", "'jax'", "'speech'", "'nlp'", "'recsys'"])
    compared = [h.split(": ", 1)[1] for h in name_branches(src, {"torch", "nlp", "recsys"},
                                                           comparisons_only=True)]
    assert sorted(compared) == ["'recsys'", "'torch'"]
    literals = [h.split(": ", 1)[1] for h in name_literals(
        src + 'P = Param("torch", "the reference")\nDISTS = ("numpy", "jax")\n', {"torch", "jax"})]
    assert sorted(literals) == ["'jax'", "'jax'", "'torch'", "'torch'"]


def test_the_core_has_no_branch_on_a_builtin_plugin_name() -> None:
    named, scenarios = builtin_names()
    assert {"torch", "vision"} <= named and {"speed", "robustness"} <= scenarios
    found = []
    for path in sorted((ROOT / "dlbench").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        found += name_literals(path.read_text(), named, rel)  # branches, defaults, lists
        if rel.startswith("dlbench/report/"):  # reports get what they show from the scenario
            found += name_branches(path.read_text(), scenarios, rel, comparisons_only=True)
    assert found == []
