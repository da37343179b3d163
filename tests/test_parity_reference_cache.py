"""The parity scenario computes its reference framework's figures once per run: the first cell
that needs them builds the reference, later cells (in any process) reuse its arrays, and every
figure is the one a cell computing its own reference gets (:meth:`CellContext.once_per_run`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli  # noqa: I001

from dlbench.cell import Cell
from dlbench.plugins import PluginConfig, get_plugins
from dlbench.result import Result
from dlbench.run.context import CellContext
from dlbench.scenarios.parity import ParityScenario
from dlbench.store.database import Store

# A reference that notes each build in $PARITY_REF_MARKS, and two candidates: float32 arithmetic
# (small non-zero errors against the float64 reference) and the fixture's float64 one.
PARITY_FWS = '''
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dlbench.api import hookimpl

_spec = importlib.util.spec_from_file_location("parity_cache_numpy_fw", Path(__file__).with_name("numpy_fw.py"))
_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixture)


class MarkedReference(_fixture.NumpyFramework):
    name = "parityref"

    def build(self, spec, weights, options):
        if os.environ.get("PARITY_REF_MARKS"):
            with open(os.environ["PARITY_REF_MARKS"], "a") as f:
                f.write(f"{os.getpid()}\\n")
        return super().build(spec, weights, options)


class Float32Model(_fixture.NumpyModel):
    def __init__(self, spec, weights, options):
        super().__init__(spec, weights, options)
        self.set_weights(weights)

    def set_weights(self, weights):
        self.w = {k: np.array(v, dtype=np.float32) for k, v in weights.items()}

    def _x(self, inputs):
        return super()._x(inputs).astype(np.float32)


class Float32Candidate(_fixture.NumpyFramework):
    name = "numpyfw32"

    def build(self, spec, weights, options):
        return Float32Model(spec, weights, options)


class Float64Candidate(_fixture.NumpyFramework):
    name = "numpyfw64"


@hookimpl
def dlbench_register_frameworks(register):
    register(MarkedReference())
    register(Float32Candidate())
    register(Float64Candidate())
'''

SUITE = """
name: pc
matrix:
  - scenario: parity
    tasks: [blobs]
    frameworks: [numpyfw32, numpyfw64]
    params: {reference: parityref}
