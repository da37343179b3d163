"""Compile a neutral :class:`~dlbench.spec.ModelSpec` into a ``tf.Module`` of ``tf.nn`` ops.

Idiomatic low-level TensorFlow (no Keras): the weights are ``tf.Variable`` objects keyed by their
canonical names, and :meth:`SpecModule.__call__` walks the graph with ``tf.nn`` / ``tf.math``
ops. TensorFlow's native layouts already are the canonical ones (NHWC data, ``HWIO`` kernels), so
weights load and save without transposes.

Mixed precision (``bf16``): the variables stay float32 (the master copy the optimizer updates);
``__call__`` casts them and the float inputs to ``bfloat16``, computes, and returns float32
logits. LayerNorm and BatchNorm statistics and the attention softmax run in float32, as PyTorch
autocast does.

``BatchNorm`` in training normalises with ``tf.nn.moments`` (biased variance) and assigns the
running statistics ``(1 - momentum) * moving + momentum * batch`` to their (non-trainable)
variables. Grouped convolutions: ``tf.nn.depthwise_conv2d`` when ``groups`` equals the input
channels, otherwise one ``tf.nn.conv2d`` per channel block (TensorFlow's CPU kernels refuse
grouped filters). Explicit integer padding is a ``tf.pad`` before a ``VALID`` convolution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from dlbench.api import STATE_PARAMS, ModelSpec, Node, UnsupportedError

MASK_FILL = -1e9  # the score of padded keys before the attention softmax (as dlbench.spec_numpy)


def make_module(spec: ModelSpec, weights: Mapping[str, np.ndarray], compute_dtype: str,
                seed: int) -> Any:
    """A ``tf.Module`` running ``spec``; build it under the target ``tf.device`` scope."""
    import tensorflow as tf

    class SpecModule(tf.Module):
        def __init__(self) -> None:
            super().__init__(name=_safe_name(spec.name))
            self.spec = spec
            self.compute_dtype = tf.bfloat16 if compute_dtype == "bf16" else tf.float32
            self.vars = {k: tf.Variable(np.asarray(v, np.float32), name=_safe_name(k),
                                        trainable=k.rsplit(".", 1)[1] not in STATE_PARAMS)
                         for k, v in weights.items()}
            self.node_vars: dict[str, dict[str, tf.Variable]] = {n.name: {} for n in spec.nodes}
            for key, var in self.vars.items():
                node, pname = key.rsplit(".", 1)
                self.node_vars[node][pname] = var
            self.rng = tf.random.Generator.from_seed(seed)

        def __call__(self, inputs: Mapping[str, Any], training: bool = False) -> Any:
            values = _run(self, inputs, training)
            return tf.cast(values[spec.output], tf.float32)

        def run_nodes(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
            """Every node's output (compute dtype) in inference mode."""
            return _run(self, inputs, False)

    return SpecModule()


def _safe_name(name: str) -> str:
    """A valid Python identifier (what ``tf.Module`` and variable scopes accept)."""
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return safe if safe[:1].isalpha() or safe[:1] == "_" else f"m_{safe}"


def _run(mod: Any, inputs: Mapping[str, Any], training: bool) -> dict[str, Any]:
    import tensorflow as tf

    cd = mod.compute_dtype
    values: dict[str, Any] = {}
    for node in mod.spec.nodes:
        if node.op == "Input":
            x = inputs[node.name]
            if node.attrs.get("dtype", "float32") == "int32":
                values[node.name] = tf.cast(x, tf.int32)
            else:
                values[node.name] = tf.cast(x, cd)
            continue
        w = {k: tf.cast(v, cd) for k, v in mod.node_vars[node.name].items()}
        values[node.name] = _op(node, [values[i] for i in node.inputs], w, training, mod)
    return values


def _act(x: Any, fn: str | None) -> Any:
    import tensorflow as tf

    if fn is None:
        return x
    if fn == "relu":
        return tf.nn.relu(x)
    if fn == "tanh":
        return tf.math.tanh(x)
    if fn == "sigmoid":
        return tf.math.sigmoid(x)
    if fn == "gelu":
        return tf.nn.gelu(x, approximate=False)
    raise UnsupportedError(f"tensorflow: unknown activation {fn!r}: choose relu, tanh, sigmoid, gelu")


