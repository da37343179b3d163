"""A task plugin's own PyTorch model (Task.native_model): the example in docs/plugins.md, run
through ``dlbench run --plugins-dir`` on speed, accuracy, robustness and scalability; parity and
other frameworks skip with the reason; a model of the wrong shape or type is one line."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli  # noqa: I001

pytest.importorskip("torch")

from dlbench.store.database import Store  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def docs_example() -> str:
    """The code block of docs/plugins.md's "A model of your own" section."""
    text = DOCS.read_text()
    section = text[text.index("### A model of your own"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/plugins.md lost its native-model example"
    return match.group(1)


BAD = '''
from dlbench.api import NativeModel, hookimpl
from dlbench.builtin.tasks.vision import VisionTask


def three_classes():
    from torch import nn
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 3)
        def forward(self, image):
            return self.fc(image.reshape(len(image), -1))
    return Net()


class WrongShape(VisionTask):
    name = "wrong-shape"
    def native_model(self, params):
        return NativeModel("three", "torch", three_classes)


class NotAModule(VisionTask):
    name = "not-a-module"
    def native_model(self, params):
        return NativeModel("fn", "torch", lambda: (lambda image: image))


@hookimpl
def dlbench_register_tasks(register):
    register(WrongShape())
    register(NotAModule())
'''

SUITE = """
name: native
timeout: 600
matrix:
  - scenario: speed
    tasks: [my-digits]
    frameworks: {torch: {}, tensorflow: {}}
    params: {batch_size: [1, 64], mode: [infer, train]}
    budget: &short {max_time: 0.3, warmup_time: 0.05, min_samples: 5, latency_samples: 100}
  - scenario: speed
    tasks: [my-digits]
    frameworks: {torch: {variant: compiled}}
    params: {batch_size: 64, mode: infer}
    budget: *short
  - scenario: accuracy
    tasks: [my-digits]
    frameworks: [torch]
    params: {epochs: 4, batch_size: 32, reuse: true, seed: [0, 1]}
  - scenario: parity
    tasks: [my-digits]
    frameworks: [torch]
  - scenario: robustness
    tasks: [my-digits]
    frameworks: [torch]
    params: {epochs: 4, batch_size: 32, attacks: "fgsm,pgd", epsilons: [[0, 32]], eval_size: 60,
             pgd_steps: 5, corruptions: false}
  - scenario: scalability
    tasks: [my-digits]
    frameworks: [torch]
    params: {axis: [batch_size, workers], values: [[8, 32]]}
    budget: {max_time: 0.3, warmup_time: 0.05, min_samples: 5}
  - scenario: accuracy
    tasks: [wrong-shape, not-a-module]
    frameworks: [torch]
    params: {epochs: 1}
"""


@pytest.fixture(scope="module")
def native_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    tmp = tmp_path_factory.mktemp("native")
    plugins = tmp / "plugins"
    plugins.mkdir()
    (plugins / "my_native_model.py").write_text(docs_example())
    (plugins / "bad_native.py").write_text(BAD)
    (tmp / "native.yaml").write_text(SUITE)
    db = tmp / "r.db"
    res = run_cli("--plugins-dir", str(plugins), "run", str(tmp / "native.yaml"), "--store",
                  f"sqlite:///{db}", "--output-dir", str(tmp / "out"), "--report", "json", cwd=tmp)
    run = Store(f"sqlite:///{db}").load_run(Store(f"sqlite:///{db}").latest_run_id("native"))
    return plugins, {"res": res, "results": {r.cell.key: r for r in run.results}}


def _cells(native_run: tuple[Path, dict[str, object]], scenario: str, task: str = "my-digits",
           framework: str = "torch") -> list:
    results = native_run[1]["results"]
    assert isinstance(results, dict)
    return [r for r in results.values() if r.cell.scenario == scenario and r.cell.task == task
            and r.cell.framework == framework]


def _net(plugins: Path):
    spec = importlib.util.spec_from_file_location("my_native_model", plugins / "my_native_model.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_net()


def test_the_docs_example_stays_under_forty_lines() -> None:
    assert len(docs_example().strip().splitlines()) < 40


def test_speed_runs_the_native_module_in_every_variant_and_mode(native_run) -> None:
    plugins, _ = native_run
    cells = _cells(native_run, "speed")
    assert len(cells) == 5  # eager at batch 1 and 64, infer and train; compiled at 64
    compiled = next(r for r in cells if r.cell.params["variant"] == "compiled")
    assert compiled.measurement("first_call") is not None
    net = _net(plugins)
    count = sum(p.numel() for p in net.parameters())
    for r in cells:
        assert r.status == "ok", (r.cell.key, r.error)
        assert r.measurement("throughput").stats.median > 0
        assert r.model.spec_digest == "native:torch:my-cnn"
        assert r.model.parameter_count == count
        assert "achieved_gflops" not in r.metrics and "efficiency" not in r.metrics
    assert {r.cell.params["variant"] for r in cells} == {"eager", "compiled"}
    assert all(r.measurement("latency") is not None for r in cells if r.cell.params["batch_size"] == 1)


def test_other_frameworks_and_parity_skip_saying_why(native_run) -> None:
    tf = _cells(native_run, "speed", framework="tensorflow")
    assert tf and all(r.status == "skipped" for r in tf)
    assert "runs only on torch" in tf[0].error and "my-cnn" in tf[0].error
    (parity,) = _cells(native_run, "parity")
    assert parity.status == "skipped" and "no" in parity.error and "spec" in parity.error
    workers = [r for r in _cells(native_run, "scalability") if r.cell.params["axis"] == "workers"]
    assert workers and workers[0].status == "skipped" and "my-cnn" in workers[0].error


def test_accuracy_trains_it_and_stores_its_own_weights(native_run, tmp_path) -> None:
    plugins, _ = native_run
    cells = sorted(_cells(native_run, "accuracy"), key=lambda r: r.cell.params["seed"])
    assert [r.status for r in cells] == ["ok", "ok"], [r.error for r in cells]
    for r in cells:
        assert r.metrics["accuracy"] > 0.85  # a small CNN learns the 8x8 digits in 4 epochs
        assert r.model.trained_digest and r.model.artifact
    # each seed initialises the module itself: different initial weights, different training
    assert cells[0].model.initial_digest != cells[1].model.initial_digest
    # the artifact holds the module's state_dict (running statistics included) by its own names
    net = _net(plugins)
    own = {k for k, v in net.state_dict().items() if v.is_floating_point()}
    art = next(Path(p) for p in _artifacts(native_run) if cells[0].model.artifact.endswith(Path(p).name))
    with np.load(art) as z:
        assert set(z.files) - {"__meta__"} == own


def _artifacts(native_run) -> list[str]:
    res = native_run[1]["res"]
    root = Path(res.args[res.args.index("--store") + 1].removeprefix("sqlite:///")).parent
    return [str(p) for p in root.rglob("weights/*.npz")]


def test_robustness_attacks_it_in_input_space(native_run) -> None:
    (r,) = _cells(native_run, "robustness")
    assert r.status == "ok", r.error
    clean, attacked = r.metrics["clean_accuracy"], r.metrics["robust_pgd_eps32"]
    assert attacked < clean


def test_a_native_model_of_the_wrong_shape_or_type_is_one_line(native_run) -> None:
    (wrong,) = _cells(native_run, "accuracy", task="wrong-shape")
    assert wrong.status == "failed"
    assert "(2, 3)" in wrong.error and "(2, 10)" in wrong.error and "\n" not in wrong.error
    (fn,) = _cells(native_run, "accuracy", task="not-a-module")
    assert fn.status == "failed" and "torch.nn.Module" in fn.error and "\n" not in fn.error
    assert "Traceback" not in wrong.error + fn.error
    res = native_run[1]["res"]
    assert res.returncode == 1  # failed cells make the run exit 1, after every other cell ran


def test_the_shape_check_never_calls_a_compiled_model_before_it_is_timed(tmp_path) -> None:
    """The output-shape check runs on an eager copy where the variant compiles, so the cell's own
    model meets its first input in the speed scenario (its first-call time stays true)."""
    import types

    from dlbench.api import NativeModel
    from dlbench.cell import Cell
    from dlbench.plugins import get_plugins
    from dlbench.result import Result
    from dlbench.run.context import CellContext

    built: list[tuple[str, list[int]]] = []

    class Probe:
        def __init__(self, variant: str) -> None:
            self.calls: list[int] = []
            built.append((variant, self.calls))

        def get_weights(self): return {"w": np.zeros(1, np.float32)}
        def parameter_count(self): return 1
        def to_device(self, xs): return xs
        def to_numpy(self, y): return y
        def forward(self, xs):
            self.calls.append(1)
            return np.zeros((len(xs["image"]), 10), np.float32)

    fw = types.SimpleNamespace(name="torch", variants=("eager", "compiled"),
                               build_native=lambda native, spec, options: Probe(options.variant))
    task = type("T", (type(get_plugins().tasks.get("vision")),), {
        "name": "t", "native_model": lambda self, p: NativeModel("m", "torch", object)})()
    cell = Cell("speed", "t", "torch", "cpu", {"variant": "compiled", "dataset": "digits", "seed": 0})
    ctx = CellContext(cell, task, fw, types.SimpleNamespace(), tmp_path, Result(cell))
    spec = task.model_spec(cell.params)
    from dlbench.framework import BuildOptions

    ctx._build_native(fw, spec, spec.init_weights(0), BuildOptions(variant="compiled"))
    assert [v for v, _ in built] == ["compiled", "eager"]
    assert built[0][1] == [] and built[1][1] == [1]  # only the eager copy ran the check
