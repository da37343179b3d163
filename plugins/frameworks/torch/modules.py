"""Compile a :class:`~dlbench.spec.ModelSpec` into an idiomatic PyTorch ``nn.Module``.

Convolutions and pools run channels-first (``nn.Conv2d``, ``nn.MaxPool2d``...) as PyTorch code
does; every value remembers whether it is channels-first, and is permuted back to the canonical
channels-last order only where an op needs it (``Flatten``, ``Dense``, ``LayerNorm``, attention,
the output). ``same`` padding is PyTorch's symmetric ``padding=`` when TensorFlow-style padding
is symmetric, an explicit ``F.pad`` otherwise; ``groups`` is ``nn.Conv2d``'s. Attention uses
``F.scaled_dot_product_attention`` with an additive ``-1e9`` key-padding and causal mask (fully
padded rows stay finite, as in the reference). ``BatchNorm`` is :class:`BatchNorm`: the
``nn.BatchNorm`` parameters and buffers, normalised by ``F.batch_norm``, with running statistics
updated from the *biased* batch variance (the spec's convention; ``nn.BatchNorm`` would use the
unbiased one). ``EmbeddingBag`` is ``nn.EmbeddingBag`` (the mask as ``per_sample_weights``).

Weights convert between canonical and native layouts in :func:`canonical_to_native` /
:func:`native_to_canonical`; this module imports torch, so only the plugin's methods import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlbench.api import MASK_FILL, ModelSpec, Node, UnsupportedError, conv_pads

_ACT: dict[str, Any] = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                        "gelu": lambda x: F.gelu(x, approximate="none")}


def _act(x: torch.Tensor, fn: str | None) -> torch.Tensor:
    return x if fn is None else _ACT[fn](x)


def _to_cf(x: torch.Tensor) -> torch.Tensor:
    """(N, *S, C) -> (N, C, *S)."""
    return x.movedim(-1, 1)


def _to_cl(x: torch.Tensor) -> torch.Tensor:
    """(N, C, *S) -> (N, *S, C)."""
    return x.movedim(1, -1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/o projections (contiguous head split)."""

    def __init__(self, d: int, num_heads: int, causal: bool = False) -> None:
        super().__init__()
        self.num_heads, self.causal = num_heads, causal
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n, seq, d = x.shape
        h = self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, seq, h, d // h).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        bias = None
        if mask is not None:
            bias = ((1.0 - mask) * MASK_FILL).to(q.dtype)[:, None, None, :]
        if self.causal:
            future = torch.ones(seq, seq, dtype=torch.bool, device=x.device).triu(1)
            causal = torch.zeros(seq, seq, dtype=q.dtype, device=x.device).masked_fill(future, MASK_FILL)
            bias = causal if bias is None else bias + causal
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.o(out.transpose(1, 2).reshape(n, seq, d))