def _op(node: Node, ins: list[Any], w: dict[str, Any], training: bool, mod: Any) -> Any:
    import tensorflow as tf

    a = node.attrs
    op = node.op
    x = ins[0]
    if op == "Dense":
        return _act(tf.tensordot(x, w["kernel"], axes=1) + w["bias"]
                    if len(x.shape) > 2 else tf.matmul(x, w["kernel"]) + w["bias"], a.get("activation"))
    if op in ("Conv1D", "Conv2D"):
        y = _conv(x, w["kernel"], node)
        return _act(tf.nn.bias_add(y, w["bias"]) if "bias" in w else y, a.get("activation"))
    if op == "BatchNorm":
        return _batch_norm(x, w, node, training, mod)
    if op == "EmbeddingBag":
        rows = tf.gather(w["embeddings"], x)  # (..., bag, dim)
        if len(ins) == 1:
            return (tf.reduce_sum if a["mode"] == "sum" else tf.reduce_mean)(rows, axis=-2)
        m = tf.cast(ins[1], rows.dtype)
        total = tf.reduce_sum(rows * m[..., None], axis=-2)
        if a["mode"] == "mean":
            total = total / tf.maximum(tf.reduce_sum(m, axis=-1, keepdims=True), 1.0)
        return total
    if op == "DotInteraction":
        k = len(ins)
        t = tf.stack(ins, axis=1)  # (N, k, d)
        z = tf.reshape(tf.matmul(t, t, transpose_b=True), (-1, k * k))
        li, lj = np.tril_indices(k, -1)
        return tf.gather(z, (li * k + lj).astype(np.int32), axis=1)
    if op in ("MaxPool", "AvgPool"):
        k = a["pool_size"]
        if op == "AvgPool":
            return tf.nn.avg_pool(x, ksize=k, strides=k, padding="VALID")
        p = a.get("padding", 0)
        if p:  # -inf is never the max: the spec's padded positions
            pads = [[0, 0]] + [[p, p]] * (len(x.shape) - 2) + [[0, 0]]
            x = tf.pad(x, pads, constant_values=tf.constant(-np.inf, x.dtype))
        return tf.nn.max_pool(x, ksize=k, strides=a.get("strides", k), padding="VALID")
    if op == "GlobalAvgPool":
        if len(ins) == 1:
            return tf.reduce_mean(x, axis=list(range(1, len(x.shape) - 1)))
        m = tf.cast(ins[1], x.dtype)[..., None]
        return tf.reduce_sum(x * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)
    if op == "Flatten":
        return tf.reshape(x, (tf.shape(x)[0], math.prod(x.shape[1:])))
    if op == "Dropout":
        rate = float(a["rate"])
        if not training or rate <= 0.0:
            return x
        seed = mod.rng.make_seeds(1)[:, 0]
        return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)
    if op == "Embedding":
        return tf.gather(w["embeddings"], x)
    if op == "PositionEmbedding":
        return x + w["positions"][: x.shape[1]]
    if op == "LayerNorm":
        x32 = tf.cast(x, tf.float32)
        mean, var = tf.nn.moments(x32, axes=[-1], keepdims=True)
        y = (x32 - mean) * tf.math.rsqrt(var + float(a["epsilon"]))
        return tf.cast(y, x.dtype) * w["gamma"] + w["beta"]
    if op == "MultiHeadSelfAttention":
        return _attention(x, ins[1] if len(ins) > 1 else None, w, int(a["num_heads"]),
                          bool(a.get("causal", False)))
    if op == "Activation":
        return _act(x, a["fn"])
    if op == "Add":
        return tf.add_n(ins)
    if op == "Concat":
        return tf.concat(ins, axis=-1)
    if op == "Dot":
        return tf.reduce_sum(ins[0] * ins[1], axis=-1, keepdims=True)
    raise UnsupportedError(f"tensorflow cannot compile op {op!r} of node {node.name!r}")


