"""Attacks in embedding space (NLP, recommendation) without per-framework code.

Token and id inputs are discrete, so gradient attacks perturb what the model computes from
them: the outputs of its ``Embedding`` nodes. :func:`split_spec` cuts the neutral spec there:

* each attacked ``Embedding`` node (the task's ``PerturbationDomain.embedding_nodes``, with the
  ``PositionEmbedding`` that reads it when that is its only reader) becomes a float ``Input``
  node of the same name and shape (a *cut*); id inputs that no other node reads disappear;
  masks, other embeddings (e.g. the per-user and per-item biases of matrix factorisation) and
  every other node stay;
* the remainder is a derived :class:`~dlbench.spec.ModelSpec` with the canonical weights minus
  the embedding tables, built on the cell's framework like any spec, so input-gradient attacks
  (ART's, through :mod:`dlbench.robustness.estimator`) apply;
* :func:`lookup` computes the cut values in NumPy from the canonical tables (``table[ids]``, plus
  ``positions[:L]``), so the remainder on the cut values equals the full model on the ids.

The remainder's other inputs (masks, ids read by embeddings not attacked) are side inputs
that stay fixed.

:class:`EmbeddingCodec` lays an example out for ART as a square single-channel image
``(s, s, 1)``: the features of the attacked cuts, flattened and *divided by the example's
embedding norm* (the L2 norm of its attacked features, real tokens only), so an L2 budget
``eps`` is a budget of ``eps`` times the example's own embedding norm (as in adversarial
personalised ranking); then zero padding; then, in the last cells, the example's position in the
evaluation set as bits (``+-level``, with ``level`` above any epsilon used), from which the codec
recovers its side inputs and norm even when an attack reorders or subsets rows. (A square
layout because ART's L2 Square attack needs square images; its square windows carry no meaning
for embeddings, where it is a generic score-based search.) :meth:`EmbeddingCodec.attack_mask`
is the per-example mask of the features attacks may move: every attack's result is projected
onto it (:func:`dlbench.robustness.attacks.keep_fixed`), so padding tokens, padding cells and the
code never move. Inside an ART call, APGD (one mask for all examples, an unmasked random start)
and Square (no mask) may move them: code cells by at most ``eps`` each, which never flips a bit,
and padding features, which the model ignores (their gradient is zero, masked pooling and
attention never read them), so the projection leaves the model's outputs as they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dlbench.errors import UnsupportedError
from dlbench.measure.parity import mask_inputs
from dlbench.robustness.estimator import Codec
from dlbench.spec import ModelSpec, Node


@dataclass(frozen=True)
class Cut:
    """One embedding lookup replaced by a float input: ``name`` is the cut's input name."""

    name: str
    embedding: str
    ids: str
    position: str | None
    shape: tuple[int, ...]


