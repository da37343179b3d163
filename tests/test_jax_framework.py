"""The JAX (Flax + Optax) plugin: registration, devices, Model methods, optimizers against torch."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("optax")

from dlbench.builtin.frameworks.jax import JaxFramework, JaxModel  # noqa: E402

from dlbench import spec_numpy  # noqa: E402
from dlbench.errors import UnsupportedError  # noqa: E402
from dlbench.framework import BuildOptions, TrainConfig  # noqa: E402
from dlbench.measure.parity import example_inputs, layer_specs, loss_for, relative_error  # noqa: E402

SPECS = layer_specs()
FW = JaxFramework()


@pytest.fixture(scope="module", autouse=True)
def _quick_jax() -> Iterator[None]:
    from tests.jax_quick import quick_jax

    with quick_jax():
        yield


def _build(name: str, loss: str | None = None, optimizer: str = "sgd", lr: float = 0.5,
           dropout: bool = False, fw: object = FW, **opts: object
           ) -> tuple[JaxModel, dict, dict, np.ndarray]:
    spec = SPECS[name] if dropout else SPECS[name].without_dropout()
    loss = loss or loss_for(spec)
    weights = spec.init_weights(1)
    x, y = example_inputs(spec, 4, 0, loss)
    model = fw.build(spec, weights, BuildOptions(train=TrainConfig(loss, optimizer, lr), **opts))
    return model, weights, x, y


def test_registered_through_the_entry_point() -> None:
    from dlbench.plugins import get_plugins

    fw = get_plugins().frameworks.get("jax")
    assert isinstance(fw, JaxFramework)
    assert fw.availability().installed and fw.version()
    assert fw.devices()[0] == "cpu"


def test_unsupported_options_raise_with_the_choices() -> None:
    spec = SPECS["dense"]
    w = spec.init_weights(0)
    with pytest.raises(UnsupportedError, match="no variant 'graph': choose one of eager, compiled"):
        FW.build(spec, w, BuildOptions(variant="graph"))
    with pytest.raises(UnsupportedError, match="no precision 'fp16'"):
        FW.build(spec, w, BuildOptions(precision="fp16"))
    with pytest.raises(UnsupportedError, match="no device 'cuda:99'"):
        FW.build(spec, w, BuildOptions(device="cuda:99"))


def test_setup_threads_before_import_pins_cpus_and_flags() -> None:
    code = ("import os; from dlbench.builtin.frameworks.jax import JaxFramework; "
            "JaxFramework().setup(1, 0, {}); import jax; jax.numpy.ones(2).block_until_ready(); "
            "print(len(os.sched_getaffinity(0)), os.environ.get('XLA_FLAGS', ''))")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr[-2000:]
    count, flags = out.stdout.split(maxsplit=1)
    assert count == "1"
    assert "--xla_cpu_multi_thread_eigen=false" in flags


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])  # sgd: tests/test_parity_layers.py
def test_optimizers_match_torch_over_two_steps(optimizer: str) -> None:
    pytest.importorskip("torch")
    from dlbench.builtin.frameworks.torch import TorchFramework

    jm, weights, x, y = _build("dense", optimizer=optimizer, lr=0.01, variant="compiled")
    tm, _, _, _ = _build("dense", optimizer=optimizer, lr=0.01, fw=TorchFramework())
    x2, y2 = example_inputs(jm.spec, 4, 9)
    for m in (jm, tm):
        for xb, yb in ((x, y), (x2, y2)):
            m.train_step(m.to_device(xb), m.to_device(yb))
        m.synchronize()
    jw, tw = jm.get_weights(), tm.get_weights()
    for k in weights:
        assert relative_error(jw[k] - weights[k], tw[k] - weights[k]) < 1e-3, k


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "mse"])
def test_scalar_output_losses(loss: str) -> None:
    model, weights, x, y = _build("dot_two_towers", loss=loss, variant="compiled")
    value, grads = model.loss_and_input_gradient(x, y)
    assert grads == {}
    ref = spec_numpy.loss(loss, spec_numpy.forward(model.spec, weights, x), y)
    assert value == pytest.approx(ref, rel=1e-5)
    step = model.train_step(model.to_device(x), model.to_device(y))
    assert float(model.to_numpy(step)) == pytest.approx(ref, rel=1e-5)


def test_to_device_dtypes_and_placement() -> None:
    model, _, x, y = _build("position_embedding")
    nx = model.to_device(x)
    assert str(nx["ids"].dtype) == "int32"
    assert str(model.to_device(y).dtype) == "int32"
    assert nx["ids"].devices() == {model.device}
    with pytest.raises(UnsupportedError, match="input 'nope'"):
        model.to_device({"nope": x["ids"]})


def test_weights_round_trip_and_set_resets_optimizer() -> None:
    model, weights, x, y = _build("conv2d_same_stride2", optimizer="adam", lr=0.01,
                                  variant="compiled")
    got = model.get_weights()
    assert sorted(got) == sorted(weights)
    for k in weights:
        assert got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], weights[k])
    nx, ny = model.to_device(x), model.to_device(y)
    model.train_step(nx, ny)
    first = model.get_weights()
    model.train_step(nx, ny)
    model.set_weights(weights)
    model.train_step(nx, ny)
    again = model.get_weights()
    for k in weights:
        np.testing.assert_allclose(again[k], first[k], rtol=1e-6, atol=1e-7)


def test_dropout_is_active_in_training_only() -> None:
    model, weights, x, y = _build("dropout", dropout=True, lr=0.0, variant="compiled")
    np.testing.assert_allclose(model.predict(x), spec_numpy.forward(model.spec, weights, x),
                               rtol=1e-4, atol=1e-6)
    eval_loss, _ = model.loss_and_input_gradient(x, y)
    nx, ny = model.to_device(x), model.to_device(y)
    losses = [float(model.to_numpy(model.train_step(nx, ny))) for _ in range(3)]
    assert len({round(v, 6) for v in losses}) > 1  # a fresh dropout mask every step
    assert all(abs(v - eval_loss) > 1e-7 for v in losses)


def test_embed_returns_the_embedding_outputs() -> None:
    model, weights, x, _ = _build("embedding")
    emb = model.embed(x)
    np.testing.assert_allclose(emb["embedding_0"], weights["embedding_0.embeddings"][x["ids"]],
                               rtol=1e-6)


def test_compiled_matches_eager_and_reshapes() -> None:
    eager, weights, x, y = _build("conv2d_same_stride2")
    compiled, _, _, _ = _build("conv2d_same_stride2", variant="compiled")
    assert relative_error(compiled.predict(x), spec_numpy.forward(eager.spec, weights, x)) < 1e-4
    for m in (eager, compiled):
        m.train_step(m.to_device(x), m.to_device(y))
        m.synchronize()
    e, c = eager.get_weights(), compiled.get_weights()
    for k in e:
        np.testing.assert_allclose(c[k], e[k], rtol=1e-4, atol=1e-6)
    x3, _ = example_inputs(eager.spec, 3, 5)
    assert relative_error(compiled.predict(x3), eager.predict(x3)) < 1e-4


def test_cpu_memory_and_synchronize() -> None:
    model, _, x, y = _build("dense", variant="compiled")
    model.synchronize()  # nothing queued yet
    model.train_step(model.to_device(x), model.to_device(y))
    model.synchronize()
    model.reset_peak_memory()
    peak = model.peak_memory_bytes()
    assert peak is None or peak > 0


@pytest.mark.parametrize("name", ["attention_masked"])
def test_bf16_runs_and_is_close(name: str) -> None:
    model, weights, x, y = _build(name, precision="bf16", variant="compiled", optimizer="adam",
                                  lr=1e-3)
    out = model.predict(x)
    assert out.dtype == np.float32
    assert relative_error(out, spec_numpy.forward(model.spec, weights, x)) < 5e-2
    loss = model.train_step(model.to_device(x), model.to_device(y))
    assert np.isfinite(float(model.to_numpy(loss)))
    assert all(v.dtype == np.float32 for v in model.get_weights().values())


# -- GPU ------------------------------------------------------------------------------------------


def _jax_gpu() -> bool:
    return "cuda" in FW.devices()


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["eager", "compiled"])
def test_cuda_build_forward_train_and_memory(variant: str) -> None:
    if not _jax_gpu():
        pytest.skip("jax sees no GPU")
    model, weights, x, y = _build("attention_masked", device="cuda", variant=variant,
                                  optimizer="adam", lr=1e-3)
    assert model.device.platform == "gpu"
    nx, ny = model.to_device(x), model.to_device(y)
    assert nx["x"].devices() == {model.device}
    out = model.forward(nx)
    model.synchronize()
    assert relative_error(model.to_numpy(out), spec_numpy.forward(model.spec, weights, x)) < 1e-4
    loss = model.train_step(nx, ny)
    model.synchronize()
    assert np.isfinite(float(model.to_numpy(loss)))
    peak = model.peak_memory_bytes()
    assert peak is not None and peak > 0
    _, grads = model.loss_and_input_gradient(x, y)
    assert grads["x"].shape == x["x"].shape


@pytest.mark.gpu
def test_cuda_bf16() -> None:
    if not _jax_gpu():
        pytest.skip("jax sees no GPU")
    model, weights, x, y = _build("conv2d_same", device="cuda", variant="compiled",
                                  precision="bf16")
    out = model.predict(x)
    assert relative_error(out, spec_numpy.forward(model.spec, weights, x)) < 5e-2
    assert np.isfinite(float(model.to_numpy(model.train_step(model.to_device(x),
                                                             model.to_device(y)))))
