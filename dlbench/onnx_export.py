"""Export a :class:`~dlbench.spec.ModelSpec` with canonical weights to an ONNX model.

The graph computes exactly what :mod:`dlbench.spec_numpy` computes, in float32: the inputs keep
the spec's names, channels-last shapes and dtypes (float32; int32 ids) with a symbolic batch axis
``N``; the output is the spec's output node. Weights become initializers named by their canonical
keys (``dense_0.kernel``...), in ONNX's native layouts where an op needs one (a convolution's
kernel as ``(c_out, c_in / groups, *k)``). Convolutions, pools and ``BatchNorm`` on a grid run
channels-first between two ``Transpose`` nodes (ONNX Runtime and OpenVINO fold the pairs); dense
layers are ``MatMul`` + ``Add`` (so dynamic int8 quantisation finds them); ``gelu`` is the erf
form; attention masks and the causal mask replace masked scores by ``MASK_FILL`` (``Where``) before
the softmax, as the reference does.

``onnx`` is imported inside :func:`to_onnx` only: importing this module costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from dlbench.errors import DlbenchError, UnsupportedError
from dlbench.spec import ModelSpec, Node, check_weights, conv_pads
from dlbench.spec_numpy import MASK_FILL

OPSET = 17
"""The ONNX opset the export targets (LayerNormalization needs 17)."""


def to_onnx(spec: ModelSpec, weights: Mapping[str, np.ndarray], opset: int = OPSET) -> Any:
    """The spec as a checked ``onnx.ModelProto`` (``onnx.checker.check_model`` passed)."""
    import onnx

    check_weights(spec, weights)
    g = _Graph(spec, weights)
    for node in spec.nodes:
        if node.op != "Input":
            g.node(node)
    model = g.model(opset)
    onnx.checker.check_model(model, full_check=True)
    return model


def to_onnx_bytes(spec: ModelSpec, weights: Mapping[str, np.ndarray], opset: int = OPSET) -> bytes:
    """:func:`to_onnx`, serialised (what ONNX Runtime and OpenVINO read)."""
    return bytes(to_onnx(spec, weights, opset).SerializeToString())


class _Graph:
    """ONNX nodes, initializers and value names being assembled for one spec."""

    def __init__(self, spec: ModelSpec, weights: Mapping[str, np.ndarray]) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.spec, self.weights = spec, weights
        self.shapes = spec.shapes()
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._names: set[str] = set()
        self._count = 0

    # -- building blocks -------------------------------------------------------------------------
    def const(self, value: Any, name: str | None = None, dtype: Any = np.float32) -> str:
        name = name or self._fresh("const")
        if name not in self._names:
            self._names.add(name)
            self.inits.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, node: Node, key: str, value: np.ndarray | None = None) -> str:
        """The canonical weight ``node.key`` (or ``value``, a native layout of it) as an initializer."""
        full = f"{node.name}.{key}"
        arr = np.asarray(self.weights[full] if value is None else value, dtype=np.float32)
        return self.const(arr, full)

    def _fresh(self, hint: str) -> str:
        self._count += 1
        return f"_{hint}_{self._count}"

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        out = out or self._fresh(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def ints(self, values: list[int] | tuple[int, ...]) -> str:
        return self.const(np.asarray(values, dtype=np.int64), dtype=np.int64)

    def to_cf(self, x: str, rank: int) -> str:
        return self.op("Transpose", x, perm=[0, rank - 1, *range(1, rank - 1)])

    def to_cl(self, x: str, rank: int) -> str:
        return self.op("Transpose", x, perm=[0, *range(2, rank), 1])

    def activation(self, x: str, fn: str | None, out: str | None = None) -> str:
        if fn is None:
            return self.op("Identity", x, out=out) if out else x
        if fn == "relu":
            return self.op("Relu", x, out=out)
        if fn == "tanh":
            return self.op("Tanh", x, out=out)
        if fn == "sigmoid":
            return self.op("Sigmoid", x, out=out)
        if fn == "gelu":  # 0.5 x (1 + erf(x / sqrt 2))
            erf = self.op("Erf", self.op("Div", x, self.const(math.sqrt(2.0))))
            half_x = self.op("Mul", x, self.const(0.5))
            return self.op("Mul", half_x, self.op("Add", erf, self.const(1.0)), out=out)
        raise DlbenchError(f"unknown activation {fn!r}: choose one of relu, tanh, sigmoid, gelu")

    # -- one spec node ----------------------------------------------------------------------------
    def node(self, n: Node) -> None:
        ins = list(n.inputs)
        a = n.attrs
        out = n.name
        rank = len(self.shapes[ins[0]]) + 1  # with the batch axis
        if n.op == "Dense":
            y = self.op("Add", self.op("MatMul", ins[0], self.weight(n, "kernel")), self.weight(n, "bias"))
            self.activation(y, a.get("activation"), out)
        elif n.op in ("Conv1D", "Conv2D"):
            self._conv(n, rank)
        elif n.op in ("MaxPool", "AvgPool"):
            k = int(a["pool_size"])
            nd = rank - 2
            geometry: dict[str, Any] = {"kernel_shape": [k] * nd,
                                        "strides": [int(a.get("strides", k))] * nd}
            if a.get("padding", 0):  # a MaxPool's pads are never the max (-inf), as the spec's
                geometry["pads"] = [int(a["padding"])] * (2 * nd)
            pooled = self.op("MaxPool" if n.op == "MaxPool" else "AveragePool", self.to_cf(ins[0], rank),
                             **geometry)
            self.op("Transpose", pooled, out=out, perm=[0, *range(2, rank), 1])
        elif n.op == "GlobalAvgPool":
            if len(ins) == 1:
                self.op("ReduceMean", ins[0], out=out, axes=list(range(1, rank - 1)), keepdims=0)
            else:
                m = self.op("Unsqueeze", ins[1], self.ints([-1]))
                total = self.op("ReduceSum", self.op("Mul", ins[0], m), self.ints([1]), keepdims=0)
                count = self.op("Max", self.op("ReduceSum", m, self.ints([1]), keepdims=0), self.const(1.0))
                self.op("Div", total, count, out=out)
        elif n.op == "Flatten":
            self.op("Flatten", ins[0], out=out, axis=1)
        elif n.op == "Dropout":
            self.op("Identity", ins[0], out=out)
        elif n.op == "Embedding":
            self.op("Gather", self.weight(n, "embeddings"), ins[0], out=out, axis=0)
        elif n.op == "PositionEmbedding":
            length = self.shapes[ins[0]][0]
            pos = self.op("Slice", self.weight(n, "positions"), self.ints([0]), self.ints([length]),
                          self.ints([0]))
            self.op("Add", ins[0], pos, out=out)
        elif n.op == "LayerNorm":
            self.op("LayerNormalization", ins[0], self.weight(n, "gamma"), self.weight(n, "beta"),
                    out=out, axis=-1, epsilon=float(a["epsilon"]))
        elif n.op == "BatchNorm":
            params = [self.weight(n, k) for k in ("gamma", "beta", "moving_mean", "moving_variance")]
            x = ins[0] if rank == 2 else self.to_cf(ins[0], rank)
            y = self.op("BatchNormalization", x, *params, out=out if rank == 2 else None,
                        epsilon=float(a["epsilon"]))
            if rank > 2:
                self.op("Transpose", y, out=out, perm=[0, *range(2, rank), 1])
        elif n.op == "MultiHeadSelfAttention":
            self._attention(n)
        elif n.op == "EmbeddingBag":
            self._embedding_bag(n)
        elif n.op == "DotInteraction":
            k = len(ins)
            stacked = self.op("Concat", *(self.op("Unsqueeze", x, self.ints([1])) for x in ins), axis=1)
            z = self.op("MatMul", stacked, self.op("Transpose", stacked, perm=[0, 2, 1]))
            flat = self.op("Reshape", z, self.ints([0, -1]))
            li, lj = np.tril_indices(k, -1)
            self.op("Gather", flat, self.ints(list(li * k + lj)), out=out, axis=1)
        elif n.op == "Activation":
            self.activation(ins[0], a["fn"], out)
        elif n.op == "Add":
            y = ins[0]
            for i, t in enumerate(ins[1:]):
                y = self.op("Add", y, t, out=out if i == len(ins) - 2 else None)
        elif n.op == "Concat":
            self.op("Concat", *ins, out=out, axis=-1)
        elif n.op == "Dot":
            self.op("ReduceSum", self.op("Mul", ins[0], ins[1]), self.ints([-1]), out=out, keepdims=1)
        else:
            raise UnsupportedError(f"ONNX export has no rule for op {n.op!r} (node {n.name!r})")

    def _conv(self, n: Node, rank: int) -> None:
        a = n.attrs
        nd = rank - 2
        kernel = np.asarray(self.weights[f"{n.name}.kernel"], dtype=np.float32)
        native = np.transpose(kernel, (nd + 1, nd, *range(nd)))  # (c_out, c_in / g, *k)
        k, s = int(a["kernel_size"]), int(a["strides"])
        pads = [conv_pads(size, k, s, a["padding"]) for size in self.shapes[n.inputs[0]][:-1]]
        inputs = [self.to_cf(n.inputs[0], rank), self.weight(n, "kernel", native)]
        if a.get("use_bias", True):
            inputs.append(self.weight(n, "bias"))
        y = self.op("Conv", *inputs, kernel_shape=[k] * nd, strides=[s] * nd,
                    pads=[p[0] for p in pads] + [p[1] for p in pads], group=int(a.get("groups", 1)))
        self.activation(self.to_cl(y, rank), a.get("activation"), n.name)

    def _attention(self, n: Node) -> None:
        seq, d = self.shapes[n.inputs[0]]
        h = int(n.attrs["num_heads"])
        dh = d // h
        x = n.inputs[0]

        def proj(p: str) -> str:
            return self.op("Add", self.op("MatMul", x, self.weight(n, f"{p}_kernel")), self.weight(n, f"{p}_bias"))

        def heads(t: str, perm: list[int]) -> str:
            return self.op("Transpose", self.op("Reshape", t, self.ints([0, 0, h, dh])), perm=perm)

        q = heads(proj("q"), [0, 2, 1, 3])
        kt = heads(proj("k"), [0, 2, 3, 1])
        v = heads(proj("v"), [0, 2, 1, 3])
        scores = self.op("Mul", self.op("MatMul", q, kt), self.const(1.0 / math.sqrt(dh)))
        keep = None
        if len(n.inputs) > 1:
            m = self.op("Unsqueeze", n.inputs[1], self.ints([1, 2]))  # (N, 1, 1, L)
            keep = self.op("Greater", m, self.const(0.5))
        if n.attrs.get("causal"):
            tri = self.const(np.tri(seq, dtype=bool), dtype=bool)
            keep = tri if keep is None else self.op("And", keep, tri)
        if keep is not None:
            scores = self.op("Where", keep, scores, self.const(MASK_FILL))
        att = self.op("MatMul", self.op("Softmax", scores, axis=-1), v)
        merged = self.op("Reshape", self.op("Transpose", att, perm=[0, 2, 1, 3]), self.ints([0, 0, d]))
        self.op("Add", self.op("MatMul", merged, self.weight(n, "o_kernel")), self.weight(n, "o_bias"),
                out=n.name)

    def _embedding_bag(self, n: Node) -> None:
        rows = self.op("Gather", self.weight(n, "embeddings"), n.inputs[0], axis=0)  # (..., bag, dim)
        bag = self.shapes[n.inputs[0]][-1]
        mean = n.attrs["mode"] == "mean"
        if len(n.inputs) > 1:
            m = n.inputs[1]
            rows = self.op("Mul", rows, self.op("Unsqueeze", m, self.ints([-1])))
            total = self.op("ReduceSum", rows, self.ints([-2]), keepdims=0, out=None if mean else n.name)
            if mean:
                count = self.op("Max", self.op("ReduceSum", m, self.ints([-1]), keepdims=1), self.const(1.0))
                self.op("Div", total, count, out=n.name)
        else:
            total = self.op("ReduceSum", rows, self.ints([-2]), keepdims=0, out=None if mean else n.name)
            if mean:
                self.op("Div", total, self.const(float(bag)), out=n.name)

    # -- the model ------------------------------------------------------------------------------------
    def model(self, opset: int) -> Any:
        from onnx import TensorProto

        h = self.helper
        inputs = []
        for name, node in self.spec.inputs.items():
            dtype = TensorProto.INT32 if node.attrs.get("dtype") == "int32" else TensorProto.FLOAT
            inputs.append(h.make_tensor_value_info(name, dtype, ["N", *node.attrs["shape"]]))
        out_shape = self.shapes[self.spec.output]
        outputs = [h.make_tensor_value_info(self.spec.output, TensorProto.FLOAT, ["N", *out_shape])]
        graph = h.make_graph(self.nodes, self.spec.name, inputs, outputs, self.inits)
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)],
                             producer_name="dlbench", doc_string=f"dlbench spec {self.spec.digest()}")
        model.ir_version = min(model.ir_version, 9)  # readable by ONNX Runtime and OpenVINO releases
        return model
