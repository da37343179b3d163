"""Embedding attacks on shared rows: adversarial personalised ranking (He et al., SIGIR 2018).

In recommendation one user's embedding row is read by every candidate pair of that user, and
one item's row by every user scored on it. APR perturbs the *rows*: the attacked variables are
the rows of the attacked embedding tables that the evaluation set looks up; every pair sees the
delta of its own user row and item row, so one user's pairs all see the same user delta, and
the gradient w.r.t. a row is the sum of its pairs' loss gradients (the loss of the evaluation
set is the sum over its pairs). A task asks for this with ``PerturbationDomain.shared_rows``.

:class:`RowCodec` lays the rows out for ART, one ART example per row ``(width,)``: the rows of
the first attacked table (ids in increasing order), then the next table's (zero-padded to the
widest table; a mask keeps the padding fixed). With the ``relative`` budget each row is divided
by its own L2 norm, so ART's per-example L2 ball of radius ``eps`` is ``eps`` times the row's
trained norm; with the ``absolute`` budget rows are taken as they are and ``eps`` is an L2 length
in embedding units. The whole row set is one ART batch (:meth:`RowCodec.rows`), so every row
moves at once: one joint perturbation of the tables, per-row budgets as in APR.

:func:`row_estimator` is the ART regressor over those rows: it decodes the rows into every
pair's cut values (plus the fixed side inputs, e.g. the bias ids of matrix factorisation), runs
the model on the pairs in padded batches and scatter-adds each pair's input gradient into its
rows. Outputs are per pair, in evaluation-set order.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlbench.errors import UnsupportedError
from dlbench.framework import Model
from dlbench.robustness.embedding import Cut, EmbeddingSplit, lookup
from dlbench.robustness.estimator import Codec, bucket_sizes, estimator_classes, per_example_loss

BUDGET_MODES = ("relative", "absolute")


@dataclass(frozen=True)
class RowTable:
    """The rows of one attacked table that an evaluation set reads."""

    cut: Cut
    ids: np.ndarray
    """Table row ids, increasing (``(R_t,)``)."""
    offset: int
    """Position of the first of them in the row layout."""
    index: np.ndarray
    """Layout position of every lookup of every pair (``(pairs, *ids shape)``)."""


def norm_stats(weights: Mapping[str, np.ndarray], split: EmbeddingSplit) -> dict[str, float]:
    """Mean and median L2 row norm of each attacked trained table (all its rows):
    ``embedding_norm_mean_<table>``, ``embedding_norm_median_<table>``."""
    out: dict[str, float] = {}
    for c in split.cuts:
        if c.name not in split.attacked:
            continue
        norms = np.linalg.norm(np.asarray(weights[f"{c.embedding}.embeddings"], np.float64), axis=1)
        out[f"embedding_norm_mean_{c.embedding}"] = float(norms.mean())
        out[f"embedding_norm_median_{c.embedding}"] = float(np.median(norms))
    return out


class RowCodec(Codec):
    """ART layout of the shared embedding rows of a fixed set of pairs (module docstring)."""

    def __init__(
        self,
        split: EmbeddingSplit,
        weights: Mapping[str, np.ndarray],
        inputs: Mapping[str, np.ndarray],
        targets: np.ndarray,
        mode: str = "relative",
    ) -> None:
        if mode not in BUDGET_MODES:
            raise UnsupportedError(f"budget={mode!r}: choose one of {', '.join(BUDGET_MODES)}")
        attacked = [c for c in split.cuts if c.name in split.attacked]
        if not attacked:
            raise UnsupportedError("no attacked embedding: set PerturbationDomain.embedding_nodes")
        moving = [c.name for c in attacked if c.position]
        if moving:
            raise UnsupportedError(
                f"shared-row attacks perturb table rows; {moving} add position embeddings: "
                "attack them per example (PerturbationDomain.shared_rows=False)"
            )
        self.split, self.weights, self.mode = split, weights, mode
        self.inputs = {k: np.asarray(v) for k, v in inputs.items()}
        self.targets = np.asarray(targets)
        self.n = len(self.targets)
        self.width = max(c.shape[-1] for c in attacked)
        tables: list[RowTable] = []
        blocks: list[np.ndarray] = []
        offset = 0
        for c in attacked:
            ids = self.inputs[c.ids].astype(np.int64)
            uniq, inverse = np.unique(ids, return_inverse=True)
            rows = np.zeros((len(uniq), self.width), np.float32)
            rows[:, : c.shape[-1]] = np.asarray(weights[f"{c.embedding}.embeddings"], np.float32)[uniq]
            blocks.append(rows)
            tables.append(RowTable(c, uniq, offset, offset + inverse.reshape(ids.shape)))
            offset += len(uniq)
        self.tables = tuple(tables)
        self.rows = offset
        clean = np.concatenate(blocks)
        self.valid = np.zeros((self.rows, self.width), np.float32)
        for t in self.tables:
            self.valid[t.offset : t.offset + len(t.ids), : t.cut.shape[-1]] = 1.0
        norms = np.linalg.norm(clean.astype(np.float64), axis=1)
        self.scale = (
            np.maximum(norms, 1e-12) if mode == "relative" else np.ones(self.rows)
        ).astype(np.float32)
        self.shape = (self.width,)
        self.x0 = clean / self.scale[:, None]
        self.side = {
            k: v for k, v in lookup(split, weights, self.inputs).items() if k not in split.attacked
        }

    def subset(self, pairs: np.ndarray) -> RowCodec:
        """The codec of some of the pairs (their rows only, in the same budget mode)."""
        pairs = np.asarray(pairs)
        return RowCodec(
            self.split,
            self.weights,
            {k: v[pairs] for k, v in self.inputs.items()},
            self.targets[pairs],
            self.mode,
        )

    def row_ids(self) -> dict[str, np.ndarray]:
        """Table row id of every layout position, per table (``{embedding: ids}``)."""
        return {t.cut.embedding: t.ids for t in self.tables}

    # -- Codec ------------------------------------------------------------------------------------
    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32).reshape(len(x), -1)
        if x.shape != (self.rows, self.width):
            raise UnsupportedError(
                f"the shared-row attack space is {self.rows} rows of {self.width}; got "
                f"{x.shape}: an attack must see every row at once (batch size >= {self.rows})"
            )
        return x

    def decode(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every pair's cut values (rows with their deltas, looked up) and its side inputs."""
        values = self._check(x) * self.scale[:, None]
        out = {
            t.cut.name: values[t.index][..., : t.cut.shape[-1]].astype(np.float32)
            for t in self.tables
        }
        out.update(self.side)
        return out

    def encode_grad(self, x: np.ndarray, grads: Mapping[str, np.ndarray]) -> np.ndarray:
        """Per-pair gradients w.r.t. the cut values -> per-row sums (in attack units)."""
        g = np.zeros((self.rows, self.width), np.float64)
        for t in self.tables:
            k = t.cut.shape[-1]
            pair_grads = np.asarray(grads[t.cut.name], np.float64).reshape(-1, k)
            np.add.at(g[:, :k], t.index.reshape(-1), pair_grads)
        return (g * self.scale[:, None]).astype(np.float32).reshape(np.shape(x))


