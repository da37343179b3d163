"""The recsys task plugin on the real MovieLens 100K files (``DLBENCH_DATA_DIR``, default
``../shared/data`` beside the checkout): splits, negative sampling, specs, HR/NDCG, baselines."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from dlbench.builtin.tasks import recsys
from dlbench.builtin.tasks.recsys import CANDIDATES, RecsysTask

from dlbench import spec_numpy
from dlbench.data import registry as dldata
from dlbench.errors import DatasetError, DlbenchError

DATA = Path(os.environ.get("DLBENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_data = pytest.mark.skipif(not (DATA / "ml-100k").is_dir(), reason=f"no shared datasets in {DATA}")
RATING = {"objective": "rating"}
RANKING = {"objective": "ranking"}


@pytest.fixture(autouse=True)
def _data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLBENCH_DATA_DIR", str(DATA))


@pytest.fixture(scope="module")
def task() -> RecsysTask:
    return RecsysTask()


def _load(task: RecsysTask, params: dict):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DLBENCH_DATA_DIR", str(DATA))
        return task.load(params)


@pytest.fixture(scope="module")
def ratings():
    return recsys.read_ratings(DATA / "ml-100k")


@pytest.fixture(scope="module")
def rating_ds(task: RecsysTask):
    return _load(task, RATING)


@pytest.fixture(scope="module")
def ranking_ds(task: RecsysTask):
    return _load(task, RANKING)


# -- reading and splits -------------------------------------------------------------------------


@needs_data
def test_read_ratings(ratings) -> None:
    assert ratings.shape == (100_000, 4) and ratings.dtype == np.int64
    assert ratings[:, 0].min() == 0 and ratings[:, 0].max() == recsys.N_USERS - 1
    assert ratings[:, 1].min() == 0 and ratings[:, 1].max() == recsys.N_ITEMS - 1
    assert set(np.unique(ratings[:, 2])) == {1, 2, 3, 4, 5}
    assert ratings[0].tolist() == [195, 241, 3, 881250949]  # "196 242 3 881250949", ids from 0
    titles = recsys.read_titles(DATA / "ml-100k")
    assert len(titles) == recsys.N_ITEMS and titles[0] == "Toy Story (1995)"


@needs_data
def test_rating_split_is_seeded_90_10_and_targets_are_centred(task: RecsysTask, rating_ds, ratings) -> None:
    ds = rating_ds
    assert (ds.n_train, ds.n_test) == (90_000, 10_000)
    for x in (ds.x_train, ds.x_test):
        assert set(x) == {"user", "item"}
        assert all(v.dtype == np.int32 and v.shape[1:] == (1,) for v in x.values())
    mean = ds.meta["global_mean"]
    assert abs(float(ds.y_train.mean())) < 1e-5 and 3.5 < mean < 3.6
    stars = np.r_[ds.y_train, ds.y_test] + mean
    np.testing.assert_allclose(stars, np.round(stars), atol=1e-5)
    assert stars.min() == pytest.approx(1) and stars.max() == pytest.approx(5)
    tr, te = recsys.rating_split(len(ratings))
    assert np.array_equal((tr, te)[1], recsys.rating_split(len(ratings))[1])
    assert not set(tr) & set(te) and len(tr) + len(te) == len(ratings)
    again = task.load({**RATING, "seed": 5})  # the cell seed does not move the split
    assert np.array_equal(again.x_test["user"], ds.x_test["user"])
    assert np.array_equal(again.y_test, ds.y_test)


@needs_data
def test_leave_one_out_holds_out_each_users_latest(ratings) -> None:
    train, test = recsys.leave_one_out(ratings)
    assert len(test) == recsys.N_USERS and len(train) == len(ratings) - recsys.N_USERS
    assert ratings[test, 0].tolist() == list(range(recsys.N_USERS))
    latest = np.zeros(recsys.N_USERS, np.int64)
    np.maximum.at(latest, ratings[train, 0], ratings[train, 3])
    assert np.all(ratings[test, 3] >= latest)


@needs_data
def test_ranking_rows_and_sampled_negatives(task: RecsysTask, ranking_ds, ratings) -> None:
    ds = ranking_ds
    users = ds.x_test["user"].reshape(-1, CANDIDATES)
    items = ds.x_test["item"].reshape(-1, CANDIDATES)
    assert users.shape == (recsys.N_USERS, CANDIDATES) and np.all(users == users[:, :1])
    assert users[:, 0].tolist() == list(range(recsys.N_USERS))
    assert ds.y_test.reshape(-1, CANDIDATES)[:, 0].tolist() == [1.0] * recsys.N_USERS
    assert ds.y_test.sum() == recsys.N_USERS
    _, test = recsys.leave_one_out(ratings)
    assert items[:, 0].tolist() == ratings[test, 1].tolist()  # the held-out item comes first
    seen = {(int(u), int(i)) for u, i in ratings[:, :2]}
    for u in range(0, recsys.N_USERS, 37):
        negs = items[u, 1:]
        assert len(set(negs.tolist())) == CANDIDATES - 1  # distinct
        assert not any((u, int(i)) in seen for i in negs)  # never interacted
    # training: every remaining interaction once, plus 4 unseen items per positive
    y = ds.y_train
    assert int(y.sum()) == len(ratings) - recsys.N_USERS and len(y) == 5 * int(y.sum())
    tu, ti = ds.x_train["user"][:, 0], ds.x_train["item"][:, 0]
    neg = y == 0
    assert not any((int(u), int(i)) in seen for u, i in zip(tu[neg][::97], ti[neg][::97], strict=True))
    assert not any((int(u), int(i)) not in seen for u, i in zip(tu[~neg][::97], ti[~neg][::97], strict=True))
    assert ds.x_train["user"].dtype == np.int32 and y.dtype == np.float32


@needs_data
def test_negative_sampling_is_deterministic(ratings, ranking_ds) -> None:
    x_tr, y_tr, x_te, y_te = recsys.ranking_arrays(ratings, 4)
    for k in ("user", "item"):
        assert np.array_equal(x_tr[k], ranking_ds.x_train[k])
        assert np.array_equal(x_te[k], ranking_ds.x_test[k])
    assert np.array_equal(y_tr, ranking_ds.y_train) and np.array_equal(y_te, ranking_ds.y_test)


# -- metrics ------------------------------------------------------------------------------------


def test_hit_ratio_and_ndcg_on_a_constructed_case(task: RecsysTask) -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, (3, CANDIDATES))
    y = np.zeros((3, CANDIDATES), np.float32)
    y[:, 0] = 1
    scores[0, 0] = 2.0  # best of its 100: rank 0
    scores[1, 0] = np.sort(scores[1, 1:])[-4] + 1e-9  # just above the 4th best: rank 3
    scores[2, 0] = -1.0  # below everything: rank 99
    ranks = recsys.candidate_ranks(y, scores)
    ranks_expected = [0, 3, 99]
    assert ranks.tolist() == ranks_expected
    got = task.evaluate(y.reshape(-1), scores.reshape(-1, 1), RANKING)
    assert list(got) == ["hr@10", "ndcg@10"]
    assert got["hr@10"] == pytest.approx(2 / 3)
    assert got["ndcg@10"] == pytest.approx((1.0 + 1.0 / math.log2(3 + 2)) / 3)
    per_user = task.per_example(y.reshape(-1), scores.reshape(-1, 1), RANKING)
    assert per_user.tolist() == [1.0, 1.0, 0.0]
    # the positive may sit anywhere in its group
    y_moved = np.roll(y, 5, axis=1)
    assert recsys.candidate_ranks(y_moved, np.roll(scores, 5, axis=1)).tolist() == ranks_expected


def test_ties_count_against_the_held_out_item(task: RecsysTask) -> None:
    y = np.tile(np.r_[1.0, np.zeros(CANDIDATES - 1)], 2)
    got = task.evaluate(y, np.zeros((2 * CANDIDATES, 1)), RANKING)
    assert got == {"hr@10": 0.0, "ndcg@10": 0.0}


def test_ranking_evaluation_rejects_bad_layouts(task: RecsysTask) -> None:
    with pytest.raises(DlbenchError, match="100 outputs per user"):
        task.evaluate(np.zeros(150), np.zeros(150), RANKING)
    with pytest.raises(DlbenchError, match="exactly one positive"):
        task.evaluate(np.zeros(100), np.zeros(100), RANKING)


def test_rating_metrics_on_hand_made_outputs(task: RecsysTask) -> None:
    y = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
    out = np.array([[1.5], [-1.0], [0.0], [0.0]], np.float32)  # errors 1, 0, -2, 0
    got = task.evaluate(y, out, RATING)
    assert list(got) == ["rmse", "mae"]
    assert got["rmse"] == pytest.approx(math.sqrt(5 / 4)) and got["mae"] == pytest.approx(3 / 4)
    assert task.per_example(y, out, RATING) is None


def test_headline_target_and_direction(task: RecsysTask) -> None:
    assert task.headline(RATING) == "rmse" and task.target(RATING) == 0.95
    assert task.headline(RANKING) == "hr@10" and task.target(RANKING) == 0.55
    assert task.is_better("rmse", 0.94, 0.95) and not task.is_better("rmse", 0.96, 0.95)
    assert task.is_better("hr@10", 0.6, 0.55)
    assert task.train_config(RATING).loss == "mse"
    assert task.train_config(RANKING).loss == "binary_cross_entropy"


# -- specs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mf", "ncf"])
def test_spec_shapes_and_perturbation_nodes(task: RecsysTask, model: str) -> None:
    params = {"model": model, "factors": 8, "activation": "tanh"}
    spec = task.model_spec(params)
    shapes = spec.shapes()
    assert {n: (s.attrs["shape"], s.attrs["dtype"]) for n, s in spec.inputs.items()} == {
        "user": ((1,), "int32"), "item": ((1,), "int32")}
    assert shapes[spec.output] == (1,)
    assert shapes["user_vector"] == shapes["item_vector"] == (8,)
    assert spec.node("user_embedding").attrs["input_dim"] == recsys.N_USERS
    assert spec.node("item_embedding").attrs["input_dim"] == recsys.N_ITEMS
    dom = task.perturbation(params)
    assert (dom.space, dom.unit) == ("embedding", "relative-norm")
    for node in dom.embedding_nodes:
        assert spec.node(node).op == "Embedding"
    xs, y = task.synthetic_batch(spec, 16, np.random.default_rng(0), params)
    out = spec_numpy.forward(spec, spec.init_weights(0), xs)
    assert out.shape == (16, 1) and y.shape == (16,)


def test_mf_output_is_dot_plus_biases(task: RecsysTask) -> None:
    spec = task.model_spec({"factors": 4})
    w = spec.init_weights(1)
    w["user_bias.embeddings"][:] = 0.25
    w["item_bias.embeddings"][:] = -0.5
    xs = {"user": np.array([[3]], np.int32), "item": np.array([[10]], np.int32)}
    expected = float(w["user_embedding.embeddings"][3] @ w["item_embedding.embeddings"][10]) - 0.25
    assert spec_numpy.forward(spec, w, xs)[0, 0] == pytest.approx(expected, rel=1e-6)


def test_bad_params_name_the_fix(task: RecsysTask) -> None:
    with pytest.raises(DlbenchError, match="objective='implicit'"):
        task.model_spec({"objective": "implicit"})
    with pytest.raises(DlbenchError, match="factors"):
        task.model_spec({"factors": 0})


# -- registration -------------------------------------------------------------------------------


def test_registered_digests_match_the_shared_sums() -> None:
    sums_file = DATA / "SHA256SUMS"
    if not sums_file.is_file():
        pytest.skip("no SHA256SUMS")
    sums = dldata.read_sha256sums(sums_file.read_text(), prefix="ml-100k/")
    for fe in recsys.ML100K_INFO.files:
        assert sums[fe.path] == fe.sha256
        assert fe.archive_member == f"ml-100k/{fe.path}" and str(fe.url).endswith("ml-100k.zip")
    infos, tasks = [], []
    recsys.dlbench_register_datasets(infos.append)
    recsys.dlbench_register_tasks(tasks.append)
    assert [i.name for i in infos] == ["ml-100k"] and not infos[0].redistributable
    assert [t.name for t in tasks] == ["recsys"] and tasks[0].domain == "recommendation"


def test_missing_data_raises_with_the_fix(task: RecsysTask, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLBENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match="dlbench data fetch ml-100k"):
        task.load(RATING)


# -- baselines ------------------------------------------------------------------------------------


@needs_data
def test_biased_baseline_rmse(task: RecsysTask, rating_ds) -> None:
    # measured: RMSE 0.927, MAE 0.737 (predicting the global mean: RMSE 1.115)
    model = task.classic_model(RATING).fit(rating_ds.x_train, rating_ds.y_train)
    out = model.predict(rating_ds.x_test)
    assert out.shape == (rating_ds.n_test, 1)
    got = task.evaluate(rating_ds.y_test, out, RATING)
    assert got["rmse"] <= 0.94 and got["mae"] <= 0.75
    assert got["rmse"] < task.evaluate(rating_ds.y_test, np.zeros_like(out), RATING)["rmse"] - 0.15


@needs_data
def test_popularity_baseline_hit_ratio(task: RecsysTask, ranking_ds) -> None:
    # measured: HR@10 0.317, NDCG@10 0.165 (random scores: HR@10 about 0.10)
    model = task.classic_model(RANKING).fit(ranking_ds.x_train, ranking_ds.y_train)
    got = task.evaluate(ranking_ds.y_test, model.predict(ranking_ds.x_test), RANKING)
    assert got["hr@10"] >= 0.28 and got["ndcg@10"] >= 0.14


@needs_data
def test_torch_mf_reaches_the_guide_rmse(task: RecsysTask, rating_ds) -> None:
    pytest.importorskip("torch")
    torch_framework = pytest.importorskip("dlbench.builtin.frameworks.torch")
    from dlbench.framework import BuildOptions, TrainConfig

    fw = torch_framework.TorchFramework()
    fw.setup(1, 0, {})
    spec = task.model_spec(RATING, rating_ds)
    train = TrainConfig("mse", "adam", 1e-2)  # a short schedule: batch 512, one epoch
    model = fw.build(spec, spec.init_weights(0), BuildOptions(train=train, seed=0))
    order = np.random.default_rng([0, 1]).permutation(rating_ds.n_train)
    model.fit_epoch(rating_ds.x_train, rating_ds.y_train, 512, order)
    # measured (torch CPU, 1 thread, seed 0): RMSE 0.923
    assert task.evaluate(rating_ds.y_test, model.predict(rating_ds.x_test), RATING)["rmse"] <= 0.95