@dataclass(frozen=True)
class EmbeddingSplit:
    spec: ModelSpec
    """The remainder: cut inputs, the original inputs still read, and every other node."""
    cuts: tuple[Cut, ...]
    attacked: tuple[str, ...]
    """Names of the cuts attacks perturb."""

    def weights(self, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The remainder's weights: all but the embedding and position tables."""
        drop = {c.embedding for c in self.cuts} | {c.position for c in self.cuts if c.position}
        return {k: v for k, v in weights.items() if k.rsplit(".", 1)[0] not in drop}


def split_spec(spec: ModelSpec, attacked_embeddings: Sequence[str]) -> EmbeddingSplit:
    """Cut ``spec`` at the Embedding nodes named in ``attacked_embeddings``."""
    shapes = spec.shapes()
    readers: dict[str, list[Node]] = {}
    for n in spec.nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    embeddings = [n.name for n in spec.nodes if n.op == "Embedding"]
    unknown = sorted(set(attacked_embeddings) - set(embeddings))
    if unknown or not attacked_embeddings:
        raise UnsupportedError(
            f"embedding nodes {unknown or '(none)'} to attack are not Embedding nodes "
            f"of spec {spec.name!r}: choose among {', '.join(embeddings) or '(none)'}"
        )
    cuts: list[Cut] = []
    removed: set[str] = set()
    for n in spec.nodes:
        if n.op != "Embedding" or n.name not in attacked_embeddings:
            continue
        position = None
        users = readers.get(n.name, [])
        if len(users) == 1 and users[0].op == "PositionEmbedding":
            position = users[0].name
        name = position or n.name
        cuts.append(Cut(name, n.name, n.inputs[0], position, tuple(shapes[name])))
        removed |= {n.name} | ({position} if position else set())
    cut_names = {c.name for c in cuts}
    body = [n for n in spec.nodes if n.op != "Input" and n.name not in removed]
    read = {i for n in body for i in n.inputs}
    new_inputs = [Node(c.name, "Input", (), {"shape": c.shape, "dtype": "float32"}) for c in cuts]
    kept = [n for n in spec.nodes if n.op == "Input" and n.name in read and n.name not in cut_names]
    derived = ModelSpec(
        f"{spec.name}-from-embeddings", tuple(new_inputs + kept + body), spec.output
    )
    derived.shapes()  # validates the graph
    return EmbeddingSplit(derived, tuple(cuts), tuple(c.name for c in cuts))


def lookup(
    split: EmbeddingSplit, weights: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The remainder's inputs for original ``inputs``: cut values in NumPy plus kept inputs."""
    out: dict[str, np.ndarray] = {}
    for c in split.cuts:
        ids = np.asarray(inputs[c.ids]).astype(np.int64)
        v = np.asarray(weights[f"{c.embedding}.embeddings"], np.float32)[ids]
        if c.position:
            v = v + np.asarray(weights[f"{c.position}.positions"], np.float32)[: ids.shape[-1]]
        out[c.name] = v.astype(np.float32)
    for name in split.spec.inputs:
        if name not in out:
            out[name] = np.asarray(inputs[name])
    return out


class EmbeddingCodec(Codec):
    """ART layout of the attacked cuts of a fixed evaluation set (see the module docstring)."""

    def __init__(
        self, split: EmbeddingSplit, values: Mapping[str, np.ndarray], max_eps: float
    ) -> None:
        self.split = split
        self.n = len(next(iter(values.values())))
        attacked = [c for c in split.cuts if c.name in split.attacked]
        if not attacked:
            raise UnsupportedError("no attacked embedding: set PerturbationDomain.embedding_nodes")
        self.layout: list[tuple[str, int, int, tuple[int, ...]]] = []  # name, offset, size, shape
        offset = 0
        for c in attacked:
            size = int(np.prod(c.shape))
            self.layout.append((c.name, offset, size, c.shape))
            offset += size
        self.features = offset
        self.bits = max(1, int(self.n).bit_length())
        side = int(np.ceil(np.sqrt(self.features + self.bits)))
        self.shape = (side, side, 1)
        self.cells = side * side
        self.level = 4.0 * float(max_eps) + 1.0
        self.bound = 2.0 * self.level + 1.0
        """A range no attack reaches (ART's Square attack needs clip values)."""
        self.side = {k: np.asarray(v) for k, v in values.items() if k not in split.attacked}
        self.real = self._real(values)  # (n, features): 1 for features of real tokens
        flat = self._flat(values)
        norms = np.sqrt(np.sum(flat.astype(np.float64) ** 2 * self.real, axis=1))
        self.norm = np.maximum(norms, 1e-12).astype(np.float32)
        x0 = np.zeros((self.n, self.cells), np.float32)
        x0[:, : self.features] = flat / self.norm[:, None]
        x0[:, self.cells - self.bits :] = self._code(np.arange(self.n))
        self.x0 = x0.reshape((self.n, *self.shape))

    # -- layout -----------------------------------------------------------------------------------
    def _flat(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(values.values())))
        out = np.zeros((n, self.features), np.float32)
        for name, off, size, _ in self.layout:
            out[:, off : off + size] = np.asarray(values[name], np.float32).reshape(n, size)
        return out

    def _real(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Features of real tokens: a spec mask input of the cut's sequence shape marks them."""
        masks = mask_inputs(self.split.spec)
        real = np.ones((self.n, self.features), np.float32)
        for _, off, size, shape in self.layout:
            match = [
                m for m in masks if tuple(self.split.spec.inputs[m].attrs["shape"]) == shape[:-1]
            ]
            if len(match) == 1:
                m = np.asarray(values[match[0]], np.float32)[..., None]
                real[:, off : off + size] = np.broadcast_to(m, (self.n, *shape)).reshape(
                    self.n, size
                )
        return real

    def _code(self, index: np.ndarray) -> np.ndarray:
        bits = (index[:, None] >> np.arange(self.bits)[None, :]) & 1
        return np.where(bits > 0, self.level, -self.level).astype(np.float32)

    def index(self, x: np.ndarray) -> np.ndarray:
        """Evaluation-set positions of rows ``x`` (from the code cells). Rows that carry no code
        (ART probes the estimator with arrays of ones) borrow the first example's side inputs."""
        code = np.asarray(x).reshape(len(x), -1)[:, self.cells - self.bits :]
        idx = ((code > 0).astype(np.int64) << np.arange(self.bits)[None, :]).sum(axis=1)
        foreign = np.any(np.abs(code) < self.level / 2, axis=1) | (idx >= self.n)
        return np.where(foreign, 0, idx)

    def attack_mask(self, per_example: bool = True) -> np.ndarray:
        """1 where attacks may move ``x``: features of real tokens of attacked cuts
        (``per_example=False``: every attacked feature, one mask for all examples)."""
        if per_example:
            m = np.zeros((self.n, self.cells), np.float32)
            m[:, : self.features] = self.real
            return m.reshape((self.n, *self.shape))
        m = np.zeros((1, self.cells), np.float32)
        m[:, : self.features] = 1.0
        return m.reshape((1, *self.shape))

    # -- Codec ------------------------------------------------------------------------------------
    def decode(self, x: np.ndarray) -> dict[str, np.ndarray]:
        flat = np.asarray(x, np.float32).reshape(len(x), -1)
        idx = self.index(x)
        scale = self.norm[idx][:, None]
        out: dict[str, np.ndarray] = {}
        for name, off, size, shape in self.layout:
            out[name] = (flat[:, off : off + size] * scale).reshape((len(x), *shape))
        for name, v in self.side.items():
            out[name] = v[idx]
        return out

    def encode_grad(self, x: np.ndarray, grads: Mapping[str, np.ndarray]) -> np.ndarray:
        idx = self.index(x)
        scale = self.norm[idx][:, None]
        g = np.zeros((len(x), self.cells), np.float32)
        for name, off, size, _ in self.layout:
            g[:, off : off + size] = (
                np.asarray(grads[name], np.float32).reshape(len(x), size) * scale
            )
        return g.reshape(np.shape(x))
