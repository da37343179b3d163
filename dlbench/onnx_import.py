"""A user's ONNX model as a :class:`~dlbench.spec.ModelSpec` with canonical weights.

:func:`import_onnx` reads the file, checks it (``onnx.checker``, the opset, the inputs against
the task's shapes), converts its nodes (:mod:`dlbench.onnx_ops`: Gemm, MatMul + Add, Conv,
BatchNormalization, Relu, Tanh, Sigmoid, Gelu and its erf form, MaxPool, AveragePool,
GlobalAveragePool, Flatten, Reshape to 2-D, Add, Concat, Gather as an embedding,
LayerNormalization; Identity and Dropout pass through) and returns an :class:`ImportedSpec`: the
spec, whose :meth:`~ImportedSpec.init_weights` gives the file's weights (whatever the seed), and
what :func:`run_original` needs to run the original file in ONNX Runtime for parity. A trailing
Softmax is dropped (dlbench's models output logits) with a note. Anything wrong is one
:class:`~dlbench.errors.DlbenchError` line naming the file, the problem and the fix.

A batch axis must be dynamic (every framework runs the spec at any batch size); another dynamic
axis takes the task's size. ``onnx`` and ``onnxruntime`` are imported inside the functions only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlbench.errors import DlbenchError
from dlbench.onnx_ops import ACTIVATION_OPS, PASS_THROUGH, Converter
from dlbench.onnx_patterns import OnnxNode
from dlbench.spec import ModelSpec, Shape, check_weights

MIN_OPSET = 11
"""The oldest default-domain opset read (the op semantics used here hold from 11 on)."""
SUPPORTED = sorted({*ACTIVATION_OPS, *PASS_THROUGH, "Conv", "BatchNormalization", "Gemm", "MatMul",
                    "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Add",
                    "Concat", "Gather", "LayerNormalization", "Gelu", "Erf", "Transpose", "Softmax",
                    "ReduceMean"})
SHOWN = 8
"""Unsupported nodes named in the error line (then "and N more")."""

TaskInputs = Mapping[str, tuple[Shape, str]]
"""The task's inputs: name -> (shape without the batch axis, dtype ``float32`` or ``int32``)."""


@dataclass(frozen=True)
class Feed:
    """How a spec input reaches the ONNX file: its ONNX name, layout (``cf``: channels-first)
    and dtype."""

    spec_name: str
    onnx_name: str
    layout: str
    dtype: str


@dataclass(frozen=True, eq=False)
class ImportedSpec(ModelSpec):
    """A spec imported from an ONNX file: the architecture, plus the file's weights."""

    source: str = ""
    weights: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    notes: tuple[str, ...] = ()
    feeds: tuple[Feed, ...] = ()
    fetch: str = ""
    """The ONNX value that is the spec's output (before a dropped Softmax)."""
    fetch_layout: str = "same"

    def init_weights(self, seed: int) -> dict[str, np.ndarray]:
        """The file's weights (the same for every seed: they are the user's model)."""
        return {k: np.array(v, dtype=np.float32) for k, v in self.weights.items()}

    def without_dropout(self) -> ImportedSpec:
        return self  # imported dropouts pass through: there are none to switch off


def import_model(value: Mapping[str, Any], inputs: TaskInputs, output: Shape) -> ImportedSpec:
    """The model a task's ``model: {onnx: path}`` names (the path resolved by the suite), for
    these task inputs, checked to give ``output`` (the shape without the batch axis)."""
    path = str(value["onnx"])
    spec = import_onnx(path, inputs)
    got = spec.shapes()[spec.output]
    if got != tuple(output):
        raise DlbenchError(f"{path}: the model outputs {_shape(('N', *got))}, the task needs {_shape(('N', *output))}: "
                           "export the model with the task's number of outputs")
    return spec


