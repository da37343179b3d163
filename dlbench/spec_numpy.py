"""Plain NumPy (float64) execution of a :class:`~dlbench.spec.ModelSpec`: the ground truth.

Every framework's parity tests compare against :func:`forward` (inference mode: dropout is the
identity) and :func:`loss`. Semantics follow the :mod:`dlbench.spec` docstring exactly:

* channels-last data; ``same`` padding is TensorFlow-style (:func:`dlbench.spec.same_padding`,
  the extra pixel goes after), ``valid`` pads nothing; ``AvgPool`` strides by its window, unpadded;
  ``MaxPool`` pads ``-inf`` (never the max) and takes strided windows, floor output size;
* ``GlobalAvgPool`` averages every axis but batch and channels; with a mask ``(N, L)`` it is
  ``sum(x * mask) / max(sum(mask), 1)`` over ``L`` (an all-padding row gives zeros, not NaN);
* ``MultiHeadSelfAttention``: ``q, k, v = x @ W + b``, heads split the last axis contiguously,
  scores ``q k^T / sqrt(head_dim)``, masked keys get ``-1e9`` before a softmax over keys,
  heads merged back in order, then ``@ o_kernel + o_bias``;
* ``gelu`` is the exact erf form; ``LayerNorm`` uses the biased variance of the last axis;
* ``Embedding`` looks up integer ids; ``PositionEmbedding`` adds ``positions[:L]``;
* ``causal`` attention keeps keys ``j <= i`` (and the padding mask's keys) before the softmax;
* ``BatchNorm`` in inference mode uses the moving statistics; :func:`forward_all` with
  ``training=True`` uses the batch statistics (biased variance) and :func:`batch_norm_state`
  gives the running statistics after one training step;
* grouped convolutions run one convolution per channel block; ``EmbeddingBag`` and
  ``DotInteraction`` as in :mod:`dlbench.spec`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from dlbench.errors import DlbenchError
from dlbench.spec import ModelSpec, Node, conv_pads

MASK_FILL = -1e9
"""Score given to padded keys before the attention softmax."""


# ---------------------------------------------------------------------------------------------
# Elementary ops (batch axis first, float64)
# ---------------------------------------------------------------------------------------------


def activation(x: np.ndarray, fn: str | None) -> np.ndarray:
    if fn is None:
        return x
    if fn == "relu":
        return np.maximum(x, 0.0)
    if fn == "tanh":
        return np.tanh(x)
    if fn == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic
    if fn == "gelu":
        from scipy.special import erf

        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    raise DlbenchError(f"unknown activation {fn!r}: choose one of relu, tanh, sigmoid, gelu")


def _pad_spatial(x: np.ndarray, k: int, stride: int, padding: str | int) -> np.ndarray:
    """Pad the spatial axes (all but batch and channels) for a convolution."""
    pads = [(0, 0)] + [conv_pads(s, k, stride, padding) for s in x.shape[1:-1]] + [(0, 0)]
    return np.pad(x, pads)


def conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, stride: int,
         padding: str | int, groups: int = 1) -> np.ndarray:
    """1-D or 2-D convolution (cross-correlation), channels-last, kernel ``(*k, c_in / groups,
    c_out)``; a grouped one convolves each of the ``groups`` channel blocks on its own."""
    if groups > 1:
        cin, cout = x.shape[-1] // groups, kernel.shape[-1] // groups
        outs = [conv(x[..., g * cin:(g + 1) * cin], kernel[..., g * cout:(g + 1) * cout], None,
                     stride, padding) for g in range(groups)]
        out = np.concatenate(outs, axis=-1)
        return out if bias is None else out + bias
    k = kernel.shape[0]
    nsp = kernel.ndim - 2
    xp = _pad_spatial(x, k, stride, padding)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k,) * nsp, axis=tuple(range(1, 1 + nsp)))
    # win: (N, *out_full, C_in, *k); subsample by stride
    sl = (slice(None),) + (slice(None, None, stride),) * nsp
    win = win[sl]
    if nsp == 1:
        out = np.einsum("nlci,ico->nlo", win, kernel)
    else:
        out = np.einsum("nhwcij,ijco->nhwo", win, kernel)
    return out if bias is None else out + bias


def pool(x: np.ndarray, p: int, kind: str, stride: int | None = None, padding: int = 0) -> np.ndarray:
    """Max/average pooling of ``p`` windows every ``stride`` (default ``p``) positions over the
    spatial axes, after ``padding`` ``-inf`` positions on both sides (never the max; the spec
    pads MaxPool only); floor output size."""
    s = p if stride is None else stride
    nd = x.ndim - 2
    if padding:
        x = np.pad(x, [(0, 0)] + [(padding, padding)] * nd + [(0, 0)], constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(x, (p,) * nd, axis=tuple(range(1, 1 + nd)))
    windows = windows[(slice(None),) + (slice(None, None, s),) * nd]  # (N, *out, C, *window)
    axes = tuple(range(-nd, 0))
    return windows.max(axis=axes) if kind == "max" else windows.mean(axis=axes)


def global_avg_pool(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    if mask is None:
        return x.mean(axis=tuple(range(1, x.ndim - 1)))
    m = mask.astype(np.float64)[..., None]  # (N, L, 1)
    return (x * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def batch_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance of the last axis over every other axis (BatchNorm's batch)."""
    axes = tuple(range(x.ndim - 1))
    mu = x.mean(axis=axes)
    return mu, ((x - mu) ** 2).mean(axis=axes)


