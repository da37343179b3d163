"""Helpers of the ONNX import (:mod:`dlbench.onnx_ops`): the decoded node record, the erf-form
GELU pattern, and the attribute checks of windows and paddings."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlbench.spec import Shape, same_padding


@dataclass(frozen=True)
class OnnxNode:
    """One ONNX node, decoded (attributes as Python values)."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)



class Unsupported(Exception):
    """This node cannot become spec nodes; the message says why (collected, reported once)."""



def find_gelus(nodes: list[OnnxNode], consts: Mapping[str, np.ndarray],
               consumers: Mapping[str, list[int]]) -> tuple[dict[int, str], set[int]]:
    """Every 0.5 x (1 + erf(x / sqrt 2)), in the orders exporters write it: the index of the node
    that divides by sqrt 2 -> the value that is the GELU's output, and the indices of the rest of
    each pattern (consumed)."""
    def sole(value: str) -> OnnxNode | None:
        users = consumers.get(value, [])
        return nodes[users[0]] if len(users) == 1 else None

    gelus: dict[int, str] = {}
    chained: set[int] = set()
    for i, first in enumerate(nodes):
        found = _gelu_at(first, nodes, consts, sole, consumers)
        if found is not None:
            gelus[i] = found[0]
            chained.update(nodes.index(c) for c in found[1])
    return gelus, chained


def _gelu_at(first: OnnxNode, nodes: list[OnnxNode], consts: Mapping[str, np.ndarray],
             sole: Callable[[str], OnnxNode | None], consumers: Mapping[str, list[int]]
             ) -> tuple[str, list[OnnxNode]] | None:
    if first.op not in ("Div", "Mul") or len(first.inputs) != 2:
        return None
    c = scalar(consts, first.inputs[1])
    if c is None or not ((first.op == "Div" and abs(c - math.sqrt(2.0)) < 1e-4)
                         or (first.op == "Mul" and abs(c - 1.0 / math.sqrt(2.0)) < 1e-4)):
        return None
    x = first.inputs[0]
    erf = sole(first.outputs[0])
    add = sole(erf.outputs[0]) if erf is not None and erf.op == "Erf" else None
    if erf is None or add is None or add.op != "Add" \
            or scalar(consts, other_input(add, erf.outputs[0])) != 1.0:
        return None
    m1 = sole(add.outputs[0])
    if m1 is None or m1.op != "Mul":
        return None
    other = other_input(m1, add.outputs[0])
    if other == x or scalar(consts, other) == 0.5:  # then * 0.5, or * x
        m2 = sole(m1.outputs[0])
        o2 = other_input(m2, m1.outputs[0]) if m2 is not None and m2.op == "Mul" else None
        if m2 is None or o2 is None or not (scalar(consts, o2) == 0.5 if other == x else o2 == x):
            return None
        return m2.outputs[0], [erf, add, m1, m2]
    half = next((h for h in nodes if other in h.outputs), None)  # (0.5 x) * (1 + erf)
    if half is None or half.op != "Mul" or scalar(consts, other_input(half, x)) != 0.5 \
            or len(consumers.get(half.outputs[0], [])) != 1:
        return None
    return m1.outputs[0], [erf, add, m1, half]


def other_input(n: OnnxNode, known: str) -> str | None:
    """The input of a two-input node that is not ``known`` (None when ``known`` is not one)."""
    if len(n.inputs) != 2 or known not in n.inputs:
        return None
    a, b = n.inputs
    return b if a == known else a


def scalar(consts: Mapping[str, np.ndarray], name: str | None) -> float | None:
    if name is None or name not in consts or consts[name].size != 1:
        return None
    return round(float(consts[name].reshape(())), 6)


def square(n: OnnxNode, attr: str, default: list[int] | None) -> int:
    vals = list(n.attrs.get(attr, default or []))
    if not vals or len(set(vals)) != 1:
        raise Unsupported(f"{attr}={vals}: only square windows and equal strides")
    return int(vals[0])


def conv_padding(n: OnnxNode, grid: Shape, k: int, stride: int) -> str | int:
    """The spec padding an ONNX convolution's ``pads``/``auto_pad`` mean on this grid."""
    auto = n.attrs.get("auto_pad", "NOTSET")
    if auto == "SAME_UPPER":
        return "same"
    if auto == "VALID":
        return "valid"
    if auto != "NOTSET":
        raise Unsupported(f"auto_pad={auto}")
    pads = list(n.attrs.get("pads", [0] * 2 * len(grid)))
    begins, ends = pads[: len(grid)], pads[len(grid):]
    if set(pads) == {0}:
        return "valid"
    if len(set(pads)) == 1:
        return int(pads[0])
    if all((b, e) == same_padding(s, k, stride) for b, e, s in zip(begins, ends, grid, strict=True)):
        return "same"
    raise Unsupported(f"pads={pads}: only symmetric padding or TensorFlow's same")
