"""Compile a :class:`~dlbench.spec.ModelSpec` into a Flax (linen) module.

JAX is channels-last like the spec, so layouts match and only parameter names differ
(``Embed.embedding``, ``LayerNorm.scale``/``bias``). ``dtype`` is the computation dtype
(float32 or bfloat16); parameters stay float32 (``param_dtype``). The variable trees are built
directly from canonical weights (:func:`canonical_to_variables`), node ``i`` under key ``n{i}``:
``params`` and, for ``BatchNorm`` (``nn.BatchNorm``, ``momentum = 1 - spec momentum``, biased
variance), the running statistics in ``batch_stats``. Grouped convolutions are ``nn.Conv``'s
``feature_group_count``; ``EmbeddingBag`` and ``DotInteraction`` are small modules below.
This module imports jax and flax, so only the plugin's methods import it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dlbench.api import MASK_FILL, ModelSpec, Node, UnsupportedError, conv_pads

_ACT = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
        "gelu": lambda x: jax.nn.gelu(x, approximate=False)}


def _act(x: jax.Array, fn: str | None) -> jax.Array:
    return x if fn is None else _ACT[fn](x)


class SelfAttention(nn.Module):
    """Multi-head self-attention: q/k/v/o Dense layers, contiguous heads, -1e9 padding mask."""

    num_heads: int
    dtype: Any = jnp.float32
    causal: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        n, seq, d = x.shape
        h = self.num_heads
        dh = d // h

        def proj(name: str) -> jax.Array:
            return nn.Dense(d, dtype=self.dtype, name=name)(x).reshape(n, seq, h, dh)

        q, k, v = proj("q"), proj("k"), proj("v")
        scores = jnp.einsum("nqhd,nkhd->nhqk", q, k).astype(jnp.float32) / math.sqrt(dh)
        keep = jnp.ones((seq, seq), dtype=bool)
        if self.causal:
            keep = jnp.tril(keep)
        if mask is not None:
            keep = keep & (mask[:, None, None, :] > 0.5)
        if mask is not None or self.causal:
            scores = jnp.where(keep, scores, MASK_FILL)
        weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, seq, d)
        return nn.Dense(d, dtype=self.dtype, name="o")(out)


class PositionEmbedding(nn.Module):
    max_len: int
    dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        table = self.param("positions", nn.initializers.zeros, (self.max_len, self.dim))
        return x + table[: x.shape[1]].astype(x.dtype)


class EmbeddingBag(nn.Module):
    """Sum or mean of the embedding rows of the ids on the last axis (masked when a mask is given)."""

    num: int
    dim: int
    mode: str
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        rows = nn.Embed(self.num, self.dim, dtype=self.dtype, name="embed")(ids)  # (..., bag, dim)
        m = jnp.ones(ids.shape, rows.dtype) if mask is None else mask.astype(rows.dtype)
        total = (rows * m[..., None]).sum(axis=-2)
        if self.mode == "mean":
            return total / jnp.maximum(m.sum(axis=-1, keepdims=True), 1.0)
        return total


def dot_interaction(xs: list[jax.Array]) -> jax.Array:
    t = jnp.stack(xs, axis=1)  # (N, k, d)
    li, lj = np.tril_indices(len(xs), -1)
    return jnp.einsum("nid,njd->nij", t, t)[:, li, lj]


class SpecModule(nn.Module):
    """The spec as a linen module: ``apply({'params': p}, inputs, train)`` -> output."""

    spec: ModelSpec
    dtype: Any = jnp.float32
    capture: tuple[str, ...] = ()

    @nn.compact
    def __call__(self, inputs: Mapping[str, jax.Array], train: bool = False) -> Any:
        shapes = self.spec.shapes()
        vals: dict[str, jax.Array] = {}
        for i, node in enumerate(self.spec.nodes):
            if node.op == "Input":
                vals[node.name] = inputs[node.name]
                continue
            ins = [vals[x] for x in node.inputs]
            vals[node.name] = self._node(node, f"n{i}", ins, [shapes[x] for x in node.inputs], train)
        out = vals[self.spec.output]
        if self.capture:
            return out, {c: vals[c] for c in self.capture}
        return out

    def _node(self, node: Node, key: str, ins: list[jax.Array], in_shapes: list[tuple[int, ...]],
              train: bool) -> jax.Array:
        a, op, dt = node.attrs, node.op, self.dtype
        if op == "Dense":
            return _act(nn.Dense(a["units"], dtype=dt, name=key)(ins[0]), a.get("activation"))
        if op in ("Conv1D", "Conv2D"):
            k, s = a["kernel_size"], a["strides"]
            spatial = in_shapes[0][:-1]
            pads = [conv_pads(size, k, s, a["padding"]) for size in spatial]
            conv = nn.Conv(a["filters"], (k,) * len(spatial), strides=(s,) * len(spatial),
                           padding=pads, feature_group_count=a.get("groups", 1),
                           use_bias=a.get("use_bias", True), dtype=dt, name=key)
            return _act(conv(ins[0]), a.get("activation"))
        if op == "BatchNorm":
            return nn.BatchNorm(use_running_average=not train, momentum=1.0 - a["momentum"],
                                epsilon=a["epsilon"], dtype=dt, use_fast_variance=False,
                                name=key)(ins[0])
        if op == "EmbeddingBag":
            return EmbeddingBag(a["input_dim"], a["output_dim"], a["mode"], dtype=dt, name=key)(
                ins[0], ins[1] if len(ins) > 1 else None)
        if op == "DotInteraction":
            return dot_interaction(ins)
        if op in ("MaxPool", "AvgPool"):
            nd = ins[0].ndim - 2
            k = (a["pool_size"],) * nd
            if op == "AvgPool":
                return nn.avg_pool(ins[0], k, strides=k, padding="VALID")
            s = (a.get("strides", a["pool_size"]),) * nd
            p = a.get("padding", 0)  # reduce_window pads with its -inf init value: never the max
            return nn.max_pool(ins[0], k, strides=s, padding=[(p, p)] * nd)
        if op == "GlobalAvgPool":
            x = ins[0]
            if len(ins) == 1:
                return x.mean(axis=tuple(range(1, x.ndim - 1)))
            m = ins[1].astype(x.dtype)[..., None]
            return (x * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)
        if op == "Flatten":
            return ins[0].reshape(ins[0].shape[0], -1)
        if op == "Dropout":
            return nn.Dropout(a["rate"], name=key)(ins[0], deterministic=not train)
        if op == "Embedding":
            return nn.Embed(a["input_dim"], a["output_dim"], dtype=dt, name=key)(ins[0])
        if op == "PositionEmbedding":
            return PositionEmbedding(a["max_len"], in_shapes[0][-1], name=key)(ins[0])
        if op == "LayerNorm":
            return nn.LayerNorm(epsilon=a["epsilon"], dtype=dt, use_fast_variance=False,
                                name=key)(ins[0])
        if op == "MultiHeadSelfAttention":
            return SelfAttention(a["num_heads"], dtype=dt, causal=bool(a.get("causal", False)), name=key)(
                ins[0], ins[1] if len(ins) > 1 else None)
        if op == "Activation":
            return _act(ins[0], a["fn"])
        if op == "Add":
            out = ins[0]
            for t in ins[1:]:
                out = out + t
            return out
        if op == "Concat":
            return jnp.concatenate(ins, axis=-1)
        if op == "Dot":
            return (ins[0] * ins[1]).sum(axis=-1, keepdims=True)
        raise UnsupportedError(f"jax cannot compile op {op!r} of node {node.name!r}")


# ---------------------------------------------------------------------------------------------
# Canonical <-> Flax variable trees
# ---------------------------------------------------------------------------------------------


def _paths(spec: ModelSpec) -> dict[str, tuple[str, ...]]:
    """Canonical key -> path in the variables (collection first: ``params``, ``batch_stats``)."""
    out: dict[str, tuple[str, ...]] = {}
    for i, node in enumerate(spec.nodes):
        key, name = f"n{i}", node.name
        if node.op in ("Dense", "Conv1D", "Conv2D"):
            out[f"{name}.kernel"] = ("params", key, "kernel")
            if node.attrs.get("use_bias", True):
                out[f"{name}.bias"] = ("params", key, "bias")
        elif node.op == "Embedding":
            out[f"{name}.embeddings"] = ("params", key, "embedding")
        elif node.op == "EmbeddingBag":
            out[f"{name}.embeddings"] = ("params", key, "embed", "embedding")
        elif node.op == "PositionEmbedding":
            out[f"{name}.positions"] = ("params", key, "positions")
        elif node.op in ("LayerNorm", "BatchNorm"):
            out[f"{name}.gamma"] = ("params", key, "scale")
            out[f"{name}.beta"] = ("params", key, "bias")
            if node.op == "BatchNorm":
                out[f"{name}.moving_mean"] = ("batch_stats", key, "mean")
                out[f"{name}.moving_variance"] = ("batch_stats", key, "var")
        elif node.op == "MultiHeadSelfAttention":
            for p in "qkvo":
                out[f"{name}.{p}_kernel"] = ("params", key, p, "kernel")
                out[f"{name}.{p}_bias"] = ("params", key, p, "bias")
    return out


def canonical_to_variables(spec: ModelSpec, weights: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """``{"params": ..., "batch_stats": ...}`` (the latter only with BatchNorm): nested dicts of
    float32 NumPy arrays in Flax's layout."""
    tree: dict[str, Any] = {"params": {}}
    for canon, path in _paths(spec).items():
        node = tree
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = np.asarray(weights[canon], dtype=np.float32)
    return tree


def variables_to_canonical(spec: ModelSpec, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for canon, path in _paths(spec).items():
        node: Any = variables
        for p in path:
            node = node[p]
        out[canon] = np.asarray(jax.device_get(node), dtype=np.float32).copy()
    return out
