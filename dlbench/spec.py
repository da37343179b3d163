"""The neutral model spec: a small graph of named nodes, canonical NumPy weights.

A task describes its model once with :class:`SpecBuilder`; every framework plugin compiles the
resulting :class:`ModelSpec` into native code. Canonical conventions (every adapter converts to
its native layout and back):

* data is channels-last: images ``(H, W, C)``, sequences ``(L, C)``; the batch axis is implicit;
* ``Dense.kernel`` is ``(in, out)``, ``Conv1D.kernel`` ``(k, c_in / groups, c_out)``,
  ``Conv2D.kernel`` ``(kh, kw, c_in / groups, c_out)``, ``Embedding.embeddings`` and
  ``EmbeddingBag.embeddings`` ``(vocab, dim)``; a grouped convolution (``groups`` > 1) splits
  the input and output channels into ``groups`` contiguous blocks, output block ``g`` reads input
  block ``g`` only (``groups = c_in``: depthwise); ``use_bias=False`` drops the conv's bias;
* ``MultiHeadSelfAttention`` holds ``{q,k,v,o}_kernel`` ``(d, d)`` and ``{q,k,v,o}_bias`` ``(d,)``,
  heads split the last axis contiguously (head ``h`` owns columns ``h*dh:(h+1)*dh``);
* ``LayerNorm`` normalises the last axis with ``gamma``/``beta`` ``(d,)`` and ``epsilon``;
* convolution padding is ``"same"`` (output = ceil(input / stride), TensorFlow-style: an odd
  total puts the extra pixel after), ``"valid"``, or an int ``p``: ``p`` zeros on both sides of
  every spatial axis (explicit and symmetric, the same in every framework);
* pools take a ``pool_size`` window; ``AvgPool`` strides by the window and pads nothing;
  ``MaxPool`` has ``strides`` (default: the window) and ``padding`` ``p`` (default 0, at most
  ``pool_size // 2`` as in PyTorch) on both sides of every spatial axis, where the padded
  positions are ``-inf`` (never the max); both floor: ``out = (L + 2 p - k) // s + 1``;
* masks are float ``{0, 1}`` arrays ``(L,)`` where 1 marks a real token: ``GlobalAvgPool`` with a
  mask input is a masked mean, ``MultiHeadSelfAttention`` with a mask ignores padded keys, and
  with ``causal=True`` query ``i`` sees keys ``j <= i`` only (both combine);
* ``BatchNorm`` normalises the last (channel) axis over the batch and every other axis. Training
  uses the batch mean and the *biased* batch variance, and updates the running statistics
  ``moving = (1 - momentum) * moving + momentum * batch`` (PyTorch's meaning of ``momentum``,
  default 0.1, with the biased variance of Keras, Flax and TensorFlow); inference uses
  ``moving_mean``/``moving_variance``; both add ``epsilon`` to the variance inside the square
  root. The moving statistics are weights but not trainable (:data:`STATE_PARAMS`);
* ``EmbeddingBag`` sums (``mode="sum"``) or averages (``"mean"``) the rows of the ids on the
  last input axis ``(..., bag)`` -> ``(..., dim)``; with a mask ``(..., bag)`` only the real ids
  count and the mean divides by ``max(sum(mask), 1)``;
* ``DotInteraction`` (DLRM) takes ``k`` vectors ``(d,)`` and returns their pairwise dot products
  ``(k (k - 1) / 2,)``, pairs ``(i, j)`` with ``j < i`` in row-major order (``tril_indices(k, -1)``);
* ``Dot`` is ``sum(a * b, -1, keepdims=True)``; ``Concat`` joins the last axis;
* ``PositionEmbedding`` adds a learned ``(max_len, d)`` table to a sequence ``(L, d)``.

Weights are a flat ``dict`` keyed ``"<node>.<param>"``, initialised once in NumPy from a seed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlbench.errors import DlbenchError

ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
"""Activation functions every framework implements (gelu is the exact erf form)."""

OPS = (
    "Input",
    "Dense",
    "Conv1D",
    "Conv2D",
    "MaxPool",
    "AvgPool",
    "GlobalAvgPool",
    "Flatten",
    "Dropout",
    "Embedding",
    "PositionEmbedding",
    "LayerNorm",
    "MultiHeadSelfAttention",
    "Activation",
    "Add",
    "Concat",
    "Dot",
    "BatchNorm",
    "EmbeddingBag",
    "DotInteraction",
)

STATE_PARAMS = ("moving_mean", "moving_variance")
"""Parameter names that are weights but not trained (BatchNorm's running statistics): the
optimizer never updates them, :meth:`ModelSpec.parameter_count` leaves them out."""

BAG_MODES = ("sum", "mean")

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Node:
    """One node of the graph: ``op`` applied to the outputs of ``inputs``."""

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "inputs": list(self.inputs), "attrs": dict(self.attrs)}


@dataclass(frozen=True)
class ModelSpec:
    """A framework-neutral model: nodes in topological order and the name of the output node."""

    name: str
    nodes: tuple[Node, ...]
    output: str

    # -- structure -----------------------------------------------------------------------------
    @property
    def inputs(self) -> dict[str, Node]:
        """Input nodes by name, in declaration order."""
        return {n.name: n for n in self.nodes if n.op == "Input"}

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def ops(self) -> set[str]:
        return {n.op for n in self.nodes}

    def without_dropout(self) -> ModelSpec:
        """The same model with every Dropout rate set to 0 (deterministic training, for parity)."""
        nodes = tuple(Node(n.name, n.op, n.inputs, {**n.attrs, "rate": 0.0}) if n.op == "Dropout" else n
                      for n in self.nodes)
        return ModelSpec(self.name, nodes, self.output)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "output": self.output, "nodes": [n.to_dict() for n in self.nodes]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        nodes = tuple(Node(n["name"], n["op"], tuple(n["inputs"]), dict(n["attrs"])) for n in d["nodes"])
        return cls(d["name"], nodes, d["output"])

    def digest(self) -> str:
        """Stable hash of the architecture (used to key stored weights)."""
        import json

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    # -- shapes ---------------------------------------------------------------------------------
    def shapes(self) -> dict[str, Shape]:
        """Output shape (without batch axis) of every node."""
        out: dict[str, Shape] = {}
        for n in self.nodes:
            out[n.name] = _infer_shape(n, [out[i] for i in n.inputs])
        return out

    def param_shapes(self) -> dict[str, Shape]:
        """Canonical shape of every parameter, keyed ``"<node>.<param>"``."""
        shapes = self.shapes()
        params: dict[str, Shape] = {}
        for n in self.nodes:
            ins = [shapes[i] for i in n.inputs]
            for pname, pshape in _param_shapes(n, ins).items():
                params[f"{n.name}.{pname}"] = pshape
        return params

    def state_keys(self) -> list[str]:
        """Weight keys that are not trained (running statistics), sorted."""
        return sorted(k for k in self.param_shapes() if k.rsplit(".", 1)[1] in STATE_PARAMS)

    def parameter_count(self) -> int:
        """Trainable parameters (the figure PyTorch's ``parameters()`` gives; running statistics
        are left out, as in the published counts of ResNet and BERT)."""
        return int(sum(math.prod(s) for k, s in self.param_shapes().items()
                       if k.rsplit(".", 1)[1] not in STATE_PARAMS))

    def flops_per_example(self) -> int:
        """Multiply-adds x 2 of one forward pass for one example (dense ops only)."""
        shapes = self.shapes()
        total = 0
        for n in self.nodes:
            total += _flops(n, [shapes[i] for i in n.inputs], shapes[n.name])
        return int(total)

    # -- weights --------------------------------------------------------------------------------
    def init_weights(self, seed: int) -> dict[str, np.ndarray]:
        """Seeded NumPy initialisation (Glorot-uniform kernels, zero biases, N(0, 0.05) tables)."""
        rng = np.random.default_rng(seed)
        weights: dict[str, np.ndarray] = {}
        for key, shape in self.param_shapes().items():
            pname = key.rsplit(".", 1)[1]
            if pname.endswith("bias") or pname in ("beta", "moving_mean"):
                w = np.zeros(shape)
            elif pname in ("gamma", "moving_variance"):
                w = np.ones(shape)
            elif pname in ("embeddings", "positions"):
                w = rng.normal(0.0, 0.05, size=shape)
            else:
                fan_in = math.prod(shape[:-1])
                fan_out = shape[-1] * (math.prod(shape[:-2]) if len(shape) > 2 else 1)
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                w = rng.uniform(-limit, limit, size=shape)
            weights[key] = w.astype(np.float32)
        return weights


def weights_digest(weights: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the canonical weights (names, shapes, float32 bytes), order-independent."""
    h = hashlib.sha256()
    for key in sorted(weights):
        arr = np.ascontiguousarray(np.asarray(weights[key], dtype=np.float32))
        h.update(key.encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def check_weights(spec: ModelSpec, weights: Mapping[str, np.ndarray]) -> None:
    """Raise when ``weights`` do not match the spec's canonical parameter shapes."""
    expected = spec.param_shapes()
    if set(expected) != set(weights):
        missing = sorted(set(expected) - set(weights))
        extra = sorted(set(weights) - set(expected))
        raise DlbenchError(f"weights do not match spec {spec.name!r}: missing {missing}, unexpected {extra}")
    for k, s in expected.items():
        if tuple(np.shape(weights[k])) != s:
            raise DlbenchError(f"weight {k!r} has shape {np.shape(weights[k])}, spec wants {s}")


# ---------------------------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------------------------


class SpecBuilder:
    """Fluent construction of a :class:`ModelSpec`; every method returns the new node's name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._nodes: list[Node] = []
        self._counts: dict[str, int] = {}

    def _add(self, op: str, inputs: tuple[str, ...], name: str | None = None, **attrs: Any) -> str:
        if name is None:
            k = self._counts.get(op, 0)
            self._counts[op] = k + 1
            name = f"{op.lower()}_{k}"
        if any(n.name == name for n in self._nodes):
            raise DlbenchError(f"duplicate node name {name!r} in spec {self.name!r}")
        for i in inputs:
            if not any(n.name == i for n in self._nodes):
                raise DlbenchError(f"node {name!r} reads unknown node {i!r}")
        self._nodes.append(Node(name, op, inputs, attrs))
        return name

    def input(self, name: str, shape: Shape, dtype: str = "float32") -> str:
        if dtype not in ("float32", "int32"):
            raise DlbenchError(f"input dtype {dtype!r}: choose float32 or int32")
        return self._add("Input", (), name, shape=tuple(shape), dtype=dtype)

    def dense(self, x: str, units: int, activation: str | None = None, name: str | None = None) -> str:
        return self._add("Dense", (x,), name, units=units, activation=_act(activation))

    def conv1d(self, x: str, filters: int, kernel_size: int, strides: int = 1, padding: str | int = "same",
               activation: str | None = None, name: str | None = None, groups: int = 1,
               use_bias: bool = True) -> str:
        return self._add("Conv1D", (x,), name, **_conv_attrs(filters, kernel_size, strides, padding,
                                                             activation, groups, use_bias))

    def conv2d(self, x: str, filters: int, kernel_size: int, strides: int = 1, padding: str | int = "same",
               activation: str | None = None, name: str | None = None, groups: int = 1,
               use_bias: bool = True) -> str:
        """``padding``: ``"same"``, ``"valid"`` or ``p`` zeros on every side; ``groups``: grouped
        (``groups = c_in``: depthwise) convolution."""
        return self._add("Conv2D", (x,), name, **_conv_attrs(filters, kernel_size, strides, padding,
                                                             activation, groups, use_bias))

    def batch_norm(self, x: str, momentum: float = 0.1, epsilon: float = 1e-5,
                   name: str | None = None) -> str:
        """``momentum`` is the weight of the batch statistic in the running one (PyTorch's)."""
        if not 0.0 <= float(momentum) <= 1.0:
            raise DlbenchError(f"batch_norm momentum {momentum}: choose a value in [0, 1] (the weight "
                               "of the batch statistic, PyTorch's convention; Keras's 0.99 is 0.01)")
        if not float(epsilon) > 0.0:
            raise DlbenchError(f"batch_norm epsilon {epsilon}: choose a positive value such as 1e-5")
        return self._add("BatchNorm", (x,), name, momentum=float(momentum), epsilon=float(epsilon))

    def max_pool(self, x: str, pool_size: int = 2, strides: int | None = None, padding: int = 0,
                 name: str | None = None) -> str:
        """Max over ``pool_size`` windows every ``strides`` (default: the window) positions, with
        ``padding`` never-max positions on both sides (torchvision's ResNet stem: 3, 2, 1)."""
        return self._add("MaxPool", (x,), name, **max_pool_attrs(pool_size, strides, padding, name))

    def avg_pool(self, x: str, pool_size: int = 2, name: str | None = None) -> str:
        return self._add("AvgPool", (x,), name, pool_size=pool_size)

    def global_avg_pool(self, x: str, mask: str | None = None, name: str | None = None) -> str:
        return self._add("GlobalAvgPool", (x,) if mask is None else (x, mask), name)

    def flatten(self, x: str, name: str | None = None) -> str:
        return self._add("Flatten", (x,), name)

    def dropout(self, x: str, rate: float, name: str | None = None) -> str:
        return self._add("Dropout", (x,), name, rate=float(rate))

    def embedding(self, x: str, input_dim: int, output_dim: int, name: str | None = None) -> str:
        return self._add("Embedding", (x,), name, input_dim=input_dim, output_dim=output_dim)

    def position_embedding(self, x: str, max_len: int, name: str | None = None) -> str:
        return self._add("PositionEmbedding", (x,), name, max_len=max_len)

    def layer_norm(self, x: str, epsilon: float = 1e-5, name: str | None = None) -> str:
        return self._add("LayerNorm", (x,), name, epsilon=float(epsilon))

    def self_attention(self, x: str, num_heads: int, mask: str | None = None,
                       name: str | None = None, causal: bool = False) -> str:
        extra = {"causal": True} if causal else {}  # absent when False: older digests hold
        return self._add("MultiHeadSelfAttention", (x,) if mask is None else (x, mask), name,
                         num_heads=num_heads, **extra)

    def embedding_bag(self, ids: str, input_dim: int, output_dim: int, mode: str = "sum",
                      mask: str | None = None, name: str | None = None) -> str:
        if mode not in BAG_MODES:
            raise DlbenchError(f"embedding_bag mode {mode!r}: choose sum or mean")
        return self._add("EmbeddingBag", (ids,) if mask is None else (ids, mask), name,
                         input_dim=input_dim, output_dim=output_dim, mode=mode)

    def dot_interaction(self, *xs: str, name: str | None = None) -> str:
        """DLRM's pairwise dot products of ``k >= 2`` vectors of equal size."""
        return self._add("DotInteraction", tuple(xs), name)

    def activation(self, x: str, fn: str, name: str | None = None) -> str:
        return self._add("Activation", (x,), name, fn=_act(fn))

    def add(self, *xs: str, name: str | None = None) -> str:
        return self._add("Add", tuple(xs), name)

    def concat(self, *xs: str, name: str | None = None) -> str:
        return self._add("Concat", tuple(xs), name)

    def dot(self, a: str, b: str, name: str | None = None) -> str:
        return self._add("Dot", (a, b), name)

    def build(self, output: str) -> ModelSpec:
        spec = ModelSpec(self.name, tuple(self._nodes), output)
        spec.shapes()  # validates the graph
        return spec


def _act(a: str | None) -> str | None:
    if a is not None and a not in ACTIVATIONS:
        raise DlbenchError(f"unknown activation {a!r}: choose one of {', '.join(ACTIVATIONS)}")
    return a


def _pad(p: str | int) -> str | int:
    if isinstance(p, bool) or not (p in ("same", "valid") or (isinstance(p, int) and p >= 0)):
        raise DlbenchError(f"unknown padding {p!r}: choose same, valid or a number of zeros >= 0")
    return p


def _conv_attrs(filters: int, kernel_size: int, strides: int, padding: str | int,
                activation: str | None, groups: int, use_bias: bool) -> dict[str, Any]:
    if groups < 1 or filters % groups:
        raise DlbenchError(f"conv groups={groups}: choose a divisor of filters={filters}")
    attrs: dict[str, Any] = {"filters": filters, "kernel_size": kernel_size, "strides": strides,
                             "padding": _pad(padding), "activation": _act(activation)}
    if groups != 1:  # only when not the default, so the digests of existing specs hold
        attrs["groups"] = groups
    if not use_bias:
        attrs["use_bias"] = False
    return attrs


def max_pool_attrs(pool_size: int, strides: int | None = None, padding: int = 0,
                   name: str | None = None) -> dict[str, Any]:
    """A MaxPool node's attrs; ``strides`` and ``padding`` only when not the defaults (stride =
    window, no padding), so the digests of the specs written before they existed hold."""
    attrs: dict[str, Any] = {"pool_size": pool_size}
    if strides is not None and strides != pool_size:
        attrs["strides"] = strides
    if padding != 0:
        attrs["padding"] = padding
    pool_geometry("MaxPool", name, attrs)
    return attrs


def pool_geometry(op: str, name: str | None, attrs: Mapping[str, Any]) -> tuple[int, int, int]:
    """``(pool_size, strides, padding)`` of a pool node, checked: positive ints, and a padding
    of at most half the window (PyTorch's limit: every window then holds a real position)."""
    where = op if name is None else f"{op} {name!r}"
    k = attrs["pool_size"]
    s = attrs.get("strides", k)
    p = attrs.get("padding", 0)
    for what, v, low in (("pool_size", k, 1), ("strides", s, 1), ("padding", p, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise DlbenchError(f"{where}: {what}={v!r}: choose an int >= {low}")
    if p > k // 2:
        raise DlbenchError(f"{where}: padding={p} exceeds half the window pool_size={k}: "
                           f"choose padding <= {k // 2} (PyTorch's limit)")
    return k, s, p


def pool_out(size: int, k: int, stride: int, padding: int) -> int:
    """Output length of a pool along one axis (floor, as every framework's valid pool)."""
    return (size + 2 * padding - k) // stride + 1


def conv_pads(size: int, k: int, stride: int, padding: str | int) -> tuple[int, int]:
    """Zeros (before, after) along one spatial axis for ``padding`` (same, valid or an int)."""
    if padding == "same":
        return same_padding(size, k, stride)
    if padding == "valid":
        return 0, 0
    return int(padding), int(padding)


# ---------------------------------------------------------------------------------------------
# Shape inference, parameters and FLOPs
# ---------------------------------------------------------------------------------------------


def conv_out(size: int, k: int, stride: int, padding: str | int) -> int:
    """Output length of a convolution along one axis."""
    if padding == "same":
        return -(-size // stride)
    p = 0 if padding == "valid" else int(padding)
    return (size + 2 * p - k) // stride + 1


def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow-style ``same`` padding (before, after) along one axis; frameworks share it."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def _infer_shape(n: Node, ins: list[Shape]) -> Shape:
    a = n.attrs
    op = n.op
    if op == "Input":
        return tuple(a["shape"])
    x = ins[0]
    if op == "Dense":
        return (*x[:-1], a["units"])
    if op in ("Conv1D", "Conv2D"):
        _need_rank(n, x, 2 if op == "Conv1D" else 3)
        groups = a.get("groups", 1)
        if x[-1] % groups:
            raise DlbenchError(f"{op} {n.name!r}: {x[-1]} input channels are not divisible by "
                               f"groups={groups}: choose a divisor of both channel counts")
        out = tuple(conv_out(s, a["kernel_size"], a["strides"], a["padding"]) for s in x[:-1])
        if min(out) < 1:
            raise DlbenchError(f"{op} {n.name!r}: input {x} is smaller than the kernel "
                               f"{a['kernel_size']}: pad it or use a smaller kernel")
        return (*out, a["filters"])
    if op in ("MaxPool", "AvgPool"):
        if len(x) not in (2, 3):
            raise DlbenchError(f"{op} {n.name!r} needs a (L, C) or (H, W, C) input, got {x}")
        if op == "AvgPool" and {"strides", "padding"} & set(a):
            raise DlbenchError(f"AvgPool {n.name!r}: strides and padding are MaxPool's only: "
                               "an AvgPool strides by its window and pads nothing")
        k, s, p = pool_geometry(op, n.name, a)
        out = tuple(pool_out(size, k, s, p) for size in x[:-1])
        if min(out) < 1:
            raise DlbenchError(f"{op} {n.name!r}: input {x} is smaller than the window {k}: "
                               "pool a larger map or use a smaller window")
        return (*out, x[-1])
    if op == "GlobalAvgPool":
        return (x[-1],)
    if op == "Flatten":
        return (math.prod(x),)
    if op in ("Dropout", "Activation", "LayerNorm", "PositionEmbedding", "BatchNorm"):
        if op == "PositionEmbedding" and x[0] > a["max_len"]:
            raise DlbenchError(f"sequence length {x[0]} exceeds max_len {a['max_len']} of {n.name!r}")
        return x
    if op == "Embedding":
        return (*x, a["output_dim"])
    if op == "EmbeddingBag":
        if not x:
            raise DlbenchError(f"EmbeddingBag {n.name!r} needs ids with a bag axis (..., bag), got {x}")
        if len(ins) > 1 and ins[1] != x:
            raise DlbenchError(f"EmbeddingBag {n.name!r}: mask shape {ins[1]} differs from ids {x}")
        return (*x[:-1], a["output_dim"])
    if op == "DotInteraction":
        if len(ins) < 2 or len(x) != 1 or any(s != x for s in ins):
            raise DlbenchError(f"DotInteraction {n.name!r} needs two or more (d,) vectors of equal "
                               f"size, got {ins}")
        return (len(ins) * (len(ins) - 1) // 2,)
    if op == "MultiHeadSelfAttention":
        _need_rank(n, x, 2)
        if x[-1] % a["num_heads"]:
            raise DlbenchError(f"{n.name!r}: model dim {x[-1]} is not divisible by {a['num_heads']} heads")
        return x
    if op == "Add":
        if any(s != x for s in ins):
            raise DlbenchError(f"Add {n.name!r} needs equal shapes, got {ins}")
        return x
    if op == "Concat":
        if any(s[:-1] != x[:-1] for s in ins):
            raise DlbenchError(f"Concat {n.name!r} needs equal leading shapes, got {ins}")
        return (*x[:-1], sum(s[-1] for s in ins))
    if op == "Dot":
        if ins[0] != ins[1]:
            raise DlbenchError(f"Dot {n.name!r} needs equal shapes, got {ins}")
        return (*x[:-1], 1)
    raise DlbenchError(f"unknown op {op!r} in node {n.name!r}: choose one of {', '.join(OPS)}")


def _need_rank(n: Node, x: Shape, rank: int) -> None:
    if len(x) != rank:
        raise DlbenchError(f"{n.op} {n.name!r} needs a rank-{rank} input (without batch), got {x}")


def _param_shapes(n: Node, ins: list[Shape]) -> dict[str, Shape]:
    a = n.attrs
    if n.op == "Dense":
        return {"kernel": (ins[0][-1], a["units"]), "bias": (a["units"],)}
    if n.op in ("Conv1D", "Conv2D"):
        k = (a["kernel_size"],) * (1 if n.op == "Conv1D" else 2)
        conv: dict[str, Shape] = {"kernel": (*k, ins[0][-1] // a.get("groups", 1), a["filters"])}
        if a.get("use_bias", True):
            conv["bias"] = (a["filters"],)
        return conv
    if n.op in ("Embedding", "EmbeddingBag"):
        return {"embeddings": (a["input_dim"], a["output_dim"])}
    if n.op == "BatchNorm":
        c = (ins[0][-1],)
        return {"gamma": c, "beta": c, "moving_mean": c, "moving_variance": c}
    if n.op == "PositionEmbedding":
        return {"positions": (a["max_len"], ins[0][-1])}
    if n.op == "LayerNorm":
        return {"gamma": (ins[0][-1],), "beta": (ins[0][-1],)}
    if n.op == "MultiHeadSelfAttention":
        d = ins[0][-1]
        out: dict[str, Shape] = {}
        for p in "qkvo":
            out[f"{p}_kernel"] = (d, d)
            out[f"{p}_bias"] = (d,)
        return out
    return {}


def _flops(n: Node, ins: list[Shape], out: Shape) -> int:
    a = n.attrs
    if n.op == "Dense":
        return 2 * math.prod(out) * ins[0][-1]
    if n.op in ("Conv1D", "Conv2D"):
        taps = a["kernel_size"] ** (1 if n.op == "Conv1D" else 2)
        return 2 * math.prod(out) * taps * ins[0][-1] // a.get("groups", 1)
    if n.op == "MultiHeadSelfAttention":
        seq, d = ins[0]
        return 2 * 4 * seq * d * d + 2 * 2 * seq * seq * d
    if n.op == "Dot":
        return 2 * math.prod(ins[0])
    if n.op == "DotInteraction":
        return 2 * out[0] * ins[0][0]
    return 0
