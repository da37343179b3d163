"""Build a Keras 3 functional ``keras.Model`` from a neutral :class:`~dlbench.spec.ModelSpec`.

Built-in layers wherever Keras has the op with the canonical semantics (``Dense``, ``Conv1D``,
``Conv2D``, pooling, ``Flatten``, ``Dropout``, ``Embedding``, ``LayerNormalization``,
``Activation``, ``Add``, ``Concatenate``); small backend-neutral custom layers (``keras.ops``
only) where it has not: the masked mean, the position table, the row-wise dot product and the
self-attention with canonical ``{q,k,v,o}_kernel (d, d)`` weights (``keras.layers.
MultiHeadAttention`` keeps ``(d, heads, head_dim)`` kernels and has no key-padding float mask).

Every layer is named after its node and its variables after the canonical parameters, so
``"<layer>.<variable name>"`` is the canonical weight key. Mixed precision (``bf16``) passes the
``mixed_bfloat16`` dtype policy to every layer: float32 variables, bfloat16 computation, and a
final float32 ``Activation("linear")`` so the loss sees float32 logits.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from dlbench.api import ModelSpec, UnsupportedError

MASK_FILL = -1e9  # the score of padded keys before the attention softmax (as dlbench.spec_numpy)

ZEROS = {"kernel_initializer": "zeros", "bias_initializer": "zeros"}
"""Keras's random initialisers are wasted work (canonical weights are loaded after the build;
on the jax backend each one is a separate XLA compilation)."""


@functools.cache
def custom_layers() -> dict[str, type]:
    """The custom layer classes (defined lazily: importing this module imports no Keras)."""
    import keras
    from keras import ops

    class MaskedGlobalAvgPool(keras.layers.Layer):
        """``sum(x * mask) / max(sum(mask), 1)`` over the sequence axis; inputs ``[x, mask]``."""

        def call(self, inputs: list[Any]) -> Any:
            x, mask = inputs
            m = ops.expand_dims(ops.cast(mask, x.dtype), -1)
            return ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)

        def compute_output_shape(self, shapes: list[Any]) -> Any:
            return (shapes[0][0], shapes[0][-1])

    class PositionEmbedding(keras.layers.Layer):
        """Adds the learned table ``positions[:L]`` to a sequence ``(N, L, d)``."""

        def __init__(self, max_len: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.max_len = max_len

        def build(self, shape: Any) -> None:
            self.positions = self.add_weight(shape=(self.max_len, shape[-1]), name="positions",
                                             initializer="zeros")

        def call(self, x: Any) -> Any:
            return x + self.positions[: x.shape[1]]

    class RowDot(keras.layers.Layer):
        """``sum(a * b, -1, keepdims=True)``."""

        def call(self, inputs: list[Any]) -> Any:
            a, b = inputs
            return ops.sum(a * b, axis=-1, keepdims=True)

        def compute_output_shape(self, shapes: list[Any]) -> Any:
            return (*shapes[0][:-1], 1)

    class SelfAttention(keras.layers.Layer):
        """Multi-head self-attention with canonical weights and an optional key-padding mask."""

        def __init__(self, num_heads: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.num_heads = num_heads

        def build(self, shapes: Any) -> None:
            d = shapes[0][-1]
            for p in "qkvo":
                setattr(self, f"{p}_kernel", self.add_weight(shape=(d, d), name=f"{p}_kernel",
                                                             initializer="zeros"))
                setattr(self, f"{p}_bias", self.add_weight(shape=(d,), name=f"{p}_bias",
                                                           initializer="zeros"))

        def call(self, inputs: list[Any]) -> Any:
            x = inputs[0]
            seq, d = x.shape[1], x.shape[2]
            h = self.num_heads
            dh = d // h

            def heads(t: Any) -> Any:  # (N, L, D) -> (N, H, L, dh)
                return ops.transpose(ops.reshape(t, (-1, seq, h, dh)), (0, 2, 1, 3))

            q = heads(ops.matmul(x, self.q_kernel) + self.q_bias)
            k = heads(ops.matmul(x, self.k_kernel) + self.k_bias)
            v = heads(ops.matmul(x, self.v_kernel) + self.v_bias)
            scores = ops.cast(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))), "float32")
            scores = scores / math.sqrt(dh)
            if len(inputs) > 1:
                keep = ops.cast(inputs[1], "float32")[:, None, None, :] > 0.5
                scores = ops.where(keep, scores, MASK_FILL)
            probs = ops.cast(ops.softmax(scores, axis=-1), x.dtype)
            att = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
            merged = ops.reshape(att, (-1, seq, d))
            return ops.matmul(merged, self.o_kernel) + self.o_bias

        def compute_output_shape(self, shapes: Any) -> Any:
            return shapes[0]

    return {"MaskedGlobalAvgPool": MaskedGlobalAvgPool, "PositionEmbedding": PositionEmbedding,
            "RowDot": RowDot, "SelfAttention": SelfAttention}


def build_model(spec: ModelSpec, precision: str, seed: int) -> Any:
    """A functional ``keras.Model`` taking a dict of inputs; weights are set afterwards."""
    import keras

    L = keras.layers
    C = custom_layers()
    dtype = "mixed_bfloat16" if precision == "bf16" else "float32"
    values: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    for node in spec.nodes:
        a = node.attrs
        kw: dict[str, Any] = {"name": node.name, "dtype": dtype}
        ins = [values[i] for i in node.inputs]
        op = node.op
        if op == "Input":
            t = keras.Input(shape=tuple(a["shape"]), dtype=a.get("dtype", "float32"), name=node.name)
            inputs[node.name] = values[node.name] = t
            continue
        rank = len(ins[0].shape) - 1 if ins else 0
        if op == "Dense":
            layer: Any = L.Dense(a["units"], activation=a.get("activation"), **kw, **ZEROS)
        elif op in ("Conv1D", "Conv2D"):
            cls = L.Conv1D if op == "Conv1D" else L.Conv2D
            layer = cls(a["filters"], a["kernel_size"], strides=a["strides"], padding=a["padding"],
                        activation=a.get("activation"), **kw, **ZEROS)
        elif op in ("MaxPool", "AvgPool"):
            name = ("MaxPooling" if op == "MaxPool" else "AveragePooling") + ("1D" if rank == 2 else "2D")
            layer = getattr(L, name)(pool_size=a["pool_size"], **kw)
        elif op == "GlobalAvgPool":
            if len(ins) > 1:
                layer = C["MaskedGlobalAvgPool"](**kw)
            else:
                layer = L.GlobalAveragePooling1D(**kw) if rank == 2 else L.GlobalAveragePooling2D(**kw)
        elif op == "Flatten":
            layer = L.Flatten(**kw)
        elif op == "Dropout":
            layer = L.Dropout(float(a["rate"]), seed=seed, **kw)
        elif op == "Embedding":
            layer = L.Embedding(a["input_dim"], a["output_dim"], embeddings_initializer="zeros", **kw)
        elif op == "PositionEmbedding":
            layer = C["PositionEmbedding"](a["max_len"], **kw)
        elif op == "LayerNorm":
            layer = L.LayerNormalization(epsilon=float(a["epsilon"]), **kw)
        elif op == "MultiHeadSelfAttention":
            layer = C["SelfAttention"](int(a["num_heads"]), **kw)
        elif op == "Activation":
            layer = L.Activation(a["fn"], **kw)
        elif op in ("Add", "Concat") and len(ins) == 1:
            values[node.name] = ins[0]
            continue
        elif op == "Add":
            layer = L.Add(**kw)
        elif op == "Concat":
            layer = L.Concatenate(axis=-1, **kw)
        elif op == "Dot":
            layer = C["RowDot"](**kw)
        else:
            raise UnsupportedError(f"keras cannot compile op {op!r} of node {node.name!r}")
        multi = op in ("Add", "Concat", "Dot", "MultiHeadSelfAttention") or (op == "GlobalAvgPool" and len(ins) > 1)
        values[node.name] = layer(ins if multi else ins[0])
    out = values[spec.output]
    if precision == "bf16":
        out = L.Activation("linear", dtype="float32", name="float32_output")(out)
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in spec.name)
    return keras.Model(inputs=inputs, outputs=out, name=name)


def canonical_variables(model: Any, spec: ModelSpec) -> dict[str, Any]:
    """``"<node>.<param>"`` -> the model's Keras variable, for every canonical parameter."""
    expected = spec.param_shapes()
    found: dict[str, Any] = {}
    for layer in model.layers:
        for var in layer.weights:
            key = f"{layer.name}.{var.name.split('/')[-1]}"
            if key in expected:
                found[key] = var
    missing = sorted(set(expected) - set(found))
    if missing:
        raise UnsupportedError(f"keras model of spec {spec.name!r} lacks variables {missing}")
    return found