def import_onnx(path: str | Path, inputs: TaskInputs) -> ImportedSpec:
    """The ONNX file at ``path`` as a spec for ``inputs`` (cached per file content and inputs)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DlbenchError(f"{p}: cannot read the ONNX model ({exc.strerror or exc}): give the path "
                           "of a readable .onnx file") from None
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise DlbenchError(f"{p}: reading an ONNX model needs the onnx package: pip install "
                           "'dlbench[onnx]' (or pip install onnx)") from None
    frozen = tuple(sorted((k, tuple(s), d) for k, (s, d) in inputs.items()))
    return _import(str(p), hashlib.sha256(data).hexdigest(), data, frozen)


_CACHE: dict[tuple[str, str, Any], ImportedSpec] = {}


def _import(path: str, digest: str, data: bytes, frozen: tuple[tuple[str, Shape, str], ...]) -> ImportedSpec:
    key = (path, digest, frozen)
    if key not in _CACHE:
        _CACHE[key] = _convert(path, digest, load_checked(data, path), {k: (s, d) for k, s, d in frozen})
    return _CACHE[key]


def load_checked(data: bytes, path: str) -> Any:
    """The ``onnx.ModelProto`` in ``data``, checked: readable, not empty, a supported opset,
    weights inside the file, ``onnx.checker`` passed."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise DlbenchError(f"{path}: not a readable ONNX model (corrupt or truncated: {_first(exc)}): "
                           "export it again") from None
    if not model.graph.node:
        raise DlbenchError(f"{path}: not an ONNX model, or a truncated one (no graph nodes): export it again")
    newest = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            if imp.version > newest:
                raise DlbenchError(f"{path}: opset {imp.version} is newer than the installed onnx "
                                   f"{onnx.__version__} reads (up to {newest}): export with an opset "
                                   f"from {MIN_OPSET} to {newest} (e.g. torch.onnx.export(..., opset_version=17))")
            if imp.version < MIN_OPSET:
                raise DlbenchError(f"{path}: opset {imp.version} is older than {MIN_OPSET}, the oldest "
                                   f"read: export with an opset from {MIN_OPSET} to {newest}")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise DlbenchError(f"{path}: its weights are in external data files: save the model as one "
                           "file (onnx.save_model(model, path, save_as_external_data=False))")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise DlbenchError(f"{path}: fails onnx.checker (corrupt or truncated: {_first(exc)}): "
                           "export it again") from None
    return model


