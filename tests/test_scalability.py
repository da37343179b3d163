"""The scalability scenario: batch-size sweep and saturation, threads in child processes, data-
parallel workers (DDP with gloo, JAX host devices, TensorFlow MirroredStrategy), accuracy against
the training-set fraction. Budgets are tiny: these tests check behaviour, not speed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlbench.cell import Cell
from dlbench.errors import DlbenchError, UnsupportedError
from dlbench.framework import BuildOptions, DataParallelRun
from dlbench.plugins import get_plugins
from dlbench.result import Measurement, Result
from dlbench.run.worker import execute
from dlbench.scenarios.scalability import ScalabilityScenario, summarize_points, sweep_values

TINY = {"max_time": 0.3, "warmup_time": 0.05, "min_samples": 4, "target_ci": 0.2, "min_window": 0.01}
MLP = {"dataset": "digits", "model": "mlp", "seed": 0}
needs = {m: pytest.mark.skipif(importlib.util.find_spec(m) is None, reason=f"needs {m}")
         for m in ("torch", "jax", "tensorflow", "sklearn")}


def run_cell(tmp_path: Path, framework: str, budget: dict | None = None, **params: object) -> Result:
    """Run one scalability cell in this process, as the worker does."""
    cell = Cell("scalability", "vision", framework, "cpu", {**MLP, **params}, 600.0, budget or TINY)
    payload = {"cell": cell.to_dict(), "plugins": get_plugins().config.to_dict(),
               "artifacts_dir": str(tmp_path / "artifacts")}
    return execute(payload)


def vision_batch(workers: int, batch_size: int) -> tuple:
    task = get_plugins().tasks.get("vision")
    spec = task.model_spec(MLP)
    xs, y = task.synthetic_batch(spec, workers * batch_size, np.random.default_rng(0), MLP)
    return task, spec, xs, y


# -- pure parts -------------------------------------------------------------------------------------


def test_sweep_values_are_validated_sorted_and_defaulted() -> None:
    assert sweep_values("batch_size", [64, 1, 16]) == [1, 16, 64]
    assert sweep_values("threads", None) == [1, 2]
    assert sweep_values("train_fraction", [1, 0.1]) == [0.1, 1.0]
    for axis, bad in (("threads", [0, 2]), ("batch_size", [1.5]), ("train_fraction", [0.0, 1]),
                      ("workers", []), ("train_fraction", [1.2])):
        with pytest.raises(DlbenchError, match=f"values=.* for axis {axis}"):
            sweep_values(axis, bad)


def _throughput(name: str, median: float) -> Measurement:
    return Measurement(name, "samples/s", [median * f for f in (0.99, 1.0, 1.0, 1.01, 1.0, 1.0)])


def test_saturation_is_the_smallest_batch_reaching_the_threshold_of_the_peak() -> None:
    curve = {1: 100.0, 8: 600.0, 64: 950.0, 256: 1000.0, 1024: 980.0}
    points = [{"value": b, "measurement": _throughput(f"throughput@bs={b}", t)} for b, t in curve.items()]
    r = Result(Cell("scalability", "vision", "x"))
    summarize_points(r, "batch_size", points, 0.9, "accuracy")
    assert r.metrics["saturation_batch_size"] == 64 and r.metrics["peak_batch_size"] == 256
    assert r.metrics["peak_throughput"] == pytest.approx(1000.0)
    series = r.series["scaling"]
    assert [p["value"] for p in series] == list(curve)
    assert [p["efficiency"] for p in series] == pytest.approx([t / 1000 for t in curve.values()])
    assert all(p["ci_low"] <= p["throughput"] <= p["ci_high"] for p in series)
    assert r.details["saturation"]["peak_at_largest"] is False


def test_efficiency_is_throughput_over_n_times_the_base() -> None:
    points = [{"value": n, "measurement": _throughput(f"throughput@workers={n}", t)}
              for n, t in ((1, 100.0), (2, 180.0), (4, 300.0))]
    points.append({"value": 8, "error": "skipped: workers=8 > devices", "status": "skipped"})
    r = Result(Cell("scalability", "vision", "x"))
    summarize_points(r, "workers", points, 0.9, "accuracy")
    assert r.metrics["scaling_efficiency@2"] == pytest.approx(0.9)
    assert r.metrics["scaling_efficiency@4"] == pytest.approx(0.75)
    assert r.metrics["speedup@4"] == pytest.approx(3.0)
    assert r.series["scaling"][-1]["throughput"] is None and "error" in r.series["scaling"][-1]
    assert r.details["failed_points"][0]["value"] == 8


def test_a_sweep_whose_points_all_skipped_skips_the_cell() -> None:
    points = [{"value": 2, "error": "no second GPU", "status": "skipped"}]
    with pytest.raises(UnsupportedError, match="no second GPU"):
        summarize_points(Result(Cell("scalability", "vision", "x")), "workers", points, 0.9, "acc")


def test_parent_side_skips_need_no_framework_import() -> None:
    plugins = get_plugins()
    sc, task = ScalabilityScenario(), plugins.tasks.get("vision")
    sk = plugins.frameworks.get("sklearn")
    assert "classic" in sc.skip_reason(Cell("scalability", "vision", "sklearn", params={"axis": "workers"}), task, sk)
    assert sc.skip_reason(Cell("scalability", "vision", "sklearn", params={"axis": "train_fraction"}), task, sk) is None
    if "keras" in plugins.frameworks:  # no data-parallel implementation (yet)
        keras = plugins.frameworks.get("keras")
        if type(keras).data_parallel_throughput is type(sk).data_parallel_throughput:
            assert "data-parallel" in sc.skip_reason(Cell("scalability", "vision", "keras",
                                                          params={"axis": "workers"}), task, keras)


def test_scalability_suite_expands_one_cell_per_sweep() -> None:
    from dlbench.run.suite import load

    plugins = get_plugins()
    cells = load("scalability", plugins).cells(plugins)
    axes = {c.params["axis"] for c in cells}
    assert axes == {"batch_size", "threads", "workers", "train_fraction"}
    assert all(isinstance(c.params["values"], list) and len(c.params["values"]) >= 2 for c in cells)
    assert {c.framework for c in cells if c.params["axis"] == "train_fraction"} == {"torch", "sklearn"}


# -- sweeps on real frameworks ----------------------------------------------------------------------


@needs["torch"]
def test_batch_sweep_yields_a_point_per_value_and_a_saturation_batch(tmp_path: Path) -> None:
    r = run_cell(tmp_path, "torch", axis="batch_size", values=[1, 8, 64], threads=1, mode="infer")
    assert r.status == "ok", r.error
    series = r.series["scaling"]
    assert [p["value"] for p in series] == [1, 8, 64] and {p["axis"] for p in series} == {"batch_size"}
    assert all(p["throughput"] > 0 for p in series)
    assert max(p["efficiency"] for p in series) == pytest.approx(1.0)
    assert r.metrics["saturation_batch_size"] in (1, 8, 64)
    m = r.measurement("throughput@bs=64")
    assert m is not None and len(m.samples) >= 3 and m.meta["batch_size"] == 64
    assert r.model is not None and r.model.parameter_count > 0


def test_threads_axis_runs_each_point_in_a_child_process(tmp_path: Path, plugin_dir: Path) -> None:
    """A light third-party framework (numpyfw, from --plugins-dir) keeps this test fast; the
    children get the parent's plugin configuration and one speed cell each."""
    from dlbench.plugins import PluginConfig

    cell = Cell("scalability", "blobs", "numpyfw", "cpu",
                {"axis": "threads", "values": [1, 2], "batch_size": 16, "mode": "train", "seed": 0},
                600.0, TINY)
    config = PluginConfig(plugins_dirs=(str(plugin_dir),))
    r = execute({"cell": cell.to_dict(), "plugins": config.to_dict(),
                 "artifacts_dir": str(tmp_path / "artifacts")})
    assert r.status == "ok", r.error
    series = r.series["scaling"]
    assert [p["value"] for p in series] == [1, 2] and series[0]["efficiency"] == pytest.approx(1.0)
    t1, t2 = series[0]["throughput"], series[1]["throughput"]
    assert r.metrics["scaling_efficiency@2"] == pytest.approx(t2 / (2 * t1))
    assert r.metrics["speedup@2"] == pytest.approx(t2 / t1)
    for n in (1, 2):
        m = r.measurement(f"throughput@threads={n}")
        assert m is not None and m.meta["cell"] == f"speed/blobs/numpyfw[cpu,bs=16,train,threads={n}]"
    logs = sorted((tmp_path / "logs").glob("*.log"))  # one log per child cell process
    assert len(logs) == 2 and all("Traceback" not in f.read_text() for f in logs)


