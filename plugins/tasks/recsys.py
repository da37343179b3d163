"""Built-in task plugin ``recsys``: recommendation on MovieLens 100K (943 users, 1,682 movies).

Two objectives (parameter ``objective``):

* ``rating`` (explicit feedback, the default): predict the 1-5 star rating of a (user, item) pair.
  The split is a seeded random 90/10 over the 100,000 ratings (fixed :data:`SPLIT_SEED`, the same
  for every cell). Targets are *centred*: the model predicts ``rating - global_mean`` where the
  global mean is that of the train split (``Dataset.meta["global_mean"]``), so the models need no
  global bias term. Loss ``mse``; metrics ``rmse`` and ``mae`` (lower is better; the centring
  cancels out of both). Predictions are not clipped to [1, 5].
* ``ranking`` (implicit feedback): every rating is an interaction. Leave-one-out: each user's
  latest interaction (by timestamp, ties by item id) is held out. Training rows are the other
  99,057 interactions (label 1) plus ``negatives`` (default 4) items per positive sampled
  uniformly, with replacement, from the items the user never interacted with and that are not
  among the user's test candidates (label 0), once, with a fixed seed, so no (user, item) pair
  is in both splits. Loss ``binary_cross_entropy`` on logits. The test split has exactly
  :data:`CANDIDATES` (100) rows per user, users in id order: the held-out item first, then 99
  distinct never-interacted items sampled with a fixed seed. :meth:`RecsysTask.evaluate` reshapes
  the outputs to ``(users, 100)`` and reports ``hr@10`` and ``ndcg@10`` of the held-out item. Ties
  count against it (a model scoring every item alike gets HR@10 = 0, not 1).

Models (parameter ``model``), over inputs ``user`` and ``item`` (int32, shape ``(1,)``, ids from 0):

* ``mf``: user and item embeddings of ``factors`` dims, their dot product plus a user bias and an
  item bias (embeddings of width 1). ``activation`` is unused.
* ``ncf``: the MLP tower of neural collaborative filtering: concatenated embeddings, Dense
  ``2 * factors`` and ``factors`` with ``activation``, then Dense(1).
* ``dlrm`` (:mod:`._dlrm`): DLRM of ``size`` ``tiny`` (MovieLens: user, item, the item's genres
  as a multi-hot bag, the user's age group, gender and occupation as tables of ``factors`` dims,
  four dense features, the pairwise dot interaction, MLPs; it also reads those inputs, from
  ``u.user`` and ``u.item``) or ``mlperf`` (MLPerf's DLRM shape, tables capped at ``table_rows``;
  speed cells only). ``activation`` is unused (DLRM's MLPs are ReLU).

Baselines (:meth:`RecsysTask.classic_model`): rating: regularised user/item biases fitted by
alternating least squares; ranking: item popularity. Targets for time-to-accuracy: RMSE 0.95
(lower is better: the target is *reached* when the metric is <= it) and HR@10 0.55.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dlbench.api import (
    ACTIVATIONS,
    Batch,
    Corruption,
    Dataset,
    DatasetError,
    DatasetInfo,
    DlbenchError,
    FileEntry,
    ModelSpec,
    Param,
    PerturbationDomain,
    SpecBuilder,
    SuiteError,
    Task,
    TrainConfig,
    find_corruption,
    hookimpl,
    require,
)

from ._dlrm import mlperf_spec, prefix_masks, read_side_information, tiny_spec

SPLIT_SEED = 0
"""Seed of the rating split and of negative sampling: fixed for every cell and seed."""
TEST_FRACTION = 0.1
CANDIDATES = 100
"""Rows per user in the ranking test split: the held-out item and 99 sampled negatives."""
TOP_K = 10
N_USERS, N_ITEMS = 943, 1682

_ZIP = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_INFO = DatasetInfo(
    name="ml-100k",
    description="MovieLens 100K: 100,000 ratings (1-5) by 943 users on 1,682 movies",
    files=tuple(FileEntry(path, digest, _ZIP, f"ml-100k/{path}") for path, digest in (
        ("README", "d5f41f88d1a96b8faefed3c2f51fce1fca3be1ba6ab0d06e346898ffae920de9"),
        ("u.data", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
        ("u.item", "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701"),
        ("u.user", "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c"),
    )),
    licence="GroupLens research licence: research use only, no redistribution",
    citation="F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and "
             "Context. ACM TiiS 5, 4, Article 19. https://doi.org/10.1145/2827872",
    homepage="https://grouplens.org/datasets/movielens/100k/",
    size="2.3 MB",
    redistributable=False,
)

TARGETS = {"rating": 0.95, "ranking": 0.55}
METRICS = {"rating": ("rmse", "mae"), "ranking": ("hr@10", "ndcg@10")}

# ---------------------------------------------------------------------------------------------
# Reading and splitting
# ---------------------------------------------------------------------------------------------


def read_ratings(folder: Path) -> np.ndarray:
    """``u.data`` as an int64 array ``(100000, 4)``: user, item (both from 0), rating, time."""
    raw = (folder / "u.data").read_bytes()
    n_lines = sum(1 for line in raw.split(b"\n") if line.strip())
    fields = raw.split()
    try:
        if len(fields) != 4 * n_lines:
            raise ValueError(f"{len(fields)} fields on {n_lines} lines, expected 4 per line")
        data = np.array(fields, dtype=np.int64).reshape(-1, 4)
    except ValueError as exc:
        raise DatasetError(f"u.data in {folder} is malformed ({exc}): re-fetch with "
                           f"dlbench data fetch ml-100k") from exc
    data[:, :2] -= 1
    if data[:, 0].max() >= N_USERS or data[:, 1].max() >= N_ITEMS or data[:, :2].min() < 0:
        raise DatasetError(f"u.data in {folder}: ids outside 1..{N_USERS} / 1..{N_ITEMS}: "
                           f"re-fetch with dlbench data fetch ml-100k")
    return data


def read_titles(folder: Path) -> list[str]:
    """Movie titles by item id (from 0); ``u.item`` is ``|``-separated latin-1."""
    text = (folder / "u.item").read_bytes().decode("latin-1")
    return [line.split("|")[1] for line in text.split("\n") if line.strip()]


def rating_split(n: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train/test row indices of a random ``1 - TEST_FRACTION`` / ``TEST_FRACTION`` split."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * TEST_FRACTION))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def leave_one_out(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training interactions and of each user's latest one (users in order)."""
    order = np.lexsort((data[:, 1], data[:, 3], data[:, 0]))  # by user, then time, then item
    users = data[order, 0]
    last = np.flatnonzero(np.r_[users[1:] != users[:-1], True])
    test = order[last]
    keep = np.ones(len(data), bool)
    keep[test] = False
    return np.flatnonzero(keep), test


