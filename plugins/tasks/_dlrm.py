"""DLRM specs and MovieLens side features for the recsys task. Not a plugin.

DLRM (Naumov et al., 2019): dense features through a bottom MLP (ReLU) to a vector of the
embedding dimension; every sparse feature through its own embedding table; the pairwise dot
products of those vectors (:meth:`SpecBuilder.dot_interaction`, ``k (k - 1) / 2`` of them)
concatenated to the bottom MLP's output; a top MLP (ReLU) to one logit.

Sizes:

* ``mlperf``: MLPerf Training's DLRM on Criteo Terabyte (the reference ``dlrm_s_pytorch.py
  --max-ind-range=40000000``): 13 dense features, bottom 13-512-256-128, 26 one-hot tables of
  dimension 128 (EmbeddingBag with bags of one, as the reference), top 479-1024-1024-512-256-1.
  The table sizes are :data:`MLPERF_TABLES` capped at ``table_rows`` (all 26 at full size hold
  204M rows, 104 GB in fp32): the MLPs and the interaction are MLPerf's, the lookups touch
  smaller tables. For speed cells only (Criteo is not a registered dataset).
* ``tiny``: MovieLens 100K. Sparse features, each a table of ``factors`` dims: the user id and the
  item id (Embedding nodes ``user_embedding``/``item_embedding``, the ones the embedding attack
  perturbs), the item's genres as a multi-hot bag (EmbeddingBag, sum over up to
  :data:`GENRE_BAG` genres with a mask), the user's age bucket (MovieLens 1M's seven), gender and
  occupation (21). Dense features (:data:`DENSE_FEATURES`): age / 100, release year
  ``(year - 1900) / 100`` (the mean year where unknown), and ``log1p`` of the user's and of the
  item's number of training positives (ratings for ``rating``) over the largest such count.
  Bottom 4-64-``factors``, top ``factors + 21``-128-64-1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlbench.api import DatasetError, ModelSpec, SpecBuilder

MLPERF_TABLES = (39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346,
                 10, 2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108,
                 36)
"""Rows of MLPerf DLRM's 26 tables (Criteo Terabyte, ids hashed below 40M)."""
MLPERF_DENSE = 13
MLPERF_DIM = 128
MLPERF_BOTTOM = (512, 256, 128)
MLPERF_TOP = (1024, 1024, 512, 256)

GENRE_BAG = 6
"""Most genres of one MovieLens 100K movie."""
N_GENRES = 19
AGE_EDGES = (18, 25, 35, 45, 50, 56)
"""MovieLens 1M's age groups: under 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56 and over."""
OCCUPATIONS = ("administrator", "artist", "doctor", "educator", "engineer", "entertainment",
               "executive", "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none",
               "other", "programmer", "retired", "salesman", "scientist", "student", "technician",
               "writer")
DENSE_FEATURES = ("age", "release_year", "user_activity", "item_popularity")
TINY_BOTTOM = (64,)
TINY_TOP = (128, 64)


@dataclass(frozen=True)
class SparseFeature:
    """One embedding table: input ``name`` of ``bag`` ids below ``rows``; ``bag`` > 1 is a
    multi-hot EmbeddingBag (with ``<name>_mask`` when ``masked``), ``one_hot`` an Embedding."""

    name: str
    rows: int
    bag: int = 1
    masked: bool = False
    one_hot: bool = False


def dlrm_spec(name: str, dense: int, sparse: Sequence[SparseFeature], dim: int,
              bottom: Sequence[int], top: Sequence[int]) -> ModelSpec:
    """DLRM over input ``dense`` (float32 ``(dense,)``) and one int32 input per sparse feature."""
    b = SpecBuilder(name)
    x = b.input("dense", (dense,))
    for i, units in enumerate((*bottom, dim)):
        x = b.dense(x, units, "relu", name=f"bottom{i}")
    vectors = [x]
    for f in sparse:
        ids = b.input(f.name, (f.bag,), "int32")
        if f.one_hot:
            table = b.embedding(ids, f.rows, dim, name=f"{f.name}_embedding")
            vectors.append(b.flatten(table, name=f"{f.name}_vector"))
        else:
            mask = b.input(f"{f.name}_mask", (f.bag,)) if f.masked else None
            vectors.append(b.embedding_bag(ids, f.rows, dim, "sum", mask, name=f"{f.name}_embedding"))
    h = b.concat(x, b.dot_interaction(*vectors, name="interaction"), name="top_input")
    for i, units in enumerate(top):
        h = b.dense(h, units, "relu", name=f"top{i}")
    return b.build(b.dense(h, 1, name="prediction"))


def mlperf_spec(table_rows: int) -> ModelSpec:
    """MLPerf's DLRM with every table capped at ``table_rows`` rows."""
    tables = [SparseFeature(f"cat{i}", min(rows, table_rows)) for i, rows in enumerate(MLPERF_TABLES)]
    return dlrm_spec(f"recsys-dlrm-mlperf-{table_rows}", MLPERF_DENSE, tables, MLPERF_DIM,
                     MLPERF_BOTTOM[:-1], MLPERF_TOP)