def batch_norm(x: np.ndarray, w: Mapping[str, np.ndarray], eps: float, training: bool) -> np.ndarray:
    mu, var = batch_moments(x) if training else (w["moving_mean"], w["moving_variance"])
    return (x - mu) / np.sqrt(var + eps) * w["gamma"] + w["beta"]


def embedding_bag(ids: np.ndarray, table: np.ndarray, mode: str,
                  mask: np.ndarray | None = None) -> np.ndarray:
    rows = table[ids.astype(np.int64)]  # (..., bag, dim)
    m = np.ones(ids.shape) if mask is None else mask.astype(np.float64)
    total = (rows * m[..., None]).sum(axis=-2)
    if mode == "mean":
        return total / np.maximum(m.sum(axis=-1), 1.0)[..., None]
    return total


def dot_interaction(xs: list[np.ndarray]) -> np.ndarray:
    t = np.stack(xs, axis=1)  # (N, k, d)
    z = t @ t.transpose(0, 2, 1)
    li, lj = np.tril_indices(len(xs), -1)
    return z[:, li, lj]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def self_attention(x: np.ndarray, w: Mapping[str, np.ndarray], num_heads: int,
                   mask: np.ndarray | None = None, causal: bool = False) -> np.ndarray:
    n, seq, d = x.shape
    dh = d // num_heads

    def heads(t: np.ndarray) -> np.ndarray:  # (N, L, D) -> (N, H, L, dh)
        return t.reshape(n, seq, num_heads, dh).transpose(0, 2, 1, 3)

    q = heads(x @ w["q_kernel"] + w["q_bias"])
    k = heads(x @ w["k_kernel"] + w["k_bias"])
    v = heads(x @ w["v_kernel"] + w["v_bias"])
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh)
    keep = np.ones(scores.shape, dtype=bool)
    if mask is not None:
        keep = keep & (mask[:, None, None, :] > 0.5)
    if causal:
        keep = keep & np.tri(seq, dtype=bool)
    scores = np.where(keep, scores, MASK_FILL)
    att = softmax(scores, axis=-1) @ v  # (N, H, L, dh)
    merged = att.transpose(0, 2, 1, 3).reshape(n, seq, d)
    return merged @ w["o_kernel"] + w["o_bias"]


# ---------------------------------------------------------------------------------------------
# Graph execution
# ---------------------------------------------------------------------------------------------