class BatchNorm(nn.Module):
    """Batch normalisation over the channel axis 1 with the spec's running-statistics rule."""

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int, momentum: float, eps: float) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        with torch.no_grad():
            dims = [d for d in range(x.ndim) if d != 1]
            var, mean = torch.var_mean(x.float(), dim=dims, correction=0)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class SpecModule(nn.Module):
    """The spec as an ``nn.Module``; ``forward`` takes the inputs by name, channels-last."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.shapes = spec.shapes()
        self.keys = {n.name: f"n{i}" for i, n in enumerate(spec.nodes)}
        self.layers = nn.ModuleDict()
        self.tables = nn.ParameterDict()
        self.pads: dict[str, tuple[int, ...]] = {}
        for node in spec.nodes:
            self._make(node)

    # -- construction -----------------------------------------------------------------------------
    def _make(self, node: Node) -> None:
        a, key = node.attrs, self.keys[node.name]
        ins = [self.shapes[i] for i in node.inputs]
        if node.op == "Dense":
            self.layers[key] = nn.Linear(ins[0][-1], a["units"])
        elif node.op in ("Conv1D", "Conv2D"):
            k, s = a["kernel_size"], a["strides"]
            pads = [conv_pads(size, k, s, a["padding"]) for size in ins[0][:-1]]
            symmetric = all(lo == hi for lo, hi in pads)
            conv: Any = nn.Conv1d if node.op == "Conv1D" else nn.Conv2d
            padding: Any = tuple(lo for lo, _ in pads) if symmetric else 0
            self.layers[key] = conv(ins[0][-1], a["filters"], k, stride=s, padding=padding,
                                    groups=a.get("groups", 1), bias=a.get("use_bias", True))
            if not symmetric:  # F.pad takes the last axis first
                self.pads[node.name] = tuple(p for lo, hi in reversed(pads) for p in (lo, hi))
        elif node.op in ("MaxPool", "AvgPool"):
            rank = len(ins[0]) - 1
            cls = {("MaxPool", 1): nn.MaxPool1d, ("MaxPool", 2): nn.MaxPool2d,
                   ("AvgPool", 1): nn.AvgPool1d, ("AvgPool", 2): nn.AvgPool2d}[(node.op, rank)]
            if node.op == "MaxPool":  # torch pads a max pool with -inf, as the spec does
                self.layers[key] = cls(a["pool_size"], stride=a.get("strides", a["pool_size"]),
                                       padding=a.get("padding", 0))
            else:
                self.layers[key] = cls(a["pool_size"])
        elif node.op == "Dropout":
            self.layers[key] = nn.Dropout(a["rate"])
        elif node.op == "Embedding":
            self.layers[key] = nn.Embedding(a["input_dim"], a["output_dim"])
        elif node.op == "EmbeddingBag":
            self.layers[key] = nn.EmbeddingBag(a["input_dim"], a["output_dim"], mode=a["mode"])
        elif node.op == "BatchNorm":
            self.layers[key] = BatchNorm(ins[0][-1], a["momentum"], a["epsilon"])
        elif node.op == "PositionEmbedding":
            self.tables[key] = nn.Parameter(torch.zeros(a["max_len"], ins[0][-1]))
        elif node.op == "LayerNorm":
            self.layers[key] = nn.LayerNorm(ins[0][-1], eps=a["epsilon"])
        elif node.op == "MultiHeadSelfAttention":
            self.layers[key] = SelfAttention(ins[0][-1], a["num_heads"], bool(a.get("causal", False)))
        elif node.op not in ("Input", "GlobalAvgPool", "Flatten", "Activation", "Add", "Concat",
                             "Dot", "DotInteraction"):
            raise UnsupportedError(f"torch cannot compile op {node.op!r} of node {node.name!r}")

    def _layer(self, node: Node) -> Any:
        key = self.keys[node.name]
        return self.layers[key] if key in self.layers else None  # noqa: SIM401 (no .get)

    # -- execution --------------------------------------------------------------------------------
    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.run(inputs)[0]

    def run(self, inputs: Mapping[str, torch.Tensor], capture: tuple[str, ...] = ()
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Output (channels-last) and the canonical values of the ``capture`` nodes."""
        vals: dict[str, tuple[torch.Tensor, bool]] = {}  # name -> (tensor, channels_first)
        for node in self.spec.nodes:
            if node.op == "Input":
                vals[node.name] = (inputs[node.name], False)
            else:
                vals[node.name] = self._node(node, [vals[i] for i in node.inputs])
        out, cf = vals[self.spec.output]
        captured = {c: (_to_cl(vals[c][0]) if vals[c][1] else vals[c][0]) for c in capture}
        return (_to_cl(out) if cf else out), captured

    def _node(self, node: Node, ins: list[tuple[torch.Tensor, bool]]) -> tuple[torch.Tensor, bool]:
        a, op = node.attrs, node.op
        layer = self._layer(node)

        def cl(i: int = 0) -> torch.Tensor:
            t, cf = ins[i]
            return _to_cl(t) if cf else t

        def cf(i: int = 0) -> torch.Tensor:
            t, is_cf = ins[i]
            return t if is_cf else _to_cf(t)

        if op in ("Conv1D", "Conv2D"):
            x = cf()
            if node.name in self.pads:
                x = F.pad(x, self.pads[node.name])
            return _act(layer(x), a.get("activation")), True
        if op in ("MaxPool", "AvgPool"):
            return layer(cf()), True
        if op in ("Dropout", "Activation"):
            t, is_cf = ins[0]
            return (layer(t) if op == "Dropout" else _act(t, a["fn"])), is_cf
        if op == "Add":
            is_cf = ins[0][1]
            out = ins[0][0]
            for i in range(1, len(ins)):
                out = out + (cf(i) if is_cf else cl(i))
            return out, is_cf
        if op == "Concat":
            if len(ins[0][0].shape) > 2 and all(c for _, c in ins):
                return torch.cat([t for t, _ in ins], dim=1), True
            return torch.cat([cl(i) for i in range(len(ins))], dim=-1), False
        if op == "GlobalAvgPool":
            t, is_cf = ins[0]
            caxis = 1 if is_cf else t.ndim - 1
            if len(ins) == 1:
                return t.mean(dim=[d for d in range(1, t.ndim) if d != caxis]), False
            m = ins[1][0]
            m = m[:, None, :] if is_cf else m[:, :, None]
            lax = 2 if is_cf else 1
            return (t * m).sum(dim=lax) / m.sum(dim=lax).clamp_min(1.0), False
        if op == "Flatten":
            return torch.flatten(cl(), 1), False
        if op == "Dense":
            return _act(layer(cl()), a.get("activation")), False
        if op == "Embedding":
            return layer(ins[0][0]), False
        if op == "EmbeddingBag":
            ids = ins[0][0]
            flat = ids.reshape(-1, ids.shape[-1])
            if len(ins) == 1:
                return layer(flat).reshape(*ids.shape[:-1], -1), False
            m = ins[1][0].reshape(flat.shape).to(layer.weight.dtype)
            out = F.embedding_bag(flat, layer.weight, mode="sum", per_sample_weights=m)
            if a["mode"] == "mean":
                out = out / m.sum(dim=-1, keepdim=True).clamp_min(1.0)
            return out.reshape(*ids.shape[:-1], -1), False
        if op == "BatchNorm":
            t, is_cf = ins[0]
            return layer(t if is_cf or t.ndim == 2 else _to_cf(t)), t.ndim > 2
        if op == "DotInteraction":
            stacked = torch.stack([cl(i) for i in range(len(ins))], dim=1)  # (N, k, d)
            li, lj = torch.tril_indices(len(ins), len(ins), -1, device=stacked.device)
            return torch.bmm(stacked, stacked.transpose(1, 2))[:, li, lj], False
        if op == "PositionEmbedding":
            x = cl()
            return x + self.tables[self.keys[node.name]][: x.shape[1]], False
        if op == "LayerNorm":
            return layer(cl()), False
        if op == "MultiHeadSelfAttention":
            return layer(cl(), ins[1][0] if len(ins) > 1 else None), False
        if op == "Dot":
            return (cl(0) * cl(1)).sum(dim=-1, keepdim=True), False
        raise UnsupportedError(f"torch cannot run op {op!r} of node {node.name!r}")


