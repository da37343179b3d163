"""The neutral model spec: shapes, parameters, initialisation, errors, and the NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlbench import spec_numpy
from dlbench.errors import DlbenchError
from dlbench.measure.parity import example_inputs, layer_specs, relative_error
from dlbench.spec import ModelSpec, SpecBuilder, check_weights, same_padding, weights_digest


def _cnn() -> ModelSpec:
    b = SpecBuilder("cnn")
    x = b.input("image", (8, 8, 3))
    h = b.conv2d(x, 4, 3, activation="relu")
    h = b.max_pool(h, 2)
    h = b.conv2d(h, 6, 3, strides=2, padding="valid")
    return b.build(b.dense(b.flatten(h), 5))


def test_shapes_follow_padding_stride_and_pooling() -> None:
    shapes = _cnn().shapes()
    assert shapes["image"] == (8, 8, 3)
    assert shapes["conv2d_0"] == (8, 8, 4)
    assert shapes["maxpool_0"] == (4, 4, 4)
    assert shapes["conv2d_1"] == (1, 1, 6)
    assert shapes["flatten_0"] == (6,)
    assert shapes["dense_0"] == (5,)


def test_parameter_shapes_and_count_are_canonical() -> None:
    spec = _cnn()
    ps = spec.param_shapes()
    assert ps["conv2d_0.kernel"] == (3, 3, 3, 4)
    assert ps["conv2d_1.kernel"] == (3, 3, 4, 6)
    assert ps["dense_0.kernel"] == (6, 5)
    assert spec.parameter_count() == sum(math.prod(s) for s in ps.values())
    b = SpecBuilder("attn")
    x = b.input("x", (5, 8))
    spec = b.build(b.layer_norm(b.self_attention(x, 2)))
    assert spec.param_shapes()["multiheadselfattention_0.q_kernel"] == (8, 8)
    assert spec.param_shapes()["layernorm_0.gamma"] == (8,)


@pytest.mark.parametrize("size,k,stride,expected", [(7, 3, 1, (1, 1)), (8, 3, 2, (0, 1)),
                                                    (7, 3, 2, (1, 1)), (6, 2, 1, (0, 1))])
def test_same_padding_is_tensorflow_style(size: int, k: int, stride: int,
                                          expected: tuple[int, int]) -> None:
    assert same_padding(size, k, stride) == expected


def test_init_is_deterministic_per_seed() -> None:
    spec = _cnn()
    a, b, c = spec.init_weights(3), spec.init_weights(3), spec.init_weights(4)
    assert weights_digest(a) == weights_digest(b) != weights_digest(c)
    assert all(w.dtype == np.float32 for w in a.values())
    assert not a["conv2d_0.bias"].any()
    check_weights(spec, a)


def test_spec_round_trips_through_dict_and_digest() -> None:
    spec = _cnn()
    again = ModelSpec.from_dict(spec.to_dict())
    assert again.digest() == spec.digest()
    assert again.shapes() == spec.shapes()


def test_without_dropout_zeroes_every_rate() -> None:
    spec = layer_specs()["dropout"]
    rates = [n.attrs["rate"] for n in spec.without_dropout().nodes if n.op == "Dropout"]
    assert rates == [0.0]


def test_builder_errors_name_the_problem() -> None:
    b = SpecBuilder("bad")
    x = b.input("x", (4, 6))
    with pytest.raises(DlbenchError, match="unknown activation 'swish'"):
        b.dense(x, 3, activation="swish")
    with pytest.raises(DlbenchError, match="unknown node 'nope'"):
        b.dense("nope", 3)
    with pytest.raises(DlbenchError, match="padding 'full'"):
        b.conv1d(x, 3, 3, padding="full")
    with pytest.raises(DlbenchError, match="not divisible by 4 heads"):
        b.build(b.self_attention(x, 4))


def test_check_weights_rejects_wrong_names_and_shapes() -> None:
    spec = _cnn()
    w = spec.init_weights(0)
    with pytest.raises(DlbenchError, match="missing"):
        check_weights(spec, {k: v for k, v in w.items() if k != "dense_0.bias"})
    with pytest.raises(DlbenchError, match="dense_0.bias"):
        check_weights(spec, {**w, "dense_0.bias": np.zeros(4)})


# -- the NumPy reference --------------------------------------------------------------------------


def test_every_op_is_exercised_by_a_layer_spec_and_runs_in_numpy() -> None:
    from dlbench.spec import ACTIVATIONS, OPS

    specs = layer_specs()
    assert set().union(*(s.ops() for s in specs.values())) == set(OPS)
    fns = {n.attrs["fn"] for s in specs.values() for n in s.nodes if n.op == "Activation"}
    assert fns == set(ACTIVATIONS)
    for spec in specs.values():
        x, y = example_inputs(spec, 3, 0)
        out = spec_numpy.forward(spec, spec.init_weights(0), x)
        assert out.shape == (3, *spec.shapes()[spec.output])
        assert np.isfinite(out).all()


def test_reference_dense_and_conv_match_hand_computation() -> None:
    b = SpecBuilder("c")
    x = b.input("x", (3, 1))
    spec = b.build(b.conv1d(x, 1, 2, padding="same"))
    w = {"conv1d_0.kernel": np.array([[[1.0]], [[10.0]]]), "conv1d_0.bias": np.array([0.5])}
    out = spec_numpy.forward(spec, w, {"x": np.array([[[1.0], [2.0], [3.0]]])})
    # same padding (0, 1): windows [1,2], [2,3], [3,0]
    np.testing.assert_allclose(out[0, :, 0], [21.5, 32.5, 3.5])


def test_reference_flatten_is_channels_last() -> None:
    b = SpecBuilder("f")
    x = b.input("x", (2, 2, 2))
    spec = b.build(b.flatten(x))
    arr = np.arange(8.0).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(spec_numpy.forward(spec, {}, {"x": arr})[0], np.arange(8.0))


def test_reference_masks_ignore_padding() -> None:
    spec = layer_specs()["attention_masked"]
    w = spec.init_weights(0)
    x, _ = example_inputs(spec, 2, 0)
    x["mask"][:] = 1.0
    x["mask"][:, -2:] = 0.0
    changed = {k: v.copy() for k, v in x.items()}
    changed["x"][:, -2:] += 100.0  # padded positions must not matter
    np.testing.assert_allclose(spec_numpy.forward(spec, w, x), spec_numpy.forward(spec, w, changed),
                               rtol=1e-10, atol=1e-10)


def test_reference_layer_norm_and_gelu() -> None:
    x = np.array([[1.0, 2.0, 3.0, 6.0]])
    y = spec_numpy.layer_norm(x, np.ones(4), np.zeros(4), 0.0)
    np.testing.assert_allclose(y.mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(), 1.0)
    np.testing.assert_allclose(spec_numpy.activation(np.array([1.0]), "gelu"), [0.8413447460685429])


def test_reference_losses() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    ce = spec_numpy.loss("cross_entropy", logits, np.array([0, 1]))
    assert ce == pytest.approx((np.log1p(np.exp(-2.0)) + np.log(2.0)) / 2)
    bce = spec_numpy.loss("binary_cross_entropy", np.array([[0.0], [100.0]]), np.array([1.0, 1.0]))
    assert bce == pytest.approx(np.log(2.0) / 2)
    assert spec_numpy.loss("mse", np.array([[1.0], [3.0]]), np.array([0.0, 1.0])) == pytest.approx(2.5)
    with pytest.raises(DlbenchError, match="unknown loss 'hinge'"):
        spec_numpy.loss("hinge", logits, np.array([0, 1]))


def test_reference_missing_input_is_an_error() -> None:
    spec = layer_specs()["attention_masked"]
    with pytest.raises(DlbenchError, match="missing input 'mask'"):
        spec_numpy.forward(spec, spec.init_weights(0), {"x": np.zeros((1, 5, 8))})


def test_relative_error() -> None:
    assert relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert relative_error([1.0, 2.5], [1.0, 2.0]) == pytest.approx(0.25)
    assert relative_error([1e-20], [0.0]) == pytest.approx(1e-8)
    with pytest.raises(ValueError):
        relative_error([1.0], [1.0, 2.0])


def test_example_inputs_have_padding_masks_and_ids_in_range() -> None:
    specs = layer_specs()
    x, y = example_inputs(specs["attention_masked"], 6, 1)
    m = x["mask"]
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert (m.sum(axis=1) >= 1).all() and (m == 0).any() and m[0].all()
    assert y.dtype == np.int64 and set(y) <= {0, 1, 2}
    x, y = example_inputs(specs["embedding"], 50, 1)
    assert x["ids"].dtype == np.int32 and x["ids"].min() >= 0 and x["ids"].max() < 11
    x, y = example_inputs(specs["dot_two_towers"], 5, 1)
    assert x["user"].max() < 7 and x["item"].max() < 9 and y.dtype == np.float32
    a, _ = example_inputs(specs["dense"], 4, 3)
    b, _ = example_inputs(specs["dense"], 4, 3)
    np.testing.assert_array_equal(a["x"], b["x"])


# -- the ops of the reference families: validation, shapes, counts, reference semantics ---------


def test_default_conv_and_attention_attrs_keep_existing_digests() -> None:
    b = SpecBuilder("d")
    x = b.input("x", (6, 6, 2))
    b.conv2d(x, 4, 3)
    spec = b.build(b.self_attention(b.input("s", (4, 8)), 2))
    assert spec.node("conv2d_0").attrs.keys() == {"filters", "kernel_size", "strides", "padding",
                                                  "activation"}
    assert "causal" not in spec.node("multiheadselfattention_0").attrs


def test_grouped_conv_shapes_counts_and_reference() -> None:
    b = SpecBuilder("g")
    x = b.input("x", (8, 8, 4))
    h = b.conv2d(x, 6, 3, 2, 1, groups=2, use_bias=False)
    spec = b.build(b.conv2d(h, 6, 3, 1, "same", groups=6))
    ps = spec.param_shapes()
    assert ps == {"conv2d_0.kernel": (3, 3, 2, 6), "conv2d_1.kernel": (3, 3, 1, 6),
                  "conv2d_1.bias": (6,)}
    assert spec.shapes()["conv2d_0"] == (4, 4, 6)  # (8 + 2 - 3) // 2 + 1
    assert spec.flops_per_example() == 2 * 16 * 6 * 9 * 2 + 2 * 16 * 6 * 9 * 1
    rng = np.random.default_rng(0)
    xs, k = rng.normal(size=(2, 8, 8, 4)), rng.normal(size=(3, 3, 2, 6))
    got = spec_numpy.conv(xs, k, None, 2, 1, groups=2)
    for g in range(2):  # block g of the output reads block g of the input only
        alone = spec_numpy.conv(xs[..., 2 * g:2 * g + 2], k[..., 3 * g:3 * g + 3], None, 2, 1)
        np.testing.assert_allclose(got[..., 3 * g:3 * g + 3], alone)


@pytest.mark.parametrize("call,match", [
    (lambda b, x: b.conv2d(x, 5, 3, groups=2), "divisor of filters=5"),
    (lambda b, x: b.conv2d(x, 4, 3, groups=4), "3 input channels are not divisible by groups=4"),
    (lambda b, x: b.conv2d(x, 4, 3, padding=-1), "unknown padding -1"),
    (lambda b, x: b.conv2d(x, 4, 9, padding="valid"), "smaller than the kernel"),
    (lambda b, x: b.batch_norm(x, momentum=0.99 + 1), "choose a value in \\[0, 1\\]"),
    (lambda b, x: b.batch_norm(x, epsilon=0.0), "epsilon 0.0: choose a positive value"),
    (lambda b, x: b.embedding_bag(b.input("i", (3,), "int32"), 5, 2, "max"), "mode 'max'"),
    (lambda b, x: b.embedding_bag(b.input("i", (3,), "int32"), 5, 2, mask=b.input("m", (4,))),
     "mask shape"),
    (lambda b, x: b.dot_interaction(b.dense(b.flatten(x), 3)), "two or more"),
    (lambda b, x: b.max_pool(x, 3, padding=2), "padding=2 exceeds half the window pool_size=3: "
                                               "choose padding <= 1"),
    (lambda b, x: b.max_pool(x, 2, strides=0), "strides=0: choose an int >= 1"),
    (lambda b, x: b.max_pool(x, 2, padding=-1), "padding=-1: choose an int >= 0"),
    (lambda b, x: b.max_pool(x, 7), "smaller than the window 7"),
    (lambda b, x: b.dot_interaction(b.dense(b.flatten(x), 3), b.dense(b.flatten(x), 4)), "equal size"),
])
def test_new_ops_reject_bad_attributes_with_the_fix(call, match: str) -> None:
    b = SpecBuilder("bad")
    x = b.input("x", (6, 6, 3))
    with pytest.raises(DlbenchError, match=match):
        b.build(call(b, x))


def test_batch_norm_reference_training_inference_and_running_statistics() -> None:
    b = SpecBuilder("bn")
    x = b.input("x", (3, 2))
    spec = b.build(b.batch_norm(x, momentum=0.25, epsilon=1e-3))
    assert spec.state_keys() == ["batchnorm_0.moving_mean", "batchnorm_0.moving_variance"]
    assert spec.parameter_count() == 4  # gamma and beta; the running statistics are not trained
    w = spec.init_weights(0)
    assert not w["batchnorm_0.moving_mean"].any() and (w["batchnorm_0.moving_variance"] == 1).all()
    w = {**w, "batchnorm_0.gamma": np.array([2.0, 1.0]), "batchnorm_0.beta": np.array([0.0, 1.0]),
         "batchnorm_0.moving_mean": np.array([1.0, -1.0]),
         "batchnorm_0.moving_variance": np.array([4.0, 0.25])}
    xs = np.random.default_rng(1).normal(size=(4, 3, 2))
    flat = xs.reshape(-1, 2)
    mu, var = flat.mean(axis=0), flat.var(axis=0)  # biased
    train = spec_numpy.forward(spec, w, {"x": xs}, training=True)
    np.testing.assert_allclose(train, (xs - mu) / np.sqrt(var + 1e-3) * [2.0, 1.0] + [0.0, 1.0])
    infer = spec_numpy.forward(spec, w, {"x": xs})
    np.testing.assert_allclose(infer, (xs - [1.0, -1.0]) / np.sqrt(np.array([4.0, 0.25]) + 1e-3)
                               * [2.0, 1.0] + [0.0, 1.0])
    state = spec_numpy.batch_norm_state(spec, w, {"x": xs})
    np.testing.assert_allclose(state["batchnorm_0.moving_mean"], 0.75 * np.array([1.0, -1.0]) + 0.25 * mu)
    np.testing.assert_allclose(state["batchnorm_0.moving_variance"],
                               0.75 * np.array([4.0, 0.25]) + 0.25 * var)


def test_causal_attention_ignores_the_future() -> None:
    spec = layer_specs()["attention_causal_masked"]
    w = spec.init_weights(0)
    x, _ = example_inputs(spec, 2, 0)
    x["mask"][:] = 1.0
    node = next(n.name for n in spec.nodes if n.op == "MultiHeadSelfAttention")
    before = spec_numpy.forward_all(spec, w, x)[node]
    later = {k: v.copy() for k, v in x.items()}
    later["x"][:, 3:] += 50.0  # positions 0..2 must not see positions 3..4
    after = spec_numpy.forward_all(spec, w, later)[node]
    np.testing.assert_allclose(after[:, :3], before[:, :3], rtol=1e-10, atol=1e-10)
    assert not np.allclose(after[:, 3:], before[:, 3:])


def test_embedding_bag_and_dot_interaction_reference() -> None:
    table = np.arange(12.0).reshape(4, 3)
    ids = np.array([[0, 2, 3]])
    mask = np.array([[1.0, 1.0, 0.0]])
    np.testing.assert_allclose(spec_numpy.embedding_bag(ids, table, "sum", mask), [[6.0, 8.0, 10.0]])
    np.testing.assert_allclose(spec_numpy.embedding_bag(ids, table, "mean", mask), [[3.0, 4.0, 5.0]])
    np.testing.assert_allclose(spec_numpy.embedding_bag(ids, table, "mean"), [[5.0, 6.0, 7.0]])
    a, b, c = np.array([[1.0, 0.0]]), np.array([[2.0, 3.0]]), np.array([[0.0, 5.0]])
    np.testing.assert_allclose(spec_numpy.dot_interaction([a, b, c]), [[2.0, 0.0, 15.0]])  # ba, ca, cb
    bld = SpecBuilder("dlrm")
    vs = [bld.input(f"v{i}", (2,)) for i in range(3)]
    spec = bld.build(bld.dot_interaction(*vs))
    assert spec.shapes()["dotinteraction_0"] == (3,) and spec.flops_per_example() == 2 * 3 * 2


# -- overlapping, padded MaxPool -----------------------------------------------------------------


def _loop_max_pool(x: np.ndarray, k: int, s: int, p: int) -> np.ndarray:
    """Max pool by explicit loops over a 2-D grid, skipping the padded positions (the definition)."""
    n, h, w, c = x.shape
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.empty((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            rows = [r for r in range(i * s - p, i * s - p + k) if 0 <= r < h]
            cols = [q for q in range(j * s - p, j * s - p + k) if 0 <= q < w]
            out[:, i, j] = x[:, rows][:, :, cols].max(axis=(1, 2))
    return out


def test_default_max_pool_attrs_keep_existing_digests() -> None:
    def spec(**kw: int) -> ModelSpec:
        b = SpecBuilder("p")
        return b.build(b.max_pool(b.input("x", (6, 6, 2)), 2, **kw))

    assert spec().node("maxpool_0").attrs == {"pool_size": 2}
    assert spec(strides=2, padding=0).digest() == spec().digest()
    assert spec(strides=1).node("maxpool_0").attrs == {"pool_size": 2, "strides": 1}
    assert spec(strides=1).digest() != spec().digest()


@pytest.mark.parametrize("shape,k,s,p,out", [((9, 9, 2), 3, 2, 1, (5, 5, 2)), ((10, 3), 4, 3, 2, (4, 3)),
                                             ((8, 7, 1), 3, 2, 1, (4, 4, 1)), ((7, 6, 2), 2, 2, 0, (3, 3, 2)),
                                             ((5, 2), 2, 1, 1, (6, 2))])
def test_max_pool_shapes_floor_with_strides_and_padding(shape, k: int, s: int, p: int, out) -> None:
    b = SpecBuilder("p")
    spec = b.build(b.max_pool(b.input("x", shape), k, strides=s, padding=p))
    assert spec.shapes()["maxpool_0"] == out
    x = np.random.default_rng(0).normal(size=(2, *shape))
    assert spec_numpy.forward(spec, {}, {"x": x.astype(np.float32)}).shape == (2, *out)


def test_max_pool_reference_pads_with_minus_infinity() -> None:
    x = -1.0 - np.random.default_rng(1).random((2, 9, 9, 3))  # every value negative
    got = spec_numpy.pool(x, 3, "max", 2, 1)
    np.testing.assert_array_equal(got, _loop_max_pool(x, 3, 2, 1))
    assert (got < -1.0 + 1e-12).all()  # a zero pad would have won every border window
    for k, s, p in ((2, 1, 1), (4, 3, 2), (3, 3, 0), (2, 2, 0)):
        np.testing.assert_array_equal(spec_numpy.pool(x, k, "max", s, p), _loop_max_pool(x, k, s, p))
    line = x[:, 0]  # 1-D (N, L, C): window i covers positions i*s - p .. i*s - p + k - 1
    expected = np.stack([line[:, max(i * 2 - 1, 0):i * 2 + 2].max(axis=1) for i in range(5)], 1)
    np.testing.assert_array_equal(spec_numpy.pool(line, 3, "max", 2, 1), expected)


def test_avg_pool_has_no_strides_or_padding() -> None:
    b = SpecBuilder("a")
    d = b.build(b.avg_pool(b.input("x", (6, 6, 2)), 2)).to_dict()
    d["nodes"][1]["attrs"]["padding"] = 1
    with pytest.raises(DlbenchError, match="strides and padding are MaxPool's only"):
        ModelSpec.from_dict(d).shapes()


@pytest.mark.parametrize("name", ["maxpool2d_overlap_pad", "maxpool1d_overlap_pad"])
def test_padded_max_pool_layer_specs_would_catch_zero_padding(name: str) -> None:
    """The parity cases' inputs have all-negative border windows: a framework padding with zeros
    instead of -inf would fail them."""
    spec = layer_specs()[name]
    node = next(n for n in spec.nodes if n.op == "MaxPool")
    k, s, p = node.attrs["pool_size"], node.attrs["strides"], node.attrs["padding"]
    x = example_inputs(spec, 4, 0)[0]["x"].astype(np.float64)
    nd = x.ndim - 2
    zero_padded = np.pad(x, [(0, 0)] + [(p, p)] * nd + [(0, 0)])
    assert not np.array_equal(spec_numpy.pool(x, k, "max", s, p), spec_numpy.pool(zero_padded, k, "max", s))
