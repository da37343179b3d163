"""The ART estimator over a dlbench Model: the same outputs and gradients as the Model itself."""

from __future__ import annotations

import numpy as np
import pytest

from dlbench.framework import BuildOptions
from dlbench.robustness.estimator import InputCodec, bucket_sizes, make_estimator, per_example_loss
from dlbench.spec import SpecBuilder

torch = pytest.importorskip("torch")
pytest.importorskip("art")


def _spec():
    b = SpecBuilder("tiny-cnn")
    x = b.input("image", (6, 6, 1))
    x = b.conv2d(x, 4, 3, activation="tanh")
    x = b.flatten(x)
    return b.build(b.dense(x, 5, name="logits"))


@pytest.fixture(scope="module")
def model():
    from dlbench.builtin.frameworks.torch import TorchFramework

    fw = TorchFramework()
    fw.setup(1, 0, {})
    spec = _spec()
    return fw.build(spec, spec.init_weights(3), BuildOptions())


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((37, 6, 6, 1), dtype=np.float32), rng.integers(0, 5, 37)


def _logit_grads(model, x: np.ndarray) -> np.ndarray:
    """d logit_c / d x for every class, straight from torch autograd: (N, C, *shape)."""
    xt = torch.tensor(x, requires_grad=True)
    out = model.module({"image": xt})
    cols = [
        torch.autograd.grad(out[:, c].sum(), xt, retain_graph=True)[0].numpy()
        for c in range(out.shape[1])
    ]
    return np.stack(cols, axis=1)


def test_bucket_sizes_cover_rows_with_few_shapes() -> None:
    chunks = bucket_sizes(37, 16)
    assert [(a, b) for a, b, _ in chunks] == [(0, 16), (16, 32), (32, 37)]
    assert [p for _, _, p in chunks] == [16, 16, 8]
    assert {p for n in range(1, 300) for _, _, p in bucket_sizes(n, 64)} == {8, 16, 32, 64}


def test_predict_is_log_softmax_of_the_model_outputs(model, data) -> None:
    x, _ = data
    est = make_estimator(model, InputCodec("image", (6, 6, 1)), 5, (0.0, 1.0), max_batch=16)
    logits = model.predict({"image": x})
    pred = est.predict(x)
    np.testing.assert_allclose(np.exp(pred).sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(pred - pred[:, :1], logits - logits[:, :1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(est.model_outputs(x), logits, rtol=1e-5, atol=1e-6)


def test_loss_gradient_matches_the_model(model, data) -> None:
    x, y = data
    est = make_estimator(model, InputCodec("image", (6, 6, 1)), 5, (0.0, 1.0), max_batch=16)
    _, g = model.loss_and_input_gradient({"image": x}, y)
    ours = est.loss_gradient(x, np.eye(5)[y])
    np.testing.assert_allclose(
        ours, g["image"] * len(y), rtol=1e-4, atol=1e-6
    )  # per-example losses
    losses = est.compute_loss(x, np.eye(5)[y], reduction="none")
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(model.predict({"image": x})), torch.tensor(y), reduction="none"
    ).numpy()
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-6)


def test_class_gradient_is_exact_for_log_probabilities(model, data) -> None:
    x, _ = data
    x = x[:9]
    est = make_estimator(model, InputCodec("image", (6, 6, 1)), 5, (0.0, 1.0), max_batch=16)
    cg = est.class_gradient(x)
    assert cg.shape == (9, 5, 6, 6, 1)
    logit = _logit_grads(model, x)
    # differences between classes are those of the logits...
    np.testing.assert_allclose(cg[:, 1] - cg[:, 3], logit[:, 1] - logit[:, 3], rtol=1e-4, atol=1e-6)
    # ...and the gradient of log p_c is grad z_c - sum_j p_j grad z_j
    p = np.exp(est.predict(x))
    expected = logit - np.einsum("nc,nc...->n...", p, logit)[:, None]
    np.testing.assert_allclose(cg, expected, rtol=1e-4, atol=1e-6)
    one = est.class_gradient(x, label=np.arange(9) % 5)
    np.testing.assert_allclose(one[:, 0], cg[np.arange(9), np.arange(9) % 5], rtol=1e-5, atol=1e-7)


def test_input_codec_pads_non_square_inputs_for_square_attacks() -> None:
    codec = InputCodec("spectrogram", (5, 3))
    assert codec.shape == (5, 5, 1)
    x = np.arange(2 * 15, dtype=np.float32).reshape(2, 5, 3)
    art = codec.encode({"spectrogram": x})
    assert art.shape == (2, 5, 5, 1) and np.all(art[:, :, 3:] == 0)
    np.testing.assert_array_equal(
        codec.decode(
            art
            + np.pad(np.zeros((2, 5, 3, 1)), ((0, 0), (0, 0), (0, 2), (0, 0)), constant_values=7)
        )["spectrogram"],
        x,
    )
    g = codec.encode_grad(art, {"spectrogram": np.ones_like(x)})
    assert g.sum() == 30 and np.all(g[:, :, 3:] == 0)


def test_per_example_losses() -> None:
    z = np.array([[0.5], [-1.0]])
    np.testing.assert_allclose(
        per_example_loss(z, np.array([1.0, 0.0]), "binary_cross_entropy"),
        [np.log1p(np.exp(-0.5)), np.log1p(np.exp(-1.0))],
    )
    np.testing.assert_allclose(per_example_loss(z, np.array([1.0, 0.0]), "mse"), [0.25, 1.0])