def ranking_arrays(data: np.ndarray, negatives: int, seed: int = SPLIT_SEED
                   ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Implicit-feedback train rows (positives + sampled negatives) and the 100-candidate test."""
    train_idx, test_idx = leave_one_out(data)
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    by_user = data[np.argsort(data[:, 0], kind="stable")]
    bounds = np.searchsorted(by_user[:, 0], np.arange(N_USERS + 1))
    pos = data[train_idx]
    pos = pos[np.lexsort((pos[:, 1], pos[:, 3], pos[:, 0]))]  # by user, then time, then item
    pos_bounds = np.searchsorted(pos[:, 0], np.arange(N_USERS + 1))
    tr_users, tr_items, tr_y = [], [], []
    te_users, te_items = [], []
    held_out = dict(zip(data[test_idx, 0].tolist(), data[test_idx, 1].tolist(), strict=True))
    for u in range(N_USERS):
        seen = by_user[bounds[u]:bounds[u + 1], 1]
        items = pos[pos_bounds[u]:pos_bounds[u + 1], 1]
        free = np.ones(N_ITEMS, bool)
        free[seen] = False
        unseen = np.flatnonzero(free)
        test_neg = test_rng.choice(unseen, CANDIDATES - 1, replace=False)
        free[test_neg] = False  # no (user, item) pair is in both splits
        neg = train_rng.choice(np.flatnonzero(free), size=negatives * len(items), replace=True)
        tr_users.append(np.full(len(items) + len(neg), u))
        tr_items.append(np.concatenate([items, neg]))
        tr_y.append(np.r_[np.ones(len(items)), np.zeros(len(neg))])
        te_users.append(np.full(CANDIDATES, u))
        te_items.append(np.r_[held_out[u], test_neg])
    x_train = {"user": np.concatenate(tr_users)[:, None].astype(np.int32),
               "item": np.concatenate(tr_items)[:, None].astype(np.int32)}
    x_test = {"user": np.concatenate(te_users)[:, None].astype(np.int32),
              "item": np.concatenate(te_items)[:, None].astype(np.int32)}
    y_test = np.tile(np.r_[1.0, np.zeros(CANDIDATES - 1)], N_USERS).astype(np.float32)
    return x_train, np.concatenate(tr_y).astype(np.float32), x_test, y_test


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def candidate_ranks(y_true: np.ndarray, outputs: np.ndarray, candidates: int = CANDIDATES) -> np.ndarray:
    """0-based rank of each group's positive among its ``candidates`` rows (ties rank it lower)."""
    flat_scores = np.asarray(outputs, np.float64).reshape(-1)
    flat_labels = np.asarray(y_true).reshape(-1)
    if len(flat_scores) != len(flat_labels) or len(flat_scores) % candidates:
        raise DlbenchError(f"ranking evaluation needs {candidates} outputs per user: got "
                           f"{len(flat_scores)} outputs for {len(flat_labels)} test rows")
    scores = flat_scores.reshape(-1, candidates)
    labels = flat_labels.reshape(-1, candidates) > 0.5
    if not np.all(labels.sum(axis=1) == 1):
        raise DlbenchError("ranking evaluation needs exactly one positive per group of "
                           f"{candidates} test rows (the held-out item)")
    pos = scores[labels][:, None]
    return np.sum(scores >= pos, axis=1) - 1


def hit_ratio(ranks: np.ndarray, k: int = TOP_K) -> float:
    return float(np.mean(ranks < k)) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int = TOP_K) -> float:
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(np.mean(gains)) if len(ranks) else 0.0