@functools.lru_cache(maxsize=1)
def _row_regressor() -> type:
    _, regressor = estimator_classes()

    class RowRegressor(regressor):  # type: ignore[misc, valid-type]
        """ART regressor whose examples are shared embedding rows; outputs are per pair."""

        codec: RowCodec

        def _pair_batches(self, inputs: Mapping[str, np.ndarray]) -> Any:
            for start, stop, padded in bucket_sizes(self.codec.n, self.max_batch):
                idx = self._rows(self.codec.n, start, stop, padded)
                yield start, stop, idx, {k: v[idx] for k, v in inputs.items()}

        def model_outputs(self, x: np.ndarray, defended: bool = True) -> np.ndarray:
            outs = []
            for start, stop, _, batch in self._pair_batches(self.codec.decode(x)):
                native = self.dl_model.forward(self.dl_model.to_device(batch))
                outs.append(np.asarray(self.dl_model.to_numpy(native))[: stop - start])
                self.calls["forward"] += 1
            if not outs:
                return np.zeros((0,), np.float32)
            return np.concatenate(outs).astype(np.float32)

        def _gradients(self, x: np.ndarray, targets: np.ndarray, fn: Any) -> np.ndarray:
            """``targets`` (one per row, from ART) are ignored: the pairs carry their own."""
            inputs = self.codec.decode(x)
            names = [t.cut.name for t in self.codec.tables]
            pair_grads = {k: np.zeros(np.shape(inputs[k]), np.float32) for k in names}
            for start, stop, idx, batch in self._pair_batches(inputs):
                g = fn(batch, self.codec.targets[idx])
                for k in names:
                    pair_grads[k][start:stop] = np.asarray(g[k], np.float32)[: stop - start]
                self.calls["gradient"] += 1
            return self.codec.encode_grad(x, pair_grads)

        def compute_loss(
            self, x: np.ndarray, y: np.ndarray, reduction: str = "mean", **kwargs: Any
        ) -> np.ndarray | float:
            """The pairs' losses (``y`` ignored, as in :meth:`_gradients`)."""
            losses = per_example_loss(self.model_outputs(x), self.codec.targets, self.loss_name)
            if reduction == "none":
                return losses.astype(np.float32)
            return float(losses.sum() if reduction == "sum" else losses.mean())

    return RowRegressor


def row_estimator(model: Model, codec: RowCodec, max_batch: int = 128) -> Any:
    """The ART regressor over ``codec``'s rows (regression and ranking-score models only)."""
    if model.options.train.loss == "cross_entropy":
        raise UnsupportedError(
            "shared-row embedding attacks are for score models (ratings, ranking): "
            "a classifier is attacked per example (PerturbationDomain.shared_rows=False)"
        )
    return _row_regressor()(model, codec, None, None, max_batch)