def test_threads_on_a_threads_or_workers_sweep_is_an_error(tmp_path: Path, plugin_dir: Path) -> None:
    from dlbench.plugins import PluginConfig

    cell = Cell("scalability", "blobs", "numpyfw", "cpu", {"axis": "workers", "threads": 2}, 60.0, TINY)
    r = execute({"cell": cell.to_dict(), "plugins": PluginConfig(plugins_dirs=(str(plugin_dir),)).to_dict(),
                 "artifacts_dir": str(tmp_path / "artifacts")})
    assert r.status == "failed" and "worker_threads" in r.error


@needs["torch"]
def test_ddp_with_two_gloo_workers_returns_throughput() -> None:
    from dlbench.builtin.frameworks.torch import TorchFramework

    task, spec, xs, y = vision_batch(2, 16)
    fw = TorchFramework()
    options = BuildOptions(train=task.train_config(MLP))
    samples = fw.data_parallel_throughput(spec, spec.init_weights(0), options,
                                          DataParallelRun(2, 16, xs, y, TINY))
    assert len(samples) >= 3 and all(s > 0 for s in samples)


@needs["jax"]
def test_jax_workers_axis_runs_on_two_host_devices(tmp_path: Path) -> None:
    r = run_cell(tmp_path, "jax", axis="workers", values=[1, 2], batch_size=16)
    assert r.status == "ok", r.error
    series = r.series["scaling"]
    assert [p["value"] for p in series] == [1, 2] and all(p["throughput"] > 0 for p in series)
    assert series[1]["global_batch"] == 32 and "scaling_efficiency@2" in r.metrics
    assert r.measurement("throughput@workers=2").meta["batch_size_per_worker"] == 16