# ---------------------------------------------------------------------------------------------
# Classic baselines
# ---------------------------------------------------------------------------------------------


class BiasedBaseline:
    """``mean + b_user + b_item`` with L2-regularised biases by alternating least squares
    (Koren's baseline predictor); predicts ``(N, 1)`` in the same (centred) units as ``y``."""

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, iterations: int = 10) -> None:
        self.reg_user, self.reg_item, self.iterations = reg_user, reg_item, iterations
        self.mean = 0.0
        self.b_user = np.zeros(N_USERS)
        self.b_item = np.zeros(N_ITEMS)
        self.training_loss = float("nan")
        """Mean squared error on the training set after :meth:`fit`."""

    def fit(self, x: Batch, y: np.ndarray) -> BiasedBaseline:
        u = np.asarray(x["user"]).reshape(-1)
        i = np.asarray(x["item"]).reshape(-1)
        r = np.asarray(y, np.float64).reshape(-1)
        self.mean = float(r.mean())
        n_u = np.bincount(u, minlength=N_USERS)
        n_i = np.bincount(i, minlength=N_ITEMS)
        for _ in range(self.iterations):
            res = r - self.mean - self.b_user[u]
            self.b_item = np.bincount(i, res, minlength=N_ITEMS) / (self.reg_item + n_i)
            res = r - self.mean - self.b_item[i]
            self.b_user = np.bincount(u, res, minlength=N_USERS) / (self.reg_user + n_u)
        fitted = self.mean + self.b_user[u] + self.b_item[i]
        self.training_loss = float(np.mean((fitted - r) ** 2))
        return self

    def predict(self, x: Batch) -> np.ndarray:
        u = np.asarray(x["user"]).reshape(-1)
        i = np.asarray(x["item"]).reshape(-1)
        return (self.mean + self.b_user[u] + self.b_item[i]).astype(np.float32)[:, None]


class Popularity:
    """Scores an item by ``log(1 + number of positive training rows)``; predicts ``(N, 1)``."""

    def __init__(self) -> None:
        self.counts: np.ndarray = np.zeros(N_ITEMS)
        self.training_loss = float("nan")

    def fit(self, x: Batch, y: np.ndarray) -> Popularity:
        items = np.asarray(x["item"]).reshape(-1)
        self.counts = np.bincount(items, np.asarray(y, np.float64).reshape(-1) > 0.5, minlength=N_ITEMS)
        return self

    def predict(self, x: Batch) -> np.ndarray:
        items = np.asarray(x["item"]).reshape(-1)
        return np.log1p(self.counts[items]).astype(np.float32)[:, None]


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------