# ---------------------------------------------------------------------------------------------
# Canonical <-> native weights
# ---------------------------------------------------------------------------------------------


def _native_params(module: SpecModule) -> dict[str, tuple[torch.Tensor, Any, Any]]:
    """Canonical key -> (parameter or buffer, to_native(np) -> np, to_canonical(np) -> np)."""

    def ident(w: np.ndarray) -> np.ndarray:
        return w

    def t2(w: np.ndarray) -> np.ndarray:
        return w.T

    out: dict[str, tuple[torch.Tensor, Any, Any]] = {}
    for node in module.spec.nodes:
        key, name = module.keys[node.name], node.name
        layer = module._layer(node)
        if node.op == "Dense":
            out[f"{name}.kernel"] = (layer.weight, t2, t2)
            out[f"{name}.bias"] = (layer.bias, ident, ident)
        elif node.op == "Conv1D":  # (k, in, out) <-> (out, in, k)
            out[f"{name}.kernel"] = (layer.weight, lambda w: w.transpose(2, 1, 0),
                                     lambda w: w.transpose(2, 1, 0))
            if layer.bias is not None:
                out[f"{name}.bias"] = (layer.bias, ident, ident)
        elif node.op == "Conv2D":  # (kh, kw, in / groups, out) <-> (out, in / groups, kh, kw)
            out[f"{name}.kernel"] = (layer.weight, lambda w: w.transpose(3, 2, 0, 1),
                                     lambda w: w.transpose(2, 3, 1, 0))
            if layer.bias is not None:
                out[f"{name}.bias"] = (layer.bias, ident, ident)
        elif node.op in ("Embedding", "EmbeddingBag"):
            out[f"{name}.embeddings"] = (layer.weight, ident, ident)
        elif node.op == "BatchNorm":
            out[f"{name}.gamma"] = (layer.weight, ident, ident)
            out[f"{name}.beta"] = (layer.bias, ident, ident)
            out[f"{name}.moving_mean"] = (layer.running_mean, ident, ident)
            out[f"{name}.moving_variance"] = (layer.running_var, ident, ident)
        elif node.op == "PositionEmbedding":
            out[f"{name}.positions"] = (module.tables[key], ident, ident)
        elif node.op == "LayerNorm":
            out[f"{name}.gamma"] = (layer.weight, ident, ident)
            out[f"{name}.beta"] = (layer.bias, ident, ident)
        elif node.op == "MultiHeadSelfAttention":
            for p in "qkvo":
                lin = getattr(layer, p)
                out[f"{name}.{p}_kernel"] = (lin.weight, t2, t2)
                out[f"{name}.{p}_bias"] = (lin.bias, ident, ident)
    return out


def canonical_to_native(module: SpecModule, weights: Mapping[str, np.ndarray]) -> None:
    """Copy canonical weights into the module's parameters (in place, no autograd)."""
    with torch.no_grad():
        for key, (param, to_native, _) in _native_params(module).items():
            w = np.ascontiguousarray(to_native(np.asarray(weights[key], dtype=np.float32)))
            param.copy_(torch.from_numpy(w))


def native_to_canonical(module: SpecModule) -> dict[str, np.ndarray]:
    """The module's parameters in canonical layout, float32."""
    out = {}
    for key, (param, _, to_canonical) in _native_params(module).items():
        w = param.detach().to("cpu", torch.float32).numpy()
        out[key] = np.ascontiguousarray(to_canonical(w)).astype(np.float32)
    return out