EQUIVALENCE = """
import json, sys
import numpy as np
{setup}
from dlbench.framework import BuildOptions, DataParallelRun, TrainConfig
from dlbench.plugins import get_plugins
task = get_plugins().tasks.get("vision")
params = {{"dataset": "digits", "model": "mlp"}}
spec = task.model_spec(params).without_dropout()
w = spec.init_weights(0)
xs, y = task.synthetic_batch(spec, 32, np.random.default_rng(0), params)
opts = BuildOptions(train=TrainConfig("cross_entropy", "adam", 1e-2))
step, sync, dp = {training}(fw, spec, w, opts, DataParallelRun(2, 16, xs, y))
for _ in range(3):
    step()
sync()
{reference}
ref_model = fw.build(spec, w, opts)
nx, ny = ref_model.to_device(xs), ref_model.to_device(y)
for _ in range(3):
    ref_model.train_step(nx, ny)
got, ref = dp.get_weights(), ref_model.get_weights()
print(json.dumps({{"replicas": replicas,
                  "dp_vs_single": max(float(np.abs(got[k] - ref[k]).max()) for k in ref),
                  "moved": max(float(np.abs(w[k] - ref[k]).max()) for k in ref)}}))
"""


def _equivalence(setup: str, training: str, reference: str) -> dict:
    code = textwrap.dedent(EQUIVALENCE).format(setup=setup, training=training, reference=reference)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs["jax"]