def _first(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _convert(path: str, digest: str, model: Any, inputs: TaskInputs) -> ImportedSpec:
    from onnx import numpy_helper, shape_inference

    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes: list[OnnxNode] = []
    for n in graph.node:
        attrs = _attrs(n)
        if n.op_type == "Constant" and "value" in attrs:
            consts[n.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        if _fold(n, consts):
            continue
        nodes.append(OnnxNode(n.op_type, n.name, tuple(n.input), tuple(n.output), attrs))
    _mark_reshape_ranks(nodes, shape_inference, model)
    notes: list[str] = []
    if len(graph.output) != 1:
        raise DlbenchError(f"{path}: {len(graph.output)} outputs; dlbench models have one: export "
                           "the model with a single output")
    fetch = graph.output[0].name
    producer = {o: i for i, n in enumerate(nodes) for o in n.outputs}
    if fetch in producer and nodes[producer[fetch]].op == "Softmax":
        fetch = nodes[producer[fetch]].inputs[0]
        notes.append(f"{Path(path).name}: its trailing Softmax was dropped (dlbench's models output "
                     "logits; the losses apply the softmax)")
    conv = Converter(_spec_name(path, digest), consts, nodes)
    feeds = _inputs(path, graph, consts, inputs, conv, notes)
    bad = conv.run(_live(nodes, producer, fetch))
    if bad:
        shown = ", ".join(bad[:SHOWN]) + (f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else "")
        raise DlbenchError(f"{path}: {len(bad)} ONNX node(s) dlbench cannot import: {shown}; it imports "
                           f"{', '.join(SUPPORTED)}: export the model without the others")
    out = conv.values.get(fetch)
    if out is None or out.layout in ("perm", "broken"):
        raise DlbenchError(f"{path}: its output {fetch!r} is not computed by supported nodes, or is a "
                           "flattened feature map: end the model with a Gemm/MatMul layer")
    spec = ImportedSpec(conv.name, tuple(conv.nodes), out.node, source=path,
                        weights={k: np.asarray(v, np.float32) for k, v in conv.weights.items()},
                        notes=tuple(notes + conv.notes), feeds=feeds, fetch=fetch, fetch_layout=out.layout)
    check_weights(spec, spec.weights)
    return spec


def _fold(node: Any, consts: dict[str, np.ndarray]) -> bool:
    """Evaluate a node whose inputs are all constants (a weight's Transpose, a Cast...) with
    ``onnx.reference``, adding its outputs to ``consts``; False when it is not one or fails."""
    ins = [i for i in node.input if i]
    if not ins or not all(i in consts for i in ins) or node.domain not in ("", "ai.onnx"):
        return False
    from onnx.reference import ReferenceEvaluator

    try:
        outs = ReferenceEvaluator(node).run(None, {i: consts[i] for i in ins})
    except Exception:  # noqa: BLE001 - not foldable here: the node is converted (or reported)
        return False
    consts.update({name: np.asarray(v) for name, v in zip(node.output, outs, strict=False) if name})
    return True


def _spec_name(path: str, digest: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(path).stem).strip("-")[:40] or "model"
    return f"onnx-{stem}-{digest[:12]}"


def _mark_reshape_ranks(nodes: list[OnnxNode], shape_inference: Any, model: Any) -> None:
    """Give each Reshape with a computed shape the rank ONNX shape inference finds for it."""
    if not any(n.op == "Reshape" for n in nodes):
        return
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is a hint; without it computed shapes are refused
        return
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
             (*inferred.graph.value_info, *inferred.graph.output) if v.type.tensor_type.HasField("shape")}
    for i, n in enumerate(nodes):
        if n.op == "Reshape" and n.outputs[0] in ranks:
            nodes[i] = OnnxNode(n.op, n.name, n.inputs, n.outputs, {**n.attrs, "_inferred_rank": ranks[n.outputs[0]]})


def _live(nodes: list[OnnxNode], producer: Mapping[str, int], fetch: str) -> set[int]:
    """The nodes the output needs (a Reshape's shape input and what computes it do not count)."""
    live: set[int] = set()
    todo = [fetch]
    while todo:
        i = producer.get(todo.pop())
        if i is None or i in live:
            continue
        live.add(i)
        n = nodes[i]
        todo.extend(n.inputs[:1] if n.op == "Reshape" else n.inputs)
    return live


def _dims(value: Any) -> list[int | str]:
    dims: list[int | str] = []
    for d in value.type.tensor_type.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?"))
    return dims


ONNX_DTYPES = {1: "float32", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


def _inputs(path: str, graph: Any, consts: Mapping[str, Any], task: TaskInputs, conv: Converter,
            notes: list[str]) -> tuple[Feed, ...]:
    """Match the file's inputs with the task's, add the spec's Input nodes, return the feeds."""
    from dlbench.onnx_ops import Value

    file_inputs = [v for v in graph.input if v.name not in consts]
    if len(file_inputs) == 1 and len(task) == 1:
        pairs = [(next(iter(task)), file_inputs[0])]
    else:
        by_name = {v.name: v for v in file_inputs}
        missing = [k for k in task if k not in by_name]
        if missing or len(file_inputs) != len(task):
            raise DlbenchError(f"{path}: inputs {[v.name for v in file_inputs]}, the task gives "
                               f"{list(task)}: export the model with the task's input names")
        pairs = [(k, by_name[k]) for k in task]
    bound: dict[str, int] = {}
    feeds = []
    for spec_name, v in pairs:
        shape, dtype = task[spec_name]
        dims = _dims(v)
        want = ("N", *shape)
        onnx_dtype = ONNX_DTYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type))
        if (dtype == "float32") != onnx_dtype.startswith("float") or onnx_dtype == "float16":
            raise DlbenchError(f"{path}: input {v.name!r} is {onnx_dtype}, the task feeds {dtype}: "
                               "export the model with a float32 input (int32/int64 for ids)")
        if len(dims) != len(shape) + 1:
            raise DlbenchError(f"{path}: input {v.name!r} has shape {_shape(dims)}, the task feeds "
                               f"{_shape(want)}: export the model for the task's input shape")
        if isinstance(dims[0], int):
            raise DlbenchError(f"{path}: input {v.name!r} has a fixed batch of {dims[0]} {_shape(dims)}: "
                               "export it with a dynamic batch axis (torch.onnx.export(..., "
                               f"dynamic_axes={{{v.name!r}: {{0: 'batch'}}}}))")
        uses_conv = any(n.op == "Conv" and v.name in n.inputs for n in conv.onnx_nodes)
        layouts = ["cf", "same"] if uses_conv or len(shape) == 3 else ["same", "cf"]
        if dtype != "float32" or len(shape) < 2:
            layouts = ["same"]
        layout = next((lay for lay in layouts if _fits(dims[1:], _order(shape, lay))), None)
        if layout is None:
            lay = layouts[0]
            raise DlbenchError(f"{path}: input {v.name!r} has shape {_shape(dims)}, the task feeds "
                               f"{_shape(('N', *_order(shape, lay)))}{' (channels-first)' if lay == 'cf' else ''}: "
                               "export the model for the task's input shape, or set the task's "
                               "shape parameters (e.g. image_size, channels) to the model's")
        for d, size in zip(dims[1:], _order(shape, layout), strict=True):
            if isinstance(d, str):
                if bound.setdefault(d, size) != size:
                    raise DlbenchError(f"{path}: dynamic axis {d!r} would be {bound[d]} and {size} for "
                                       "the task's inputs: export the model with separate axes or fixed sizes")
                notes.append(f"{Path(path).name}: dynamic axis {d!r} of input {v.name!r} set to the task's {size}")
        node = conv.add("Input", spec_name, (), shape=tuple(shape), dtype=dtype)
        conv.values[v.name] = Value(node, layout)
        feeds.append(Feed(spec_name, v.name, layout, "int64" if onnx_dtype == "int64" else onnx_dtype))
    return tuple(feeds)