"""


@pytest.fixture
def parity_dir(plugin_dir: Path) -> Path:
    (plugin_dir / "parity_fws.py").write_text(PARITY_FWS)
    return plugin_dir


def _errors(result: Result) -> dict[str, float]:
    return {row["check"]: float(row["rel_error"]) for row in result.details["parity"]}


def test_a_run_builds_the_reference_once_and_its_figures_are_a_cells_own(parity_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    marks = tmp_path / "marks.txt"
    monkeypatch.setenv("PARITY_REF_MARKS", str(marks))
    (tmp_path / "pc.yaml").write_text(SUITE)
    db = tmp_path / "pc.db"
    res = run_cli("--plugins-dir", str(parity_dir), "run", str(tmp_path / "pc.yaml"), "--store",
                  f"sqlite:///{db}", "--output-dir", str(tmp_path / "out"), "--report", "json",
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    st = Store(f"sqlite:///{db}")
    results = {r.cell.framework: r for r in st.results(st.latest_run_id("pc")) if r.cell.scenario == "parity"}
    assert sorted(results) == ["numpyfw32", "numpyfw64"]
    assert all(r.status == "ok" and r.details["parity_reference"] == "parityref" for r in results.values())
    assert len(marks.read_text().split()) == 1  # one reference build for the run's two cells

    # the cell that computed the reference says nothing; the other names it
    sources = {fw: r.details.get("parity_reference_from") for fw, r in results.items()}
    first = next(fw for fw, by in sources.items() if by is None)
    second = next(fw for fw in results if fw != first)
    assert sources[second] == results[first].cell.key

    # the same cells, each building its own reference (no run cache): the same figures
    plugins = get_plugins(PluginConfig(plugins_dirs=(str(parity_dir),)))
    task = plugins.tasks.get("blobs", "test")
    for fw, stored in results.items():
        cell = Cell.from_dict(stored.cell.to_dict())
        ctx = CellContext(cell, task, plugins.frameworks.get(fw, "test"), plugins, tmp_path / "art", Result(cell))
        ParityScenario().run(ctx)
        assert "parity_reference_from" not in ctx.result.details
        assert _errors(ctx.result) == _errors(stored)
        assert set(_errors(stored)) == {"outputs", "loss", "input_gradient", "weights_after_step"}
        assert {k: v for k, v in ctx.result.metrics.items() if k.startswith("rel_error")} == \
            {k: v for k, v in stored.metrics.items() if k.startswith("rel_error")}
    assert max(_errors(results["numpyfw32"]).values()) > 0  # float32 against float64: not trivially equal
    assert len(marks.read_text().split()) == 3  # uncached, each cell built the reference again


# -- CellContext.once_per_run -------------------------------------------------------------------
def _ctx(tmp_path: Path, run_cache: Path | None, **params: object) -> CellContext:
    cell = Cell("parity", "blobs", "numpyfw", "cpu", dict(params))
    return CellContext(cell, None, None, None, tmp_path / "art", Result(cell), run_cache=run_cache)  # type: ignore[arg-type]


def _counting(calls: list[int], value: float) -> Callable[[], dict[str, np.ndarray]]:
    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"a": np.array([value, 2.0], dtype=np.float32), "b": np.arange(3)}
    return compute


def test_once_per_run_computes_once_per_what(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    calls: list[int] = []
    first = _ctx(tmp_path, cache, batch_size=1)
    got, by = first.once_per_run({"what": "x", "n": 1}, _counting(calls, 1.0))
    assert by is None and calls == [1]
    again, by = _ctx(tmp_path, cache, batch_size=2).once_per_run({"n": 1, "what": "x"}, _counting(calls, 9.0))
    assert calls == [1] and by == first.cell.key  # the stored arrays, not a second computation
    assert set(again) == {"a", "b"} and all(np.array_equal(again[k], got[k]) for k in got)
    assert again["a"].dtype == np.float32
    other, by = _ctx(tmp_path, cache).once_per_run({"what": "x", "n": 2}, _counting(calls, 3.0))
    assert calls == [1, 1] and by is None and float(other["a"][0]) == 3.0


def test_once_per_run_without_a_run_cache_computes_every_time(tmp_path: Path) -> None:
    calls: list[int] = []
    ctx = _ctx(tmp_path, None)
    for _ in range(2):
        _, by = ctx.once_per_run({"what": "x"}, _counting(calls, 1.0))
        assert by is None
    assert calls == [1, 1]
    assert not (tmp_path / "cache").exists()


def test_once_per_run_does_not_trust_a_file_stored_for_another_what(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    calls: list[int] = []
    ctx = _ctx(tmp_path, cache)
    ctx.once_per_run({"what": "x"}, _counting(calls, 1.0))
    (path,) = cache.glob("*.npz")
    # the same file name, holding another request's arrays (a hash collision, a stale file)
    np.savez(path, __what__=np.frombuffer(b'{"what": "y"}', np.uint8),
             __by__=np.frombuffer(b"someone", np.uint8), a=np.array([7.0]))
    got, by = ctx.once_per_run({"what": "x"}, _counting(calls, 5.0))
    assert calls == [1, 1] and by is None and float(got["a"][0]) == 5.0
    got, by = ctx.once_per_run({"what": "x"}, _counting(calls, 6.0))  # rewritten: trusted again
    assert calls == [1, 1] and by == ctx.cell.key and float(got["a"][0]) == 5.0


def test_once_per_run_measures_again_over_a_file_it_cannot_read(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    calls: list[int] = []
    ctx = _ctx(tmp_path, cache)
    ctx.once_per_run({"what": "x"}, _counting(calls, 1.0))
    (path,) = cache.glob("*.npz")
    path.write_bytes(path.read_bytes()[:40])  # cut short: a disk that filled, a killed writer
    got, by = ctx.once_per_run({"what": "x"}, _counting(calls, 4.0))
    assert calls == [1, 1] and by is None and float(got["a"][0]) == 4.0