class RecsysTask(Task):
    name: ClassVar[str] = "recsys"
    domain: ClassVar[str] = "recommendation"
    description: ClassVar[str] = ("MovieLens 100K: rating prediction (RMSE) or leave-one-out "
                                  "top-10 ranking (HR@10, NDCG@10) with matrix factorisation or NCF")
    params: ClassVar[dict[str, Param]] = {
        "objective": Param("rating", "rating: explicit ratings, MSE; ranking: implicit, "
                           "leave-one-out HR@10/NDCG@10", ("rating", "ranking")),
        "model": Param("mf", "mf: matrix factorisation with biases; ncf: MLP over embeddings; "
                       "dlrm: DLRM of size", ("mf", "ncf", "dlrm")),
        "size": Param("tiny", "dlrm: tiny (MovieLens features) or mlperf (MLPerf's DLRM, speed "
                      "cells only)", ("tiny", "mlperf")),
        "table_rows": Param(100_000, "dlrm mlperf: rows per table at most (40000000: MLPerf's)",
                            type=int, min=1, max=40_000_000),
        "activation": Param("relu", "hidden activation of ncf (mf has none)", ACTIVATIONS),
        "factors": Param(32, "embedding dimension", type=int, min=1),
        "negatives": Param(4, "ranking: sampled negatives per training positive", type=int, min=1,
                           max=50),
    }
    metrics: ClassVar[tuple[str, ...]] = ("rmse", "mae", "hr@10", "ndcg@10")
    """Union over objectives; :meth:`metrics_for` gives one configuration's (headline first)."""
    higher_is_better: ClassVar[dict[str, bool]] = {"rmse": False, "mae": False, "hr@10": True,
                                                   "ndcg@10": True}

    # -- parameters ------------------------------------------------------------------------------
    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Task parameters with defaults filled in, validated."""
        p = {k: params.get(k, v.default) for k, v in self.params.items()}
        for k, v in self.params.items():
            err = v.validate(k, p[k])
            if err:
                raise DlbenchError(f"task recsys: {err}")
        if p["factors"] < 1:
            raise DlbenchError(f"task recsys: factors={p['factors']}: must be positive")
        if not 1 <= p["negatives"] <= 50:
            raise DlbenchError(f"task recsys: negatives={p['negatives']}: choose 1 to 50")
        return p

    def metrics_for(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """Metrics of this configuration, headline first: (rmse, mae) or (hr@10, ndcg@10)."""
        return METRICS[self.resolve(params)["objective"]]

    def headline(self, params: Mapping[str, Any]) -> str:
        return self.metrics_for(params)[0]

    # -- data ------------------------------------------------------------------------------------
    def datasets(self, params: Mapping[str, Any]) -> list[str]:
        return [ML100K_INFO.name]

    def load(self, params: Mapping[str, Any]) -> Dataset:
        p = self.resolve(params)
        if p["model"] == "dlrm" and p["size"] != "tiny":
            raise SuiteError(f"task recsys: dlrm size {p['size']!r} has Criteo's shapes, not "
                             "MovieLens's: use it in speed cells only (no data), or size: tiny")
        dataset = self._load(p)
        if p["model"] != "dlrm":
            return dataset
        y = np.asarray(dataset.y_train)
        observed = y > 0.5 if p["objective"] == "ranking" else np.ones(len(y), bool)
        side = read_side_information(require(ML100K_INFO), N_USERS, N_ITEMS,
                                     dataset.x_train["user"][observed], dataset.x_train["item"][observed])
        return Dataset(side.features(dataset.x_train["user"], dataset.x_train["item"]), dataset.y_train,
                       side.features(dataset.x_test["user"], dataset.x_test["item"]), dataset.y_test,
                       dataset.num_classes, dataset.name, {**dataset.meta, "side_information": side})

    def _load(self, p: Mapping[str, Any]) -> Dataset:
        data = read_ratings(require(ML100K_INFO))
        if p["objective"] == "rating":
            tr, te = rating_split(len(data))
            mean = float(data[tr, 2].mean())

            def xs(idx: np.ndarray) -> dict[str, np.ndarray]:
                return {"user": data[idx, 0:1].astype(np.int32), "item": data[idx, 1:2].astype(np.int32)}

            return Dataset(xs(tr), (data[tr, 2] - mean).astype(np.float32),
                           xs(te), (data[te, 2] - mean).astype(np.float32), None, "ml-100k-rating",
                           {"global_mean": mean, "split": f"random 90/10, seed {SPLIT_SEED}",
                            "n_users": N_USERS, "n_items": N_ITEMS})
        x_tr, y_tr, x_te, y_te = ranking_arrays(data, p["negatives"])
        return Dataset(x_tr, y_tr, x_te, y_te, None, "ml-100k-ranking",
                       {"candidates": CANDIDATES, "negatives": p["negatives"],
                        "split": f"leave-one-out (latest per user), negatives seed {SPLIT_SEED}",
                        "n_users": N_USERS, "n_items": N_ITEMS})

    # -- model -----------------------------------------------------------------------------------
    def model_spec(self, params: Mapping[str, Any], dataset: Dataset | None = None) -> ModelSpec:
        p = self.resolve(params)
        k = p["factors"]
        if p["model"] == "dlrm":
            return tiny_spec(N_USERS, N_ITEMS, k) if p["size"] == "tiny" else mlperf_spec(p["table_rows"])
        b = SpecBuilder(f"recsys-{p['model']}")
        user = b.input("user", (1,), "int32")
        item = b.input("item", (1,), "int32")
        u = b.flatten(b.embedding(user, N_USERS, k, name="user_embedding"), name="user_vector")
        i = b.flatten(b.embedding(item, N_ITEMS, k, name="item_embedding"), name="item_vector")
        if p["model"] == "mf":
            ub = b.flatten(b.embedding(user, N_USERS, 1, name="user_bias"), name="user_bias_flat")
            ib = b.flatten(b.embedding(item, N_ITEMS, 1, name="item_bias"), name="item_bias_flat")
            out = b.add(b.dot(u, i, name="interaction"), ub, ib, name="prediction")
        else:
            h = b.concat(u, i, name="joint")
            h = b.dense(h, 2 * k, p["activation"], name="mlp1")
            h = b.dense(h, k, p["activation"], name="mlp2")
            out = b.dense(h, 1, name="prediction")
        return b.build(out)

    def train_config(self, params: Mapping[str, Any]) -> TrainConfig:
        """MSE for ratings; binary cross-entropy on logits for ranking and for MLPerf's DLRM (a
        click-through model, whatever the objective)."""
        p = self.resolve(params)
        if p["objective"] == "rating" and not (p["model"] == "dlrm" and p["size"] == "mlperf"):
            return TrainConfig(loss="mse", optimizer="adam", learning_rate=1e-3)
        return TrainConfig(loss="binary_cross_entropy", optimizer="adam", learning_rate=1e-3)

    def synthetic_batch(self, spec: ModelSpec, batch_size: int, rng: np.random.Generator,
                        params: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Random ids in range; dlrm's genre mask a {0, 1} prefix (at least one genre)."""
        xs, y = super().synthetic_batch(spec, batch_size, rng, params)
        return prefix_masks(xs, rng), y

    def default_epochs(self, params: Mapping[str, Any]) -> int:
        """3: at batch 32, MF's test RMSE is lowest near epoch 3 and then rises (no weight decay:
        it overfits); ranking (495k rows per epoch) is near its plateau after 3 epochs."""
        return 3

    def default_batch_size(self, params: Mapping[str, Any]) -> int:
        """32 for rating (90k rows); 1024 for ranking (495k rows with sampled negatives)."""
        return 32 if self.resolve(params)["objective"] == "rating" else 1024

    def target(self, params: Mapping[str, Any]) -> float | None:
        """RMSE 0.95 for rating (reached when rmse <= 0.95), HR@10 0.55 for ranking (>=)."""
        return TARGETS[self.resolve(params)["objective"]]

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, y_true: np.ndarray, outputs: np.ndarray, params: Mapping[str, Any]) -> dict[str, float]:
        if self.resolve(params)["objective"] == "rating":
            y = np.asarray(y_true, np.float64).reshape(-1)
            pred = np.asarray(outputs, np.float64).reshape(-1)
            if len(pred) != len(y):
                raise DlbenchError(f"task recsys: {len(pred)} outputs for {len(y)} test ratings")
            err = pred - y
            return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}
        ranks = candidate_ranks(y_true, outputs)
        return {"hr@10": hit_ratio(ranks), "ndcg@10": ndcg(ranks)}

    def per_example(self, y_true: np.ndarray, outputs: np.ndarray, params: Mapping[str, Any]) -> np.ndarray | None:
        """Ranking: 1/0 hit@10 per *user* (one value per 100 test rows). Rating: None."""
        if self.resolve(params)["objective"] == "rating":
            return None
        return (candidate_ranks(y_true, outputs) < TOP_K).astype(np.float64)

    def classic_model(self, params: Mapping[str, Any]) -> BiasedBaseline | Popularity:
        if self.resolve(params)["objective"] == "rating":
            return BiasedBaseline()
        return Popularity()

    def perturbation(self, params: Mapping[str, Any]) -> PerturbationDomain:
        """The user and item embedding rows, one shared delta per user and per item (APR)."""
        return PerturbationDomain(space="embedding", clip_min=None,
                                  clip_max=None, unit="relative-norm",
                                  embedding_nodes=("user_embedding", "item_embedding"),
                                  shared_rows=True)

    def describe(self, params: Mapping[str, Any]) -> str:
        p = self.resolve(params)
        if p["model"] == "dlrm" and p["size"] == "mlperf":
            return f"DLRM (MLPerf shape, tables of at most {p['table_rows']} rows)"
        return f"MovieLens 100K {p['objective']}, {p['model']} ({p['factors']} factors)"

    def corruptions(self, params: Mapping[str, Any]) -> tuple[Corruption, ...]:
        return INTERACTION_CORRUPTIONS

    def corrupt(self, x: Batch, y: np.ndarray, corruption: str, level: int,
                rng: np.random.Generator, dataset: Dataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Dropped or random *training* interactions (random ratings are 1-5 stars, centred)."""
        mean = dataset.meta.get("global_mean")
        targets = np.array([1.0]) if mean is None else np.arange(1.0, 6.0) - float(mean)
        x2, y2 = corrupt_interactions(dict(x), y, corruption, level, rng, N_USERS, N_ITEMS, targets)
        side = dataset.meta.get("side_information")
        if side is not None:  # dlrm: the new pairs' features (activity counts of the clean data)
            x2 = side.features(x2["user"], x2["item"])
        return x2, y2


# ---------------------------------------------------------------------------------------------
# Corruptions of the training interactions: the robustness scenario retrains on them and scores
# the clean test split
# ---------------------------------------------------------------------------------------------

INTERACTION_CORRUPTIONS = (
    Corruption(
        "dropped_interactions", (0.1, 0.25, 0.5), "fraction of training interactions", "train"
    ),
    Corruption("random_interactions", (0.1, 0.25, 0.5), "fraction added at random", "train"),
)


def corrupt_interactions(
    x: dict[str, np.ndarray],
    y: np.ndarray,
    name: str,
    level: int,
    rng: np.random.Generator,
    n_users: int,
    n_items: int,
    random_targets: np.ndarray,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Training interactions ``x = {"user", "item"}`` (``(N, 1)`` ids) with targets ``y``:

    * ``dropped_interactions``: remove a fraction of the observed interactions (ratings; for
      implicit feedback the positive rows, ``y > 0.5``), uniformly at random;
    * ``random_interactions``: add that fraction of spurious interactions between random users
      and items, with targets drawn from ``random_targets`` (random ratings; ``[1.0]`` for
      implicit feedback: accidental clicks).
    """
    frac = find_corruption(INTERACTION_CORRUPTIONS, name, "recsys").value(level)
    users, items = np.asarray(x["user"]), np.asarray(x["item"])
    y = np.asarray(y)
    implicit = bool(np.all((y == 0) | (y == 1)))
    observed = np.flatnonzero(y > 0.5) if implicit else np.arange(len(y))
    n = int(round(frac * len(observed)))
    if name == "dropped_interactions":
        keep = np.setdiff1d(np.arange(len(y)), rng.choice(observed, size=n, replace=False))
        return {"user": users[keep], "item": items[keep]}, y[keep]
    new_u = rng.integers(0, n_users, size=(n, 1)).astype(users.dtype)
    new_i = rng.integers(0, n_items, size=(n, 1)).astype(items.dtype)
    new_y = rng.choice(np.asarray(random_targets, y.dtype), size=n)
    return (
        {"user": np.concatenate([users, new_u]), "item": np.concatenate([items, new_i])},
        np.concatenate([y, new_y]),
    )


@hookimpl
def dlbench_register_tasks(register: Any) -> None:
    register(RecsysTask())


@hookimpl
def dlbench_register_datasets(register: Any) -> None:
    register(ML100K_INFO)