def movielens_features(n_users: int, n_items: int) -> list[SparseFeature]:
    return [SparseFeature("user", n_users, one_hot=True), SparseFeature("item", n_items, one_hot=True),
            SparseFeature("genres", N_GENRES, GENRE_BAG, masked=True),
            SparseFeature("age_group", len(AGE_EDGES) + 1), SparseFeature("gender", 2),
            SparseFeature("occupation", len(OCCUPATIONS))]


def tiny_spec(n_users: int, n_items: int, factors: int) -> ModelSpec:
    return dlrm_spec("recsys-dlrm-tiny", len(DENSE_FEATURES), movielens_features(n_users, n_items),
                     factors, TINY_BOTTOM, TINY_TOP)


# ---------------------------------------------------------------------------------------------
# MovieLens side features
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SideInformation:
    """Per-user and per-item features, looked up by id (:meth:`features`)."""

    age: np.ndarray  # (users,) years
    gender: np.ndarray  # (users,) 0 F, 1 M
    occupation: np.ndarray  # (users,) index into OCCUPATIONS
    genres: np.ndarray  # (items, GENRE_BAG) genre ids, padded with 0
    genres_mask: np.ndarray  # (items, GENRE_BAG) 1 for a real genre
    year: np.ndarray  # (items,) release year (the mean where unknown)
    user_count: np.ndarray  # (users,) training positives
    item_count: np.ndarray  # (items,)

    def features(self, user: np.ndarray, item: np.ndarray) -> dict[str, np.ndarray]:
        """The DLRM inputs of the pairs ``user``, ``item`` (``(N, 1)`` ids), these included."""
        u, i = np.asarray(user).reshape(-1), np.asarray(item).reshape(-1)
        scale_u = np.log1p(max(float(self.user_count.max()), 1.0))
        scale_i = np.log1p(max(float(self.item_count.max()), 1.0))
        dense = np.stack([self.age[u] / 100.0, (self.year[i] - 1900.0) / 100.0,
                          np.log1p(self.user_count[u]) / scale_u,
                          np.log1p(self.item_count[i]) / scale_i], axis=1)
        age_group = np.searchsorted(np.asarray(AGE_EDGES), self.age[u], side="right")
        return {"user": u[:, None].astype(np.int32), "item": i[:, None].astype(np.int32),
                "dense": dense.astype(np.float32),
                "genres": self.genres[i].astype(np.int32),
                "genres_mask": self.genres_mask[i].astype(np.float32),
                "age_group": age_group[:, None].astype(np.int32),
                "gender": self.gender[u][:, None].astype(np.int32),
                "occupation": self.occupation[u][:, None].astype(np.int32)}


def read_side_information(folder: Path, n_users: int, n_items: int, train_user: np.ndarray,
                          train_item: np.ndarray) -> SideInformation:
    """``u.user`` and ``u.item``; activity counts from the training pairs given (positives)."""
    try:
        users = [line.split("|") for line in (folder / "u.user").read_text("latin-1").split("\n")
                 if line.strip()]
        items = [line.split("|") for line in (folder / "u.item").read_bytes().decode("latin-1")
                 .split("\n") if line.strip()]
        age = np.array([int(r[1]) for r in users], np.float64)
        gender = np.array([r[2] == "M" for r in users], np.int64)
        occupation = np.array([OCCUPATIONS.index(r[3]) for r in users], np.int64)
        flags = np.array([[int(v) for v in r[5:5 + N_GENRES]] for r in items], np.int64)
        years = np.array([float(r[2][-4:]) if r[2] else np.nan for r in items])
    except (OSError, ValueError, IndexError) as exc:
        raise DatasetError(f"u.user or u.item in {folder} is malformed ({exc}): re-fetch with "
                           "dlbench data fetch ml-100k") from exc
    if len(age) != n_users or flags.shape != (n_items, N_GENRES) or flags.sum(1).max() > GENRE_BAG:
        raise DatasetError(f"u.user/u.item in {folder}: expected {n_users} users and {n_items} "
                           f"items of at most {GENRE_BAG} genres: re-fetch with dlbench data fetch ml-100k")
    genres = np.zeros((n_items, GENRE_BAG), np.int64)
    mask = np.zeros((n_items, GENRE_BAG), np.float32)
    for row, f in enumerate(flags):
        ids = np.flatnonzero(f)
        genres[row, :len(ids)] = ids
        mask[row, :len(ids)] = 1.0
    years = np.where(np.isnan(years), np.nanmean(years), years)
    return SideInformation(age, gender, occupation, genres, mask, years,
                           np.bincount(np.asarray(train_user).reshape(-1), minlength=n_users),
                           np.bincount(np.asarray(train_item).reshape(-1), minlength=n_items))


def prefix_masks(xs: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Synthetic inputs with every ``*_mask`` a {0, 1} prefix of random length (at least one)."""
    out = dict(xs)
    for name, m in xs.items():
        if name.endswith("_mask"):
            keep = rng.integers(1, m.shape[1] + 1, size=len(m))
            out[name] = (np.arange(m.shape[1])[None, :] < keep[:, None]).astype(np.float32)
    return out