def _params(node: Node, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    prefix = node.name + "."
    return {k[len(prefix):]: np.asarray(v, dtype=np.float64) for k, v in weights.items()
            if k.startswith(prefix)}


def _run_node(node: Node, ins: list[np.ndarray], w: dict[str, np.ndarray],
              training: bool = False) -> np.ndarray:
    a = node.attrs
    op = node.op
    if op == "Dense":
        return activation(ins[0] @ w["kernel"] + w["bias"], a.get("activation"))
    if op in ("Conv1D", "Conv2D"):
        y = conv(ins[0], w["kernel"], w.get("bias"), a["strides"], a["padding"], a.get("groups", 1))
        return activation(y, a.get("activation"))
    if op == "MaxPool":
        return pool(ins[0], a["pool_size"], "max", a.get("strides"), a.get("padding", 0))
    if op == "AvgPool":
        return pool(ins[0], a["pool_size"], "avg")
    if op == "GlobalAvgPool":
        return global_avg_pool(ins[0], ins[1] if len(ins) > 1 else None)
    if op == "Flatten":
        return ins[0].reshape(ins[0].shape[0], -1)
    if op == "Dropout":
        return ins[0]
    if op == "Embedding":
        ids = ins[0].astype(np.int64)
        return w["embeddings"][ids]
    if op == "PositionEmbedding":
        return ins[0] + w["positions"][: ins[0].shape[1]]
    if op == "LayerNorm":
        return layer_norm(ins[0], w["gamma"], w["beta"], a["epsilon"])
    if op == "MultiHeadSelfAttention":
        return self_attention(ins[0], w, a["num_heads"], ins[1] if len(ins) > 1 else None,
                              bool(a.get("causal", False)))
    if op == "BatchNorm":
        return batch_norm(ins[0], w, a["epsilon"], training)
    if op == "EmbeddingBag":
        return embedding_bag(ins[0], w["embeddings"], a["mode"], ins[1] if len(ins) > 1 else None)
    if op == "DotInteraction":
        return dot_interaction(ins)
    if op == "Activation":
        return activation(ins[0], a["fn"])
    if op == "Add":
        out = ins[0]
        for t in ins[1:]:
            out = out + t
        return out
    if op == "Concat":
        return np.concatenate(ins, axis=-1)
    if op == "Dot":
        return (ins[0] * ins[1]).sum(axis=-1, keepdims=True)
    raise DlbenchError(f"spec_numpy cannot run op {op!r} of node {node.name!r}")


def forward_all(spec: ModelSpec, weights: Mapping[str, np.ndarray],
                inputs: Mapping[str, np.ndarray], training: bool = False) -> dict[str, np.ndarray]:
    """Every node's output (float64; integer inputs stay integer), in inference mode or, with
    ``training``, as a training step's forward pass (BatchNorm on batch statistics; dropout
    stays the identity: train with ``spec.without_dropout()`` to compare)."""
    values: dict[str, np.ndarray] = {}
    for node in spec.nodes:
        if node.op == "Input":
            if node.name not in inputs:
                raise DlbenchError(f"missing input {node.name!r} for spec {spec.name!r}: "
                                   f"give all of {', '.join(spec.inputs)}")
            arr = np.asarray(inputs[node.name])
            if node.attrs.get("dtype") == "int32":
                values[node.name] = arr.astype(np.int64)
            else:
                values[node.name] = arr.astype(np.float64)
            continue
        values[node.name] = _run_node(node, [values[i] for i in node.inputs], _params(node, weights),
                                      training)
    return values


def forward(spec: ModelSpec, weights: Mapping[str, np.ndarray],
            inputs: Mapping[str, np.ndarray], training: bool = False) -> np.ndarray:
    """The spec's output for ``inputs`` (batch axis first), float64, inference mode unless
    ``training`` (see :func:`forward_all`)."""
    return forward_all(spec, weights, inputs, training)[spec.output]


def batch_norm_state(spec: ModelSpec, weights: Mapping[str, np.ndarray],
                     inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The running statistics after one training step on ``inputs``:
    ``moving = (1 - momentum) * moving + momentum * batch`` (biased batch variance)."""
    values = forward_all(spec, weights, inputs, training=True)
    out: dict[str, np.ndarray] = {}
    for node in spec.nodes:
        if node.op != "BatchNorm":
            continue
        m = float(node.attrs["momentum"])
        mu, var = batch_moments(values[node.inputs[0]])
        for stat, batch in (("moving_mean", mu), ("moving_variance", var)):
            key = f"{node.name}.{stat}"
            out[key] = (1.0 - m) * np.asarray(weights[key], np.float64) + m * batch
    return out


# ---------------------------------------------------------------------------------------------
# Losses (means over the batch, as in TrainConfig)
# ---------------------------------------------------------------------------------------------


def loss(name: str, outputs: np.ndarray, targets: np.ndarray) -> float:
    """``cross_entropy`` (logits, int targets), ``binary_cross_entropy`` (logits), ``mse``."""
    z = np.asarray(outputs, dtype=np.float64)
    if name == "cross_entropy":
        t = np.asarray(targets).astype(np.int64).reshape(-1)
        zmax = z.max(axis=-1, keepdims=True)
        lse = (zmax + np.log(np.exp(z - zmax).sum(axis=-1, keepdims=True)))[:, 0]
        return float(np.mean(lse - z[np.arange(len(t)), t]))
    y = np.asarray(targets, dtype=np.float64).reshape(-1)
    z = z.reshape(-1)
    if name == "binary_cross_entropy":
        return float(np.mean(np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))))
    if name == "mse":
        return float(np.mean((z - y) ** 2))
    raise DlbenchError(f"unknown loss {name!r}: choose one of binary_cross_entropy, cross_entropy, mse")
