"""The PyTorch plugin: registration, devices, every Model method, gradients against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from dlbench.builtin.frameworks.torch import TorchFramework, TorchModel  # noqa: E402

from dlbench import spec_numpy  # noqa: E402
from dlbench.errors import UnsupportedError  # noqa: E402
from dlbench.framework import BuildOptions, TrainConfig  # noqa: E402
from dlbench.measure.parity import (  # noqa: E402
    example_inputs,
    gradient_inputs,
    layer_specs,
    loss_for,
    relative_error,
)

SPECS = layer_specs()
FW = TorchFramework()


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    FW.setup(1, 0, {})


def _build(name: str, loss: str | None = None, optimizer: str = "sgd", lr: float = 0.5,
           dropout: bool = False, **opts: object) -> tuple[TorchModel, dict, dict, np.ndarray]:
    spec = SPECS[name] if dropout else SPECS[name].without_dropout()
    loss = loss or loss_for(spec)
    weights = spec.init_weights(1)
    x, y = example_inputs(spec, 4, 0, loss)
    model = FW.build(spec, weights, BuildOptions(train=TrainConfig(loss, optimizer, lr), **opts))
    return model, weights, x, y


def _numeric_directional(f, point: np.ndarray, direction: np.ndarray, eps: float = 1e-5) -> float:
    return (f(point + eps * direction) - f(point - eps * direction)) / (2 * eps)


def test_registered_through_the_entry_point() -> None:
    from dlbench.plugins import get_plugins

    fw = get_plugins().frameworks.get("torch")
    assert isinstance(fw, TorchFramework)
    assert fw.availability().installed and fw.version()
    assert "cpu" in fw.devices()


def test_unsupported_options_raise_with_the_choices() -> None:
    spec = SPECS["dense"]
    w = spec.init_weights(0)
    with pytest.raises(UnsupportedError, match="no variant 'graph': choose one of eager, compiled"):
        FW.build(spec, w, BuildOptions(variant="graph"))
    with pytest.raises(UnsupportedError, match="no precision 'fp16'"):
        FW.build(spec, w, BuildOptions(precision="fp16"))
    with pytest.raises(UnsupportedError, match="no device 'tpu'"):
        FW.build(spec, w, BuildOptions(device="tpu"))
    with pytest.raises(UnsupportedError, match="cuda:99"):
        FW.build(spec, w, BuildOptions(device="cuda:99"))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_gradients_match_numpy_finite_differences(name: str) -> None:
    """Input gradient (inference mode) and one SGD step (training mode) agree with central
    differences of the NumPy loss."""
    model, weights, x, y = _build(name, lr=0.5)
    spec, loss = model.spec, model.options.train.loss
    rng = np.random.default_rng(7)
    value, grads = model.loss_and_input_gradient(x, y)
    assert value == pytest.approx(spec_numpy.loss(loss, spec_numpy.forward(spec, weights, x), y),
                                  rel=1e-5)
    assert sorted(grads) == sorted(gradient_inputs(spec))
    for k, g in grads.items():
        d = rng.normal(size=g.shape)

        def f(v: np.ndarray, k: str = k) -> float:
            return spec_numpy.loss(loss, spec_numpy.forward(spec, weights, {**x, k: v}), y)

        num = _numeric_directional(f, x[k].astype(np.float64), d)
        assert float((g * d).sum()) == pytest.approx(num, rel=1e-3, abs=1e-6)

    model.train_step(model.to_device(x), model.to_device(y))
    after = model.get_weights()
    keys = sorted(set(weights) - set(spec.state_keys()))  # running statistics are not trained
    flat0 = np.concatenate([weights[k].astype(np.float64).ravel() for k in keys])
    step = np.concatenate([(after[k] - weights[k]).astype(np.float64).ravel() for k in keys])
    d = rng.normal(size=flat0.shape)

    def fw(flat: np.ndarray) -> float:
        ws, i = {}, 0
        for k in keys:
            n = weights[k].size
            ws[k] = flat[i:i + n].reshape(weights[k].shape)
            i += n
        out = spec_numpy.forward(spec, {**weights, **ws}, x, training=True)  # BatchNorm: batch stats
        return spec_numpy.loss(loss, out, y)

    num = _numeric_directional(fw, flat0, d)
    assert float(-(step / 0.5) @ d) == pytest.approx(num, rel=1e-3, abs=1e-5)


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "mse"])
def test_scalar_output_losses(loss: str) -> None:
    model, weights, x, y = _build("dot_two_towers", loss=loss)
    value, grads = model.loss_and_input_gradient(x, y)
    assert grads == {}
    ref = spec_numpy.loss(loss, spec_numpy.forward(model.spec, weights, x), y)
    assert value == pytest.approx(ref, rel=1e-5)
    t = model.to_device(y)
    assert str(t.dtype) == "torch.float32"
    step = model.train_step(model.to_device(x), t)
    assert float(model.to_numpy(step)) == pytest.approx(ref, rel=1e-5)


def test_to_device_keeps_ids_integer_and_floats_float32() -> None:
    model, _, x, y = _build("position_embedding")
    nx = model.to_device(x)
    assert str(nx["ids"].dtype) == "torch.int64"
    assert str(model.to_device(y).dtype) == "torch.int64"
    model, _, x, _ = _build("attention_masked")
    nx = model.to_device({k: v.astype(np.float64) for k, v in x.items()})
    assert {str(t.dtype) for t in nx.values()} == {"torch.float32"}
    with pytest.raises(UnsupportedError, match="input 'nope'"):
        model.to_device({"nope": x["x"]})


def test_weights_round_trip_and_set_resets_optimizer() -> None:
    model, weights, x, y = _build("conv2d_same_stride2", optimizer="adam", lr=0.01)
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
    model.train_step(nx, ny)  # a fresh Adam state: the first step again
    again = model.get_weights()
    for k in weights:
        np.testing.assert_allclose(again[k], first[k], rtol=1e-6, atol=1e-7)


def test_adam_and_momentum_first_steps() -> None:
    sgd, weights, x, y = _build("dense", optimizer="sgd", lr=0.01)
    mom, _, _, _ = _build("dense", optimizer="momentum", lr=0.01)
    adam, _, _, _ = _build("dense", optimizer="adam", lr=0.01)
    for m in (sgd, mom, adam):
        m.train_step(m.to_device(x), m.to_device(y))
    s, mo, a = sgd.get_weights(), mom.get_weights(), adam.get_weights()
    for k in weights:  # heavy-ball momentum starts like SGD; Adam's first step is ~lr * sign(g)
        np.testing.assert_allclose(mo[k], s[k], rtol=1e-6, atol=1e-8)
        delta = np.abs(a[k] - weights[k])
        assert delta.max() <= 0.01 * (1 + 1e-4)
    assert np.isclose(np.abs(a["dense_1.kernel"] - weights["dense_1.kernel"]), 0.01, rtol=1e-2).any()


def test_dropout_is_active_in_training_only() -> None:
    model, weights, x, y = _build("dropout", dropout=True, lr=0.0)
    a, b = model.predict(x), model.predict(x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, spec_numpy.forward(model.spec, weights, x), rtol=1e-4, atol=1e-6)
    eval_loss, _ = model.loss_and_input_gradient(x, y)
    nx, ny = model.to_device(x), model.to_device(y)
    train_losses = {round(float(model.to_numpy(model.train_step(nx, ny))), 6) for _ in range(3)}
    assert train_losses != {round(eval_loss, 6)}
    for k, v in model.get_weights().items():  # lr = 0: the weights did not move
        np.testing.assert_array_equal(v, weights[k])


def test_embed_returns_the_embedding_outputs() -> None:
    model, weights, x, _ = _build("position_embedding")
    emb = model.embed(x)
    np.testing.assert_allclose(emb["embedding_0"], weights["embedding_0.embeddings"][x["ids"]],
                               rtol=1e-6)
    dense, _, xd, _ = _build("dense")
    with pytest.raises(UnsupportedError, match="no Embedding"):
        dense.embed(xd)


def test_cpu_memory_and_synchronize() -> None:
    model, _, x, _ = _build("dense")
    model.reset_peak_memory()
    model.forward(model.to_device(x))
    model.synchronize()
    assert model.peak_memory_bytes() is None


def test_fit_epoch_lowers_the_loss() -> None:
    model, _, _, _ = _build("conv1d_same", optimizer="adam", lr=0.01)
    x, y = example_inputs(model.spec, 32, 3)
    order = np.arange(32)
    first = model.fit_epoch(x, y, 8, order)
    for _ in range(5):
        last = model.fit_epoch(x, y, 8, order)
    assert last < first


@pytest.mark.parametrize("name", ["dense", "conv2d_same", "attention_masked", "layer_norm",
                                  "position_embedding"])
def test_bf16_runs_and_is_close(name: str) -> None:
    model, weights, x, y = _build(name, precision="bf16", optimizer="adam", lr=1e-3)
    out = model.predict(x)
    assert out.dtype == np.float32
    assert relative_error(out, spec_numpy.forward(model.spec, weights, x)) < 5e-2
    loss = model.train_step(model.to_device(x), model.to_device(y))
    assert np.isfinite(float(model.to_numpy(loss)))
    assert all(v.dtype == np.float32 for v in model.get_weights().values())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["conv2d_same_stride2", "attention_masked"])
def test_compiled_matches_eager(name: str) -> None:
    eager, weights, x, y = _build(name)
    compiled, _, _, _ = _build(name, variant="compiled")
    ref = spec_numpy.forward(eager.spec, weights, x)
    assert relative_error(compiled.predict(x), ref) < 1e-4
    for m in (eager, compiled):
        m.train_step(m.to_device(x), m.to_device(y))
    e, c = eager.get_weights(), compiled.get_weights()
    for k in e:
        np.testing.assert_allclose(c[k], e[k], rtol=1e-4, atol=1e-6)
    x2, _ = example_inputs(eager.spec, 3, 5)  # another batch size compiles once more, still right
    assert relative_error(compiled.predict(x2), eager.predict(x2)) < 1e-4


# -- GPU ------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_build_forward_train_and_memory(precision: str) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    assert "cuda" in FW.devices()
    model, weights, x, y = _build("attention_masked", device="cuda", precision=precision,
                                  optimizer="adam", lr=1e-3)
    assert next(model.module.parameters()).device.type == "cuda"
    model.reset_peak_memory()
    nx, ny = model.to_device(x), model.to_device(y)
    assert nx["x"].device.type == "cuda"
    out = model.forward(nx)
    loss = model.train_step(nx, ny)
    model.synchronize()
    tol = 1e-4 if precision == "fp32" else 5e-2
    assert relative_error(model.to_numpy(out), spec_numpy.forward(model.spec, weights, x)) < tol
    assert np.isfinite(float(model.to_numpy(loss)))
    peak = model.peak_memory_bytes()
    assert peak is not None and peak > 0
    _, grads = model.loss_and_input_gradient(x, y)
    assert grads["x"].shape == x["x"].shape


@pytest.mark.gpu
@pytest.mark.slow
def test_cuda_compiled() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    model, weights, x, y = _build("conv2d_same", device="cuda", variant="compiled")
    out = model.forward(model.to_device(x))
    model.synchronize()
    assert relative_error(model.to_numpy(out), spec_numpy.forward(model.spec, weights, x)) < 1e-4
    model.train_step(model.to_device(x), model.to_device(y))
    model.synchronize()
