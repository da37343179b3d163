"""Property: whatever the file holds, loading a suite returns a Suite or raises a DlbenchError
whose message is one line naming the file; no other exception (the CLI would show it as an
internal error). Generated suites: random YAML-ish structures, random mutations of the ready
suites (values replaced, keys dropped, misspelled or duplicated, lists emptied, numbers made
negative, huge, NaN), and random bytes spliced into them."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlbench.errors import DlbenchError
from dlbench.plugins import PluginConfig, Plugins
from dlbench.run import suite as suites

FUZZ = settings(max_examples=int(os.environ.get("DLBENCH_FUZZ_EXAMPLES", "200")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
"""200 examples per property in CI (seconds); DLBENCH_FUZZ_EXAMPLES=5000 for a longer hunt."""
SHIPPED = {name: suites.resolve(name).read_bytes() for name in suites.available()}


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins(PluginConfig())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def outcome(folder: Path, plugins: Plugins, content: bytes) -> suites.Suite | None:
    """Load ``content`` as a suite: the Suite, or None after a one-line DlbenchError."""
    path = folder / "fuzzed.yaml"
    path.write_bytes(content)
    try:
        suite = suites.load(str(path), plugins)
    except DlbenchError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(path) in msg, msg
        return None
    assert isinstance(suite, suites.Suite)
    for cell in suite.cells(plugins):  # what a loaded suite promises its cells
        assert math.isfinite(cell.timeout) and cell.timeout > 0
        for v in cell.params.values():
            assert not (isinstance(v, float) and not math.isfinite(v)), cell.key
    return suite


# -- values the mutations and the generated structures use -----------------------------------------
KEYS = ["name", "matrix", "scenario", "tasks", "frameworks", "devices", "params", "budget", "timeout",
        "exclude", "repeats", "seed", "gate", "thresholds", "cells", "batch_size", "mode", "max_time",
        "train_fraction", "epochs", "threads", "framework", "vision", "torch", "speed", "accuracy",
        "mat\nrix", "\x1b[31mred", "tab\tkey", "[/]"]
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
           | st.sampled_from([0, -1, -4, 1.5, 1e308, "cpu", "cuda:0", "installed", "all", "", "<<"])
           | st.sampled_from(KEYS) | st.text(max_size=12))
yamlish = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5),
                       max_leaves=40)


def dump(data: Any) -> bytes:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode()


@FUZZ
@given(data=yamlish)
def test_random_structures(folder: Path, plugins: Plugins, data: Any) -> None:
    outcome(folder, plugins, dump(data))


@FUZZ
@given(top=st.fixed_dictionaries({"name": scalars, "matrix": st.lists(st.dictionaries(
    st.sampled_from(KEYS), yamlish, max_size=6), max_size=3)}, optional={
    "timeout": scalars, "seed": scalars, "repeats": scalars, "gate": yamlish}))
def test_random_suites_with_the_right_sections(folder: Path, plugins: Plugins, top: dict[str, Any]) -> None:
    outcome(folder, plugins, dump(top))


# -- mutations of the ready suites -----------------------------------------------------------------
def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _places(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _places(v, (*path, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


MUTATIONS = ["replace", "drop", "misspell", "add", "empty", "negate", "nan", "huge", "wrap"]


def mutate(data: Any, place: tuple[Any, ...], how: str, value: Any) -> Any:
    if not place:
        return value if how == "replace" else data
    parent, key = _get(data, place[:-1]), place[-1]
    old = parent[key]
    if how == "drop":
        del parent[key]
    elif how == "misspell" and isinstance(key, str) and key:
        parent[key[:-1] + key[-1] * 2] = parent.pop(key)
    elif how == "add" and isinstance(parent, dict):
        parent[f"{key}x" if isinstance(key, str) else "extra"] = value
    elif how == "empty":
        parent[key] = [] if not isinstance(old, dict) else {}
    elif how == "negate" and isinstance(old, int | float) and not isinstance(old, bool):
        parent[key] = -old - 1
    elif how == "nan":
        parent[key] = math.nan
    elif how == "huge":
        parent[key] = 10**30 if isinstance(old, int) else 1e300
    elif how == "wrap":
        parent[key] = [old]
    else:
        parent[key] = value
    return data


@FUZZ
@given(st.data())
def test_mutated_ready_suites(folder: Path, plugins: Plugins, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(SHIPPED)))
    tree = yaml.safe_load(SHIPPED[name])
    for _ in range(data.draw(st.integers(1, 3))):
        places = _places(tree)[1:]  # not the whole document (test_random_structures does that)
        place = data.draw(st.sampled_from(places))
        tree = mutate(tree, place, data.draw(st.sampled_from(MUTATIONS)), data.draw(yamlish))
    outcome(folder, plugins, dump(tree))


@FUZZ
@given(st.data())
def test_random_bytes_in_ready_suites(folder: Path, plugins: Plugins, data: st.DataObject) -> None:
    text = bytearray(SHIPPED[data.draw(st.sampled_from(sorted(SHIPPED)))])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 8))
        text[at:at + cut] = data.draw(st.binary(max_size=8) | st.sampled_from(
            [b"*", b"&a ", b"<<: ", b"[", b"{", b"\n  - ", b": ", b"!!python/object ", b".nan", b"-", b"\xff"]))
    outcome(folder, plugins, bytes(text))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(folder: Path, plugins: Plugins, content: bytes) -> None:
    outcome(folder, plugins, content)