def _conv(x: Any, kernel: Any, node: Node) -> Any:
    """Cross-correlation with the spec's padding, stride and groups (no bias)."""
    import tensorflow as tf

    a = node.attrs
    stride, groups = a["strides"], a.get("groups", 1)
    padding = a["padding"]
    if isinstance(padding, int):  # explicit symmetric zeros, then a VALID convolution
        spatial = len(x.shape) - 2
        x = tf.pad(x, [[0, 0]] + [[padding, padding]] * spatial + [[0, 0]])
        padding = "valid"
    pad = padding.upper()
    rank2 = node.op == "Conv2D"
    if groups == 1:
        if rank2:
            return tf.nn.conv2d(x, kernel, strides=stride, padding=pad)
        return tf.nn.conv1d(x, kernel, stride=stride, padding=pad)
    c_in = x.shape[-1]
    if not rank2:  # as a 2-D convolution over (1, L)
        y = _grouped_conv2d(x[:, None], kernel[None], [1, 1, stride, 1], pad, groups, c_in)
        return y[:, 0]
    return _grouped_conv2d(x, kernel, [1, stride, stride, 1], pad, groups, c_in)


def _grouped_conv2d(x: Any, kernel: Any, strides: list[int], pad: str, groups: int, c_in: int) -> Any:
    import tensorflow as tf

    if groups == c_in:  # depthwise: (kh, kw, 1, c_in * mult) -> (kh, kw, c_in, mult)
        kh, kw, _, c_out = kernel.shape
        dw = tf.reshape(kernel, (kh, kw, c_in, c_out // c_in))
        return tf.nn.depthwise_conv2d(x, dw, strides=strides, padding=pad)
    xs = tf.split(x, groups, axis=-1)
    ks = tf.split(kernel, groups, axis=-1)
    return tf.concat([tf.nn.conv2d(xi, ki, strides=strides, padding=pad)
                      for xi, ki in zip(xs, ks, strict=True)], axis=-1)


def _batch_norm(x: Any, w: dict[str, Any], node: Node, training: bool, mod: Any) -> Any:
    import tensorflow as tf

    a = node.attrs
    x32 = tf.cast(x, tf.float32)
    state = mod.node_vars[node.name]
    if training:
        mean, var = tf.nn.moments(x32, axes=list(range(len(x.shape) - 1)))
        m = float(a["momentum"])
        state["moving_mean"].assign((1.0 - m) * state["moving_mean"] + m * tf.stop_gradient(mean))
        state["moving_variance"].assign((1.0 - m) * state["moving_variance"] + m * tf.stop_gradient(var))
    else:
        mean, var = state["moving_mean"], state["moving_variance"]
    y = (x32 - mean) * tf.math.rsqrt(var + float(a["epsilon"]))
    return tf.cast(y, x.dtype) * w["gamma"] + w["beta"]


def _attention(x: Any, mask: Any, w: dict[str, Any], num_heads: int, causal: bool = False) -> Any:
    import tensorflow as tf

    seq, d = x.shape[1], x.shape[2]
    dh = d // num_heads

    def heads(t: Any) -> Any:  # (N, L, D) -> (N, H, L, dh)
        return tf.transpose(tf.reshape(t, (-1, seq, num_heads, dh)), (0, 2, 1, 3))

    q = heads(tf.tensordot(x, w["q_kernel"], axes=1) + w["q_bias"])
    k = heads(tf.tensordot(x, w["k_kernel"], axes=1) + w["k_bias"])
    v = heads(tf.tensordot(x, w["v_kernel"], axes=1) + w["v_bias"])
    scores = tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32) / math.sqrt(dh)
    keep = None
    if mask is not None:
        keep = tf.cast(mask, tf.float32)[:, None, None, :] > 0.5
    if causal:
        tri = tf.cast(tf.linalg.band_part(tf.ones((seq, seq)), -1, 0), tf.bool)
        keep = tri if keep is None else tf.logical_and(keep, tri)
    if keep is not None:
        scores = tf.where(keep, scores, tf.constant(MASK_FILL, tf.float32))
    probs = tf.cast(tf.nn.softmax(scores, axis=-1), x.dtype)
    att = tf.matmul(probs, v)  # (N, H, L, dh)
    merged = tf.reshape(tf.transpose(att, (0, 2, 1, 3)), (-1, seq, d))
    return tf.tensordot(merged, w["o_kernel"], axes=1) + w["o_bias"]
