"""The Keras 3 plugin on each backend: NumPy and PyTorch parity, optimizers, weights, bf16.

Keras fixes its backend at import, so every backend runs in its own subprocess
(``tests/keras_worker.py``), which prints its measurements as JSON; the assertions are here.
The workers of all backends the selected tests need start together, so they overlap.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dlbench.errors import DlbenchError
from dlbench.measure import parity

# find_spec, not importorskip: importing keras here would fix a backend in the test process.
if importlib.util.find_spec("keras") is None or importlib.util.find_spec("torch") is None:
    pytest.skip("keras and torch are needed", allow_module_level=True)

WORKER = Path(__file__).resolve().parent / "keras_worker.py"
BACKENDS = ("tensorflow", "jax", "torch")
ALL_SPECS = sorted(parity.layer_specs())
JAX_FORWARD_SPECS = ("conv1d_same_stride2", "conv2d_valid_stride2", "maxpool1d", "avgpool2d",
                     "global_avg_pool2d", "global_avg_pool_masked", "activation_gelu", "concat_conv",
                     "embedding", "dropout", "batch_norm_conv", "conv2d_grouped", "embedding_bag",
                     "maxpool2d_overlap_pad")
"""Eager JAX compiles every primitive, so its default forward sweep is a subset (the parity
check adds attention, LayerNorm, position embeddings and Dot); the full sweep is marked slow."""
FP32 = 1e-4


def _available(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def _default_job(backend: str) -> tuple[str, str]:
    checks = "forward,parity,batch_norm,optimizers,weights,bf16,misc"
    if backend != "torch":  # torch.compile takes minutes on two cores: see the slow test
        checks += ",compiled"
    specs = ",".join(JAX_FORWARD_SPECS) if backend == "jax" else "all"
    return checks, specs


def _start(backend: str, checks: str, specs: str = "all") -> subprocess.Popen[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(WORKER), backend, checks, specs], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 900) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    for line in reversed(out.splitlines()):
        if line.startswith("KERAS_WORKER_JSON "):
            return json.loads(line.split(" ", 1)[1])
    raise AssertionError(f"keras worker failed (rc={proc.returncode}):\n{err[-4000:]}")


def _run(backend: str, checks: str, specs: str = "all") -> dict[str, Any]:
    return _finish(_start(backend, checks, specs))


@pytest.fixture(scope="module")
def worker(request: pytest.FixtureRequest) -> Iterator[Callable[[str], dict[str, Any]]]:
    """``worker(backend)``: the default checks of that backend (all needed backends run at once)."""
    here = Path(str(request.node.path))
    needed = {item.callspec.params["backend"] for item in request.session.items
              if Path(str(item.path)) == here and hasattr(item, "callspec")
              and "backend" in item.callspec.params
              and not item.get_closest_marker("slow") and not item.get_closest_marker("skip")}
    procs = {b: _start(b, *_default_job(b)) for b in BACKENDS if b in needed and _available(b)}
    results: dict[str, dict[str, Any]] = {}

    def get(backend: str) -> dict[str, Any]:
        if not _available(backend):
            pytest.skip(f"keras backend {backend} is not installed")
        if backend not in results:
            proc = procs.pop(backend, None) or _start(backend, *_default_job(backend))
            results[backend] = _finish(proc)
        return results[backend]

    yield get
    for proc in procs.values():
        proc.kill()
        proc.communicate()


def _check(result: dict[str, Any], name: str) -> Any:
    value = result[name]
    if isinstance(value, dict) and "error" in value:
        raise AssertionError(f"check {name} failed in the worker:\n{value['error']}")
    return value


def test_framework_metadata_without_importing_keras() -> None:
    from dlbench.builtin.frameworks.keras import KerasFramework, select_backend

    fw = KerasFramework()
    assert fw.name == "keras" and fw.availability().installed
    param = fw.params["backend"]
    assert param.default == "tensorflow" and param.choices == BACKENDS
    assert param.applies_to == ("keras",)
    assert param.validate("backend", "mxnet") is not None
    with pytest.raises(DlbenchError, match="mxnet"):
        select_backend("mxnet")


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_matches_numpy(worker: Callable[[str], dict[str, Any]], backend: str) -> None:
    result = worker(backend)
    assert result["backend"] == backend
    errors = _check(result, "forward")
    assert sorted(errors) == sorted(JAX_FORWARD_SPECS if backend == "jax" else ALL_SPECS)
    bad = {k: v for k, v in errors.items() if not v < FP32}
    assert not bad


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_and_sgd_step_match_torch(worker: Callable[[str], dict[str, Any]], backend: str) -> None:
    rows = _check(worker(backend), "parity")
    for spec, checks in rows.items():
        assert {"outputs", "loss", "weights_after_step"} <= set(checks), spec
        assert all(v < FP32 for v in checks.values()), (spec, checks)
    assert "input_gradient" in rows["attention_masked"]
    assert {"residual_block", "embedding_bag", "dot_interaction", "attention_causal_masked",
            "maxpool2d_overlap_pad", "maxpool1d_overlap_pad"} <= set(rows)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_norm_running_statistics_match_numpy(worker: Callable[[str], dict[str, Any]],
                                                   backend: str) -> None:
    rows = _check(worker(backend), "batch_norm")
    assert sorted(rows) == ["batch_norm_conv", "batch_norm_dense", "residual_block"]
    for spec, errors in rows.items():
        assert sum(".moving_" in k for k in errors) >= 2, (spec, errors)
        assert all(v < FP32 for v in errors.values()), (spec, errors)


@pytest.mark.parametrize("backend", BACKENDS)
def test_momentum_and_adam_match_torch(worker: Callable[[str], dict[str, Any]], backend: str) -> None:
    errors = _check(worker(backend), "optimizers")
    assert set(errors) == {"momentum_1", "momentum_3", "adam_1", "adam_3"}
    assert all(v < FP32 for v in errors.values()), errors


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_round_trip(worker: Callable[[str], dict[str, Any]], backend: str) -> None:
    res = _check(worker(backend), "weights")
    assert res["keys_match"] and res["initial_equal"] and res["set_equal"]
    assert res["dtypes"] == ["float32"]
    assert res["changed"] and res["reset_repeatable"]  # set_weights resets the optimizer
    assert "missing" in res["bad_weights_error"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_mixed_precision(worker: Callable[[str], dict[str, Any]], backend: str) -> None:
    res = _check(worker(backend), "bf16")
    assert res["output_dtype"] == "float32"
    assert res["rel_error"] < 5e-2
    assert math.isfinite(res["loss"])
    assert res["weight_dtypes"] == ["float32"]
    assert res["grad_finite"] and res["grad_shape_ok"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_embed_devices_variants_and_backend_switch(worker: Callable[[str], dict[str, Any]],
                                                   backend: str) -> None:
    res = _check(worker(backend), "misc")
    assert res["embed_error"] < 1e-6
    assert res["devices"][0] == "cpu"
    if backend == "tensorflow":
        assert res["graph"] == "ok"
    else:
        assert "no variant 'graph'" in res["graph"]
    for key in ("switch_error", "build_other_error"):
        assert f"already imported in this process with backend '{backend}'" in res[key]


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_compiled_variant(worker: Callable[[str], dict[str, Any]], backend: str) -> None:
    res = _check(worker(backend), "compiled")
    assert all(v < FP32 for v in res.values()), res


@pytest.mark.slow
def test_compiled_variant_torch_backend() -> None:
    if not _available("torch"):
        pytest.skip("torch is not installed")
    res = _check(_run("torch", "compiled"), "compiled")
    assert all(v < FP32 for v in res.values()), res


@pytest.mark.slow
def test_forward_matches_numpy_jax_all_layers() -> None:
    if not _available("jax"):
        pytest.skip("jax is not installed")
    errors = _check(_run("jax", "forward"), "forward")
    assert sorted(errors) == ALL_SPECS
    assert all(v < FP32 for v in errors.values()), errors


@pytest.mark.gpu
@pytest.mark.parametrize("backend", BACKENDS)
def test_gpu(backend: str) -> None:
    if not _available(backend):
        pytest.skip(f"keras backend {backend} is not installed")
    res = _check(_run(backend, "gpu"), "gpu")
    if res.get("skip"):
        pytest.skip(res["skip"])
    assert all(v < FP32 for v in res["fp32"].values()), res  # IEEE fp32: no TF32 on the GPU
    assert res["bf16_rel_error"] < 5e-2 and math.isfinite(res["bf16_loss"])
    if backend != "jax":  # JAX reports no peak on some runtimes
        assert (res["peak_memory"] or 0) > 0