def _shape(dims: Any) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


def _order(shape: Shape, layout: str) -> Shape:
    return (shape[-1], *shape[:-1]) if layout == "cf" else tuple(shape)


def _fits(dims: list[int | str], shape: Shape) -> bool:
    return all(isinstance(d, str) or d == s for d, s in zip(dims, shape, strict=True))


def run_original(spec: ImportedSpec, xs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The original file's output for the canonical inputs ``xs``, in ONNX Runtime (CPU), in
    the spec's layout (before a Softmax the import dropped): the reference of parity."""
    import onnx
    import onnxruntime as ort

    model = onnx.load_model_from_string(Path(spec.source).read_bytes())
    if spec.fetch not in {o.name for o in model.graph.output}:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(spec.fetch))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {}
    for f in spec.feeds:
        x = np.asarray(xs[f.spec_name])
        if f.layout == "cf":
            x = np.transpose(x, (0, x.ndim - 1, *range(1, x.ndim - 1)))
        feeds[f.onnx_name] = np.ascontiguousarray(x.astype(f.dtype))
    out = np.asarray(session.run([spec.fetch], feeds)[0])
    if spec.fetch_layout == "cf":
        out = np.transpose(out, (0, *range(2, out.ndim), 1))
    elif spec.fetch_layout == "pooled":
        out = out.reshape(len(out), -1)
    return out
