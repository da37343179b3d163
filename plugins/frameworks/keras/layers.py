"""Build a Keras 3 functional ``keras.Model`` from a neutral :class:`~dlbench.spec.ModelSpec`.

Built-in layers wherever Keras has the op with the canonical semantics (``Dense``, ``Conv1D``,
``Conv2D`` with ``groups``, pooling, ``Flatten``, ``Dropout``, ``Embedding``,
``LayerNormalization``, ``BatchNormalization`` (Keras's ``momentum`` is ``1 -`` the spec's; both
use the biased variance), ``Activation``, ``Add``, ``Concatenate``, ``ZeroPadding1D/2D`` before a
``valid`` convolution for explicit integer padding); small backend-neutral custom layers
(``keras.ops`` only) where it has not: a max pool's ``-inf`` padding, the masked mean, the
position table, the row-wise dot product, the embedding bag, DLRM's dot interaction and the
self-attention with canonical ``{q,k,v,o}_kernel (d, d)`` weights
(``keras.layers.MultiHeadAttention`` keeps ``(d, heads, head_dim)`` kernels and has no
key-padding float mask).

Every layer is named after its node and its variables after the canonical parameters, so
``"<layer>.<variable name>"`` is the canonical weight key. Mixed precision (``bf16``) passes the
``mixed_bfloat16`` dtype policy to every layer: float32 variables, bfloat16 computation, and a
final float32 ``Activation("linear")`` so the loss sees float32 logits.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

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

    class EmbeddingBag(keras.layers.Layer):
        """Sum or mean of the rows of the ids on the last axis; inputs ``ids`` or ``[ids, mask]``."""

        def __init__(self, input_dim: int, output_dim: int, mode: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.input_dim, self.output_dim, self.mode = input_dim, output_dim, mode

        def build(self, shapes: Any) -> None:
            self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim),
                                              name="embeddings", initializer="zeros")

        def call(self, inputs: Any) -> Any:
            ids, mask = (inputs[0], inputs[1]) if isinstance(inputs, (list, tuple)) else (inputs, None)
            rows = ops.take(self.embeddings, ops.cast(ids, "int32"), axis=0)  # (..., bag, dim)
            if mask is None:
                return (ops.sum if self.mode == "sum" else ops.mean)(rows, axis=-2)
            m = ops.cast(mask, rows.dtype)
            total = ops.sum(rows * ops.expand_dims(m, -1), axis=-2)
            if self.mode == "mean":
                total = total / ops.maximum(ops.sum(m, axis=-1, keepdims=True), 1.0)
            return total

        def compute_output_shape(self, shapes: Any) -> Any:
            ids = shapes[0] if isinstance(shapes, (list, tuple)) and isinstance(shapes[0], (list, tuple)) else shapes
            return (*ids[:-1], self.output_dim)

    class DotInteraction(keras.layers.Layer):
        """DLRM's pairwise dot products of ``k`` vectors, pairs ``(i, j)``, ``j < i``, row-major."""

        def call(self, inputs: list[Any]) -> Any:
            k = len(inputs)
            t = ops.stack(inputs, axis=1)  # (N, k, d)
            z = ops.reshape(ops.matmul(t, ops.transpose(t, (0, 2, 1))), (-1, k * k))
            li, lj = np.tril_indices(k, -1)
            return ops.take(z, (li * k + lj).astype("int32"), axis=1)

        def compute_output_shape(self, shapes: list[Any]) -> Any:
            k = len(shapes)
            return (shapes[0][0], k * (k - 1) // 2)

    class SelfAttention(keras.layers.Layer):
        """Multi-head self-attention with canonical weights, an optional key-padding mask and an
        optional causal mask."""

        def __init__(self, num_heads: int, causal: bool = False, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.num_heads, self.causal = num_heads, causal

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
            keep = None
            if len(inputs) > 1:
                keep = ops.cast(inputs[1], "float32")[:, None, None, :] > 0.5
            if self.causal:
                tri = ops.convert_to_tensor(np.tri(seq, dtype=bool))
                keep = tri if keep is None else ops.logical_and(keep, tri)
            if keep is not None:
                scores = ops.where(keep, scores, MASK_FILL)
            probs = ops.cast(ops.softmax(scores, axis=-1), x.dtype)
            att = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
            merged = ops.reshape(att, (-1, seq, d))
            return ops.matmul(merged, self.o_kernel) + self.o_bias

        def compute_output_shape(self, shapes: Any) -> Any:
            return shapes[0]

    class NegInfPadding(keras.layers.Layer):
        """``padding`` positions of ``-inf`` on both sides of every spatial axis: a max pool's
        padding (never the max); Keras's pools have only ``same``/``valid``."""

        def __init__(self, padding: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.padding = padding

        def call(self, x: Any) -> Any:
            p = self.padding
            pads = [(0, 0)] + [(p, p)] * (len(x.shape) - 2) + [(0, 0)]
            return ops.pad(x, pads, constant_values=float("-inf"))

        def compute_output_shape(self, shape: Any) -> Any:
            grid = [None if s is None else s + 2 * self.padding for s in shape[1:-1]]
            return (shape[0], *grid, shape[-1])

    return {"MaskedGlobalAvgPool": MaskedGlobalAvgPool, "PositionEmbedding": PositionEmbedding,
            "RowDot": RowDot, "SelfAttention": SelfAttention, "EmbeddingBag": EmbeddingBag,
            "DotInteraction": DotInteraction, "NegInfPadding": NegInfPadding}


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
            padding = a["padding"]
            if isinstance(padding, int):  # explicit symmetric zeros, then a valid convolution
                zero_pad = L.ZeroPadding1D if op == "Conv1D" else L.ZeroPadding2D
                ins = [zero_pad(padding, name=f"{node.name}__pad", dtype=dtype)(ins[0])]
                padding = "valid"
            layer = cls(a["filters"], a["kernel_size"], strides=a["strides"], padding=padding,
                        groups=a.get("groups", 1), use_bias=a.get("use_bias", True),
                        activation=a.get("activation"), **kw, **ZEROS)
        elif op == "BatchNorm":
            layer = L.BatchNormalization(axis=-1, momentum=1.0 - float(a["momentum"]),
                                         epsilon=float(a["epsilon"]), **kw)
        elif op == "EmbeddingBag":
            layer = C["EmbeddingBag"](a["input_dim"], a["output_dim"], a["mode"], **kw)
        elif op == "DotInteraction":
            layer = C["DotInteraction"](**kw)
        elif op in ("MaxPool", "AvgPool"):
            name = ("MaxPooling" if op == "MaxPool" else "AveragePooling") + ("1D" if rank == 2 else "2D")
            if a.get("padding", 0):
                ins = [C["NegInfPadding"](a["padding"], name=f"{node.name}__pad", dtype=dtype)(ins[0])]
            layer = getattr(L, name)(pool_size=a["pool_size"], strides=a.get("strides"), **kw)
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
            layer = C["SelfAttention"](int(a["num_heads"]), bool(a.get("causal", False)), **kw)
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
        multi = (op in ("Add", "Concat", "Dot", "MultiHeadSelfAttention", "DotInteraction")
                 or (op in ("GlobalAvgPool", "EmbeddingBag") and len(ins) > 1))
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
