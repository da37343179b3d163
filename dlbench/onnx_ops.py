"""ONNX nodes -> spec nodes with canonical weights (the graph half of :mod:`dlbench.onnx_import`).

Every ONNX value is tracked with the spec node that holds it and its *layout*:

* ``same``: the ONNX axes after the batch are the spec's (``(N, L, D)`` <-> ``(L, D)``, NHWC);
* ``cf``: channels-first, ONNX ``(N, C, *grid)`` <-> spec ``(*grid, C)`` (every convolution);
* ``perm``: a ``Flatten`` of a channels-first map: the spec flattens ``(H, W, C)`` where ONNX
  flattens ``(C, H, W)``; ``perm[j]`` is the spec position of ONNX feature ``j``, and the next
  ``Gemm``/``MatMul`` takes its kernel rows in that order (the classic NCHW -> NHWC trap).

Kernels become canonical: a convolution's ``(c_out, c_in / g, kh, kw)`` is transposed to
``(kh, kw, c_in / g, c_out)``, ``Gemm``'s ``B`` to ``(in, out)``. No ``onnx`` import here: nodes
arrive as plain :class:`OnnxNode` records.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlbench.onnx_patterns import (
    OnnxNode,
    Unsupported,
    conv_padding,
    find_gelus,
    other_input,
    square,
)
from dlbench.spec import ModelSpec, Node, Shape, max_pool_attrs

ACTIVATION_OPS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}
PASS_THROUGH = ("Identity", "Dropout")


@dataclass
class Value:
    """An ONNX value held by a spec node, in a layout (see the module's docstring)."""

    node: str
    layout: str
    perm: np.ndarray | None = None


class Converter:
    """Walks the ONNX nodes in order and appends spec nodes and their weights."""

    def __init__(self, name: str, consts: dict[str, np.ndarray], nodes: list[OnnxNode]) -> None:
        self.name = name
        self.consts = consts
        self.onnx_nodes = nodes
        self.nodes: list[Node] = []
        self.weights: dict[str, np.ndarray] = {}
        self.values: dict[str, Value] = {}
        self.consumed: set[int] = set()
        self.gelus: dict[int, str] = {}
        self.notes: list[str] = []
        self._names: set[str] = set()
        self._shapes: dict[str, Shape] = {}
        self.consumers: dict[str, list[int]] = {}
        for i, n in enumerate(nodes):
            for x in n.inputs:
                self.consumers.setdefault(x, []).append(i)

    # -- graph building --------------------------------------------------------------------------
    def add(self, op: str, hint: str, inputs: tuple[str, ...], **attrs: Any) -> str:
        base = re.sub(r"\W+", "_", hint, flags=re.ASCII).strip("_") or op.lower()
        if not base[0].isalpha():
            base = f"n_{base}"
        name, k = base, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        self.nodes.append(Node(name, op, inputs, attrs))
        self.shape(name)  # validates the node now (shape errors name the ONNX node)
        return name

    def shape(self, name: str) -> Shape:
        if name not in self._shapes:
            self._shapes.update(ModelSpec(self.name, tuple(self.nodes), name).shapes())
        return self._shapes[name]

    def value(self, n: OnnxNode, i: int = 0) -> Value:
        x = n.inputs[i]
        if x not in self.values:
            raise Unsupported(f"input {x!r} is neither a model input nor computed by a supported node")
        return self.values[x]

    def const(self, n: OnnxNode, i: int) -> np.ndarray:
        if i >= len(n.inputs) or n.inputs[i] == "":
            raise Unsupported(f"input {i} is missing")
        if n.inputs[i] not in self.consts:
            raise Unsupported(f"input {n.inputs[i]!r} must be a constant (an initializer)")
        return self.consts[n.inputs[i]]

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def sole_consumer(self, value: str) -> OnnxNode | None:
        users = self.consumers.get(value, [])
        if len(users) != 1:
            return None
        return self.onnx_nodes[users[0]]

    # -- the walk -----------------------------------------------------------------------------------
    def run(self, live: set[int]) -> list[str]:
        """Convert every live node; returns ``op (node)`` for those that could not be."""
        bad: list[str] = []
        self.find_gelus()
        handlers: dict[str, Callable[[OnnxNode], None]] = {
            "Conv": self.conv, "BatchNormalization": self.batch_norm, "Gemm": self.gemm,
            "MatMul": self.matmul, "MaxPool": self.pool, "AveragePool": self.pool,
            "GlobalAveragePool": self.global_pool, "Flatten": self.flatten, "Reshape": self.reshape,
            "Add": self.add_op, "Concat": self.concat, "Gather": self.gather,
            "LayerNormalization": self.layer_norm, "Gelu": self.gelu_op, "Transpose": self.transpose,
            "ReduceMean": self.reduce_mean,
        }
        for i, n in enumerate(self.onnx_nodes):
            if i not in live or i in self.consumed:
                continue
            known = n.op in ACTIVATION_OPS or n.op in PASS_THROUGH or n.op in handlers or i in self.gelus
            if known and any(x in self.values and self.values[x].layout == "broken" for x in n.inputs):
                for out in (*n.outputs, *([self.gelus[i]] if i in self.gelus else [])):
                    self.values.setdefault(out, Value("", "broken"))  # downstream: not blamed
                continue
            try:
                if n.op in ACTIVATION_OPS:
                    self.activation(n, ACTIVATION_OPS[n.op])
                elif n.op in PASS_THROUGH:
                    self.values[n.outputs[0]] = self.value(n)
                elif i in self.gelus:
                    self.activation(n, "gelu", output=self.gelus[i])
                elif n.op in handlers:
                    handlers[n.op](n)
                else:
                    raise Unsupported("")
            except Unsupported as exc:
                why = f": {exc}" if str(exc) else ""
                bad.append(f"{n.op} ({n.name or n.outputs[0]}{why})")
                for out in n.outputs:  # downstream nodes are not blamed for this one
                    self.values.setdefault(out, Value("", "broken"))
        return bad

    def out(self, n: OnnxNode, node: str, layout: str, perm: np.ndarray | None = None) -> None:
        self.values[n.outputs[0]] = Value(node, layout, perm)

    def _input_node(self, v: Value) -> str:
        if v.layout == "broken":
            raise Unsupported("reads a value no supported node computed")
        return v.node

    # -- ops ----------------------------------------------------------------------------------------
    def activation(self, n: OnnxNode, fn: str, x: Value | None = None, name: str | None = None,
                   output: str | None = None) -> None:
        v = x or self.value(n)
        node = self.add("Activation", name or n.name, (self._input_node(v),), fn=fn)
        self.values[output or n.outputs[0]] = Value(node, v.layout, v.perm)

    def gelu_op(self, n: OnnxNode) -> None:
        if n.attrs.get("approximate", "none") != "none":
            raise Unsupported("only the exact (erf) Gelu")
        self.activation(n, "gelu")

    def find_gelus(self) -> None:
        """Mark every erf-form GELU (:func:`dlbench.onnx_patterns.find_gelus`)."""
        self.gelus, chained = find_gelus(self.onnx_nodes, self.consts, self.consumers)
        self.consumed.update(chained)

    def conv(self, n: OnnxNode) -> None:
        v = self.value(n)
        w = self.const(n, 0 + 1)
        rank = w.ndim - 2
        if rank not in (1, 2) or v.layout != "cf":
            raise Unsupported("only 1-D and 2-D convolutions of channels-first maps")
        k = square(n, "kernel_shape", list(w.shape[2:]))
        stride = square(n, "strides", [1] * rank)
        if any(d != 1 for d in n.attrs.get("dilations", [1] * rank)):
            raise Unsupported("dilated convolutions")
        groups = int(n.attrs.get("group", 1))
        x = self._input_node(v)
        padding = conv_padding(n, self.shape(x)[:-1], k, stride)
        kernel = np.transpose(w, (*range(2, w.ndim), 1, 0))
        bias = self.consts.get(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
        if len(n.inputs) > 2 and n.inputs[2] and bias is None:
            raise Unsupported("the bias must be a constant")
        extra: dict[str, Any] = {"groups": groups} if groups != 1 else {}
        if bias is None:
            extra["use_bias"] = False
        node = self.add("Conv1D" if rank == 1 else "Conv2D", n.name or "conv", (x,), filters=int(w.shape[0]),
                        kernel_size=k, strides=stride, padding=padding, activation=None, **extra)
        self.weights[f"{node}.kernel"] = kernel
        if bias is not None:
            self.weights[f"{node}.bias"] = bias.reshape(-1)
        self.out(n, node, "cf")

    def batch_norm(self, n: OnnxNode) -> None:
        v = self.value(n)
        x = self._input_node(v)
        if v.layout == "perm" or (v.layout != "cf" and len(self.shape(x)) != 1):
            raise Unsupported("normalises axis 1, which is not the channel axis here")
        scale, bias, mean, var = (self.const(n, i) for i in range(1, 5))
        momentum = 1.0 - float(n.attrs.get("momentum", 0.9))  # ONNX weights the running value
        node = self.add("BatchNorm", n.name or "batch_norm", (x,), momentum=momentum,
                        epsilon=float(n.attrs.get("epsilon", 1e-5)))
        for key, arr in zip(("gamma", "beta", "moving_mean", "moving_variance"),
                            (scale, bias, mean, var), strict=True):
            self.weights[f"{node}.{key}"] = arr
        self.out(n, node, v.layout)

    def _dense(self, n: OnnxNode, v: Value, kernel: np.ndarray, bias: np.ndarray,
               outputs: tuple[str, ...]) -> None:
        x = self._input_node(v)
        if v.layout == "cf" and len(self.shape(x)) > 1:
            raise Unsupported("a matrix product over the channel axis of a feature map")
        if v.layout == "perm":
            assert v.perm is not None
            canonical = np.empty_like(kernel)
            canonical[v.perm] = kernel  # ONNX feature j sits at spec position perm[j]
            kernel = canonical
        if kernel.shape[0] != self.shape(x)[-1]:
            raise Unsupported(f"a ({kernel.shape[0]}, ...) weight for {self.shape(x)[-1]} features")
        node = self.add("Dense", n.name or "dense", (x,), units=int(kernel.shape[1]), activation=None)
        self.weights[f"{node}.kernel"] = np.ascontiguousarray(kernel)
        self.weights[f"{node}.bias"] = np.broadcast_to(bias, (kernel.shape[1],)).copy()
        self.values[outputs[0]] = Value(node, "same")

    def gemm(self, n: OnnxNode) -> None:
        if n.attrs.get("transA", 0):
            raise Unsupported("transA=1")
        b = self.const(n, 1)
        kernel = (b.T if n.attrs.get("transB", 0) else b) * float(n.attrs.get("alpha", 1.0))
        c = self.consts.get(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else np.zeros(1, np.float32)
        if c is None or c.size not in (1, kernel.shape[1]):
            raise Unsupported("C must be a constant bias of one value per output")
        self._dense(n, self.value(n), kernel, c.reshape(-1) * float(n.attrs.get("beta", 1.0)), n.outputs)

    def matmul(self, n: OnnxNode) -> None:
        w = self.const(n, 1)
        if w.ndim != 2:
            raise Unsupported("only a product with a constant 2-D weight")
        bias = np.zeros(w.shape[1], np.float32)
        outputs = n.outputs
        add = self.sole_consumer(n.outputs[0])
        if add is not None and add.op == "Add":
            other = other_input(add, n.outputs[0])
            b = self.consts.get(other) if other else None
            if b is not None and b.size == w.shape[1]:
                bias, outputs = b.reshape(-1), add.outputs
                self.consumed.add(self.onnx_nodes.index(add))
        self._dense(n, self.value(n), w, bias, outputs)

    def pool(self, n: OnnxNode) -> None:
        v = self.value(n)
        x = self._input_node(v)
        rank = len(self.shape(x)) - 1
        if v.layout != "cf" or rank not in (1, 2):
            raise Unsupported("only 1-D and 2-D pools of channels-first maps")
        k = square(n, "kernel_shape", None)
        stride = square(n, "strides", [1] * rank)
        if n.attrs.get("ceil_mode", 0) or any(d != 1 for d in n.attrs.get("dilations", [1])) \
                or n.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise Unsupported("only floor-mode, undilated pools without auto_pad")
        pads = [int(p) for p in n.attrs.get("pads", [0])]
        if n.op == "AveragePool":
            if stride != k or any(pads):
                raise Unsupported("only unpadded average pools whose stride equals the window")
            node = self.add("AvgPool", n.name or "pool", (x,), pool_size=k)
        else:
            if len(set(pads)) != 1 or pads[0] > k // 2:
                raise Unsupported(f"pads={pads}: only the same padding on every side, at most "
                                  f"half the window ({k // 2})")
            node = self.add("MaxPool", n.name or "pool", (x,), **max_pool_attrs(k, stride, pads[0]))
        self.out(n, node, "cf")

    def global_pool(self, n: OnnxNode) -> None:
        v = self.value(n)
        if v.layout != "cf":
            raise Unsupported("only of a channels-first map")
        node = self.add("GlobalAvgPool", n.name or "global_pool", (self._input_node(v),))
        self.out(n, node, "pooled")  # ONNX (N, C, 1, 1): spec (C,)

    def reduce_mean(self, n: OnnxNode) -> None:
        """A mean over every grid axis (keeping the batch and channels): GlobalAvgPool."""
        v = self.value(n)
        x = self._input_node(v)
        rank = len(self.shape(x)) + 1
        axes = n.attrs.get("axes")
        if axes is None and len(n.inputs) > 1 and n.inputs[1]:
            axes = self.const(n, 1).reshape(-1).tolist()  # opset 18: the axes are an input
        grid = set(range(2, rank)) if v.layout == "cf" else set(range(1, rank - 1))
        keep = bool(n.attrs.get("keepdims", 1))
        if v.layout not in ("cf", "same") or rank < 3 or {int(a) % rank for a in axes or ()} != grid \
                or (keep and v.layout == "same"):
            raise Unsupported("only a mean over the grid axes of a feature map (a global average pool)")
        node = self.add("GlobalAvgPool", n.name or "global_pool", (x,))
        self.out(n, node, "pooled" if keep else "same")

    def flatten(self, n: OnnxNode) -> None:
        if int(n.attrs.get("axis", 1)) != 1:
            raise Unsupported("only axis=1 (keep the batch)")
        self._to_2d(n)

    def reshape(self, n: OnnxNode) -> None:
        shape = self.consts.get(n.inputs[1])
        rank = int(n.attrs.get("_inferred_rank", 0)) if shape is None else len(shape)
        if rank != 2 or (shape is not None and int(shape[0]) not in (0, -1) and int(shape[1]) != -1):
            raise Unsupported("only a reshape to (batch, features)")
        self._to_2d(n)

    def _to_2d(self, n: OnnxNode) -> None:
        v = self.value(n)
        x = self._input_node(v)
        shape = self.shape(x)
        if v.layout == "pooled" or len(shape) == 1:
            self.out(n, x, "same" if v.layout == "pooled" else v.layout, v.perm)
            return
        node = self.add("Flatten", n.name or "flatten", (x,))
        if v.layout == "cf":  # ONNX flattens (C, *grid), the spec (*grid, C)
            spec_index = np.arange(math.prod(shape)).reshape(shape)
            perm = np.transpose(spec_index, (len(shape) - 1, *range(len(shape) - 1))).reshape(-1)
            self.out(n, node, "perm", perm)
        else:
            self.out(n, node, "same")

    def transpose(self, n: OnnxNode) -> None:
        v = self.value(n)
        x = self._input_node(v)
        rank = len(self.shape(x)) + 1
        perm = list(n.attrs.get("perm", []))
        to_cf, to_cl = [0, rank - 1, *range(1, rank - 1)], [0, *range(2, rank), 1]
        if v.layout == "same" and perm == to_cf:
            self.out(n, x, "cf")
        elif v.layout == "cf" and perm == to_cl:
            self.out(n, x, "same")
        else:
            raise Unsupported("only a channels-last <-> channels-first transpose")

    def add_op(self, n: OnnxNode) -> None:
        consts = [i for i in n.inputs if self.is_const(i)]
        if len(consts) == 1 and len(n.inputs) == 2:
            self._position_embedding(n, consts[0])
            return
        if consts:
            raise Unsupported("an Add of constants")
        vs = [self.value(n, i) for i in range(len(n.inputs))]
        if len({v.layout for v in vs}) != 1 or any(v.layout == "perm" for v in vs) \
                or len({self.shape(self._input_node(v)) for v in vs}) != 1:
            raise Unsupported("only an Add of equal shapes (no broadcasting)")
        node = self.add("Add", n.name or "add", tuple(self._input_node(v) for v in vs))
        self.out(n, node, vs[0].layout)

    def _position_embedding(self, n: OnnxNode, const: str) -> None:
        """A sequence plus a constant table of its shape: a learned position embedding."""
        v = self.value(n, 1 - n.inputs.index(const))
        x = self._input_node(v)
        shape = self.shape(x)
        table = self.consts[const]
        table = table.reshape(table.shape[1:]) if table.ndim == 3 and table.shape[0] == 1 else table
        if v.layout != "same" or len(shape) != 2 or table.shape != shape:
            raise Unsupported("an Add of a constant that follows no MatMul (only a (length, dim) "
                              "table added to a sequence: a position embedding)")
        node = self.add("PositionEmbedding", n.name or "position_embedding", (x,), max_len=int(shape[0]))
        self.weights[f"{node}.positions"] = table
        self.out(n, node, "same")

    def concat(self, n: OnnxNode) -> None:
        vs = [self.value(n, i) for i in range(len(n.inputs))]
        layouts = {v.layout for v in vs}
        rank = len(self.shape(self._input_node(vs[0]))) + 1
        axis = int(n.attrs.get("axis", 1)) % rank
        ok = (layouts == {"cf"} and axis == 1) or (layouts <= {"same", "pooled"} and len(layouts) == 1
                                                    and axis == rank - 1) or (layouts == {"pooled"} and axis == 1)
        if not ok:
            raise Unsupported(f"only along the channel (feature) axis, got axis {axis}")
        node = self.add("Concat", n.name or "concat", tuple(self._input_node(v) for v in vs))
        self.out(n, node, vs[0].layout)

    def gather(self, n: OnnxNode) -> None:
        table = self.const(n, 0)
        if table.ndim != 2 or int(n.attrs.get("axis", 0)) != 0:
            raise Unsupported("only a row lookup (axis 0) in a constant 2-D table (an embedding)")
        v = self.value(n, 1)
        node = self.add("Embedding", n.name or "embedding", (self._input_node(v),),
                        input_dim=int(table.shape[0]), output_dim=int(table.shape[1]))
        self.weights[f"{node}.embeddings"] = table
        self.out(n, node, "same")

    def layer_norm(self, n: OnnxNode) -> None:
        v = self.value(n)
        x = self._input_node(v)
        rank = len(self.shape(x)) + 1
        if int(n.attrs.get("axis", -1)) % rank != rank - 1 or v.layout not in ("same", "pooled") \
                or len(n.outputs) > 1 and any(n.outputs[1:]):
            raise Unsupported("only over the last axis of a features or sequence tensor")
        gamma = self.const(n, 1)
        beta = self.const(n, 2) if len(n.inputs) > 2 and n.inputs[2] else np.zeros_like(gamma)
        node = self.add("LayerNorm", n.name or "layer_norm", (x,), epsilon=float(n.attrs.get("epsilon", 1e-5)))
        self.weights[f"{node}.gamma"], self.weights[f"{node}.beta"] = gamma, beta
        self.out(n, node, v.layout)