def test_jax_two_host_devices_train_like_one_device_on_the_global_batch() -> None:
    out = _equivalence(
        "from dlbench.builtin.frameworks.jax.dp import configure_host_devices, sharded_training\n"
        "configure_host_devices(2, 1)\n"
        "from dlbench.builtin.frameworks.jax import JaxFramework\nfw = JaxFramework()",
        "sharded_training",
        "import jax\nreplicas = len(dp.params[next(iter(dp.params))]['kernel'].sharding.device_set)")
    assert out["replicas"] == 2
    assert out["moved"] > 1e-3 and out["dp_vs_single"] < 1e-5


@needs["tensorflow"]
def test_tensorflow_mirrored_strategy_trains_like_one_device_on_the_global_batch() -> None:
    out = _equivalence(
        "from dlbench.builtin.frameworks.tensorflow.dp import mirrored_training\n"
        "from dlbench.builtin.frameworks.tensorflow import TensorFlowFramework\nfw = TensorFlowFramework()",
        "mirrored_training",
        "import tensorflow as tf\nreplicas = len(dp._vars[0].values)")
    assert out["replicas"] == 2
    assert out["moved"] > 1e-3 and out["dp_vs_single"] < 1e-5


@needs["torch"]
@needs["sklearn"]
@pytest.mark.parametrize("framework", ["torch", "sklearn"])
def test_accuracy_rises_with_more_training_data_on_digits(tmp_path: Path, framework: str) -> None:
    r = run_cell(tmp_path, framework, axis="train_fraction", values=[0.1, 1.0], epochs=3,
                 batch_size=32, threads=1)
    assert r.status == "ok", r.error
    small, full = r.series["scaling"]
    assert (small["value"], full["value"]) == (0.1, 1.0) and small["n_train"] < full["n_train"]
    assert full["metric"] > small["metric"] and small["metric_name"] == "accuracy"
    assert r.metrics["accuracy_gain"] == pytest.approx(full["metric"] - small["metric"])
    assert full["ci_low"] <= full["metric"] <= full["ci_high"]
    assert len(r.measurement("test_correct@fraction=0.1").samples) == len(r.measurement("test_correct@fraction=1").samples)
    if framework == "torch":  # equal optimizer steps: a tenth of the data for ten times the epochs
        assert (small["epochs"], full["epochs"]) == (30, 3)


# -- GPUs ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@needs["torch"]
def test_batch_sweep_on_a_gpu(tmp_path: Path) -> None:
    cell = Cell("scalability", "vision", "torch", "cuda",
                {**MLP, "axis": "batch_size", "values": [1, 64, 1024], "mode": "train"}, 600.0, TINY)
    r = execute({"cell": cell.to_dict(), "plugins": get_plugins().config.to_dict(),
                 "artifacts_dir": str(tmp_path / "artifacts")})
    assert r.status == "ok", r.error
    assert [p["value"] for p in r.series["scaling"]] == [1, 64, 1024]
    assert all(p.get("peak_device_memory_mb", 0) > 0 for p in r.series["scaling"])


@pytest.mark.gpu
@needs["torch"]
def test_ddp_with_nccl_on_two_gpus() -> None:
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("NCCL DDP needs two GPUs")
    from dlbench.builtin.frameworks.torch import TorchFramework

    task, spec, xs, y = vision_batch(2, 64)
    samples = TorchFramework().data_parallel_throughput(
        spec, spec.init_weights(0), BuildOptions(device="cuda", train=task.train_config(MLP)),
        DataParallelRun(2, 64, xs, y, TINY))
    assert len(samples) >= 3 and all(s > 0 for s in samples)
