"""The TensorFlow plugin: spec parity with NumPy and PyTorch, variants, precisions, weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dlbench import spec_numpy
from dlbench.errors import DlbenchError, UnsupportedError
from dlbench.framework import BuildOptions, TrainConfig
from dlbench.measure import parity
from dlbench.spec import SpecBuilder

pytest.importorskip("tensorflow")
pytest.importorskip("torch")

from dlbench.builtin.frameworks.tensorflow import TensorFlowFramework, configure_tensorflow  # noqa: E402
from dlbench.builtin.frameworks.torch import TorchFramework  # noqa: E402

SPECS = parity.layer_specs()
PARITY_SPECS = ("conv2d_same_stride2", "attention_masked", "layer_norm", "position_embedding",
                "dot_two_towers")


@pytest.fixture(scope="module")
def tf_fw() -> TensorFlowFramework:
    fw = TensorFlowFramework()
    try:
        fw.setup(1, 0, {})
    except DlbenchError:  # TensorFlow already started in this process: keep its pools
        fw.setup(None, 0, {})
    return fw


@pytest.fixture(scope="module")
def torch_fw() -> TorchFramework:
    fw = TorchFramework()
    fw.setup(1, 0, {})
    return fw


def _options(spec_name: str, optimizer: str = "sgd", lr: float = 0.1, **kw: Any) -> BuildOptions:
    return BuildOptions(train=TrainConfig(parity.loss_for(SPECS[spec_name]), optimizer, lr), **kw)


def test_registered_metadata_and_devices(tf_fw: TensorFlowFramework) -> None:
    avail = tf_fw.availability()
    assert avail.installed and avail.version
    assert tf_fw.variants == ("eager", "graph", "compiled")
    assert tf_fw.devices()[0] == "cpu"
    spec = SPECS["dense"]
    with pytest.raises(UnsupportedError, match="cuda:7"):
        tf_fw.build(spec, spec.init_weights(0), BuildOptions(device="cuda:7"))
    with pytest.raises(UnsupportedError, match="fp16"):
        tf_fw.build(spec, spec.init_weights(0), BuildOptions(precision="fp16"))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_forward_matches_numpy(tf_fw: TensorFlowFramework, name: str) -> None:
    spec = SPECS[name]
    weights = spec.init_weights(1)
    inputs, _ = parity.example_inputs(spec, n=3, seed=2)
    model = tf_fw.build(spec, weights, BuildOptions())
    out = model.predict(inputs)
    assert out.dtype == np.float32
    assert parity.relative_error(out, spec_numpy.forward(spec, weights, inputs)) < 1e-4


@pytest.mark.parametrize("name", PARITY_SPECS)
def test_gradient_and_sgd_step_match_torch(tf_fw: TensorFlowFramework, torch_fw: TorchFramework,
                                           name: str) -> None:
    spec = SPECS[name].without_dropout()
    weights = spec.init_weights(3)
    inputs, targets = parity.example_inputs(spec, n=4, seed=4)
    rows = parity.measure_parity(torch_fw.build(spec, weights, _options(name)),
                                 tf_fw.build(spec, weights, _options(name)), inputs, targets)
    assert {r.check for r in rows} >= {"outputs", "loss", "weights_after_step"}
    assert all(r.passed for r in rows), rows


def _updates(fw: object, name: str, optimizer: str, steps: int, variant: str = "eager") -> np.ndarray:
    spec = SPECS[name].without_dropout()
    weights = spec.init_weights(5)
    inputs, targets = parity.example_inputs(spec, n=4, seed=6)
    model = fw.build(spec, weights, _options(name, optimizer, 0.05, variant=variant))  # type: ignore[attr-defined]
    x, y = model.to_device(inputs), model.to_device(targets)
    for _ in range(steps):
        model.train_step(x, y)
    model.synchronize()
    after = model.get_weights()
    return np.concatenate([(after[k] - weights[k]).ravel() for k in sorted(weights)])


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_optimizer_updates_match_torch(tf_fw: TensorFlowFramework, torch_fw: TorchFramework,
                                       optimizer: str) -> None:
    # Three steps: momentum's convention (heavy ball, no dampening) shows from the second step
    # on; Adam's bias corrections and eps placement change with the step count.
    name = "conv2d_same_stride2"
    ref = _updates(torch_fw, name, optimizer, 3)
    got = _updates(tf_fw, name, optimizer, 3)
    assert parity.relative_error(got, ref) < 1e-4


def test_graph_variant_matches_eager(tf_fw: TensorFlowFramework) -> None:
    name = "attention_masked"
    eager = _updates(tf_fw, name, "momentum", 2)
    graph = _updates(tf_fw, name, "momentum", 2, variant="graph")
    assert parity.relative_error(graph, eager) < 1e-4


def test_compiled_variant_matches_numpy_and_torch(tf_fw: TensorFlowFramework,
                                                  torch_fw: TorchFramework) -> None:
    name = "conv2d_same_stride2"
    spec = SPECS[name]
    weights = spec.init_weights(7)
    inputs, targets = parity.example_inputs(spec, n=4, seed=8)
    model = tf_fw.build(spec, weights, _options(name, variant="compiled"))
    ref = torch_fw.build(spec, weights, _options(name))
    rows = parity.measure_parity(ref, model, inputs, targets)
    assert all(r.passed for r in rows), rows
    assert parity.relative_error(model.predict(inputs), spec_numpy.forward(spec, weights, inputs)) < 1e-4


def test_weights_round_trip_and_optimizer_reset(tf_fw: TensorFlowFramework) -> None:
    name = "attention_masked"
    spec = SPECS[name]
    w0, w1 = spec.init_weights(0), spec.init_weights(1)
    model = tf_fw.build(spec, w0, _options(name, "adam", 0.01))
    got = model.get_weights()
    assert set(got) == set(w0) and all(np.array_equal(got[k], w0[k]) for k in w0)
    inputs, targets = parity.example_inputs(spec)
    model.set_weights(w1)
    assert all(np.array_equal(model.get_weights()[k], w1[k]) for k in w1)
    # set_weights resets the optimizer: the same step from the same weights gives the same result
    x, y = model.to_device(inputs), model.to_device(targets)
    model.train_step(x, y)
    first = model.get_weights()
    model.set_weights(w1)
    model.train_step(x, y)
    assert all(np.array_equal(model.get_weights()[k], first[k]) for k in first)
    with pytest.raises(DlbenchError, match="missing"):
        model.set_weights({k: v for k, v in w1.items() if not k.endswith("bias")})


def test_bf16_mixed_precision(tf_fw: TensorFlowFramework) -> None:
    name = "attention_masked"
    spec = SPECS[name]
    weights = spec.init_weights(0)
    inputs, targets = parity.example_inputs(spec)
    model = tf_fw.build(spec, weights, _options(name, precision="bf16"))
    out = model.predict(inputs)
    assert out.dtype == np.float32
    assert parity.relative_error(out, spec_numpy.forward(spec, weights, inputs)) < 5e-2
    loss = float(model.to_numpy(model.train_step(model.to_device(inputs), model.to_device(targets))))
    assert np.isfinite(loss)
    assert all(v.dtype == np.float32 for v in model.get_weights().values())  # fp32 master weights
    _, grads = model.loss_and_input_gradient(inputs, targets)
    assert grads["x"].shape == inputs["x"].shape and np.isfinite(grads["x"]).all()


def test_dropout_is_active_in_training_only(tf_fw: TensorFlowFramework) -> None:
    b = SpecBuilder("vision-cnn-8px")  # not a Python identifier: tf.Module names must be
    x = b.input("x", (64,))
    spec = b.build(b.dense(b.dropout(x, 0.5), 2))
    weights = spec.init_weights(0)
    inputs = {"x": np.ones((8, 64), np.float32)}
    model = tf_fw.build(spec, weights, BuildOptions(train=TrainConfig("cross_entropy", "sgd", 0.0)))
    ref = spec_numpy.forward(spec, weights, inputs)
    assert parity.relative_error(model.predict(inputs), ref) < 1e-5
    losses = {float(model.to_numpy(model.train_step(model.to_device(inputs),
                                                    model.to_device(np.zeros(8, np.int64)))))
              for _ in range(3)}
    assert len(losses) > 1  # a new dropout mask every step


def test_embed_returns_embedding_outputs(tf_fw: TensorFlowFramework) -> None:
    spec = SPECS["position_embedding"]
    weights = spec.init_weights(0)
    inputs, _ = parity.example_inputs(spec)
    emb = tf_fw.build(spec, weights, BuildOptions()).embed(inputs)
    node = next(n.name for n in spec.nodes if n.op == "Embedding")
    np.testing.assert_allclose(emb[node], weights[f"{node}.embeddings"][inputs["ids"]], rtol=1e-6)


def test_thread_count_cannot_change_after_start(tf_fw: TensorFlowFramework) -> None:
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # the runtime is running
    current = tf.config.threading.get_intra_op_parallelism_threads()
    with pytest.raises(DlbenchError, match="subprocess launcher"):
        configure_tensorflow(tf, current + 3)


@pytest.mark.gpu
def test_gpu_forward_and_memory(tf_fw: TensorFlowFramework) -> None:
    if "cuda" not in tf_fw.devices():
        pytest.skip("TensorFlow sees no GPU (tensorflow-cpu build)")
    name = "conv2d_same"
    spec = SPECS[name]
    weights = spec.init_weights(0)
    inputs, targets = parity.example_inputs(spec)
    model = tf_fw.build(spec, weights, _options(name, device="cuda"))
    model.reset_peak_memory()
    assert parity.relative_error(model.predict(inputs), spec_numpy.forward(spec, weights, inputs)) < 1e-4
    model.train_step(model.to_device(inputs), model.to_device(targets))
    model.synchronize()
    assert (model.peak_memory_bytes() or 0) > 0
