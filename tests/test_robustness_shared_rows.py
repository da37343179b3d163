"""Recommendation attacks perturb shared embedding rows (adversarial personalised ranking): one
delta per user and per item, seen by all of that user's (item's) candidate pairs; the gradient
of a row is the sum over its pairs; budgets relative to each row's norm or absolute."""

from __future__ import annotations

import numpy as np
import pytest

from dlbench.errors import DlbenchError, UnsupportedError
from dlbench.framework import BuildOptions, TrainConfig
from dlbench.plugins import get_plugins
from dlbench.robustness.attacks import FGSM, PGD, AttackSettings, Noise
from dlbench.robustness.budgets import budget_for
from dlbench.robustness.embedding import lookup, split_spec
from dlbench.robustness.shared_rows import RowCodec, norm_stats, row_estimator
from dlbench.robustness.target import RowTarget

pytest.importorskip("torch")
pytest.importorskip("art")

# two users scored on overlapping candidates: item 2 is a candidate of both
USERS = np.array([0, 0, 0, 0, 1, 1, 1], np.int32)[:, None]
ITEMS = np.array([2, 3, 4, 5, 2, 6, 7], np.int32)[:, None]
RATINGS = np.array([1.0, -0.5, 0.3, 0.8, -1.0, 0.2, 0.6], np.float32)


def _target(mode: str = "relative", model: str = "mf") -> RowTarget:
    from dlbench.builtin.frameworks.torch import TorchFramework

    task = get_plugins().tasks.get("recsys")
    params = {"model": model, "factors": 4}
    spec = task.model_spec(params)
    weights = spec.init_weights(3)
    domain = task.perturbation(params)
    assert domain.shared_rows
    split = split_spec(spec, domain.embedding_nodes)
    fw = TorchFramework()
    fw.setup(1, 0, {})
    derived = fw.build(split.spec, split.weights(weights), BuildOptions(train=TrainConfig("mse", "adam", 1e-3)))
    inputs = {"user": USERS, "item": ITEMS}
    codec = RowCodec(split, weights, inputs, RATINGS, mode)
    est = row_estimator(derived, codec)
    return RowTarget(est, codec.x0, np.zeros(codec.rows, np.float32), budget_for(domain, None, mode),
                     "embedding", True, "", "rmse", codec.valid, codec.valid, norm_stats(weights, split))


def _deltas(target: RowTarget, x_adv: np.ndarray) -> dict[str, np.ndarray]:
    codec = target.estimator.codec
    before, after = codec.decode(target.x), codec.decode(x_adv)
    return {k: (after[k] - before[k]).reshape(codec.n, -1).astype(np.float64)
            for k in ("user_embedding", "item_embedding")}


@pytest.mark.parametrize("attack", [FGSM(), PGD(), Noise()], ids=lambda a: a.name)
def test_one_users_delta_is_identical_across_all_their_pairs(attack) -> None:
    target = _target()
    view = target.select(np.arange(len(RATINGS)))
    settings = view.settings(AttackSettings(steps=5, batch_size=2))
    assert settings.batch_size == view.estimator.codec.rows == 2 + 6  # users 0, 1; items 2-7
    x_adv = attack.generate(view, view.x, view.labels, 0.5, settings, view.mask)
    d = _deltas(view, x_adv)
    users, items = USERS[:, 0], ITEMS[:, 0]
    for u in (0, 1):
        rows = d["user_embedding"][users == u]
        assert np.abs(rows).max() > 0
        assert np.array_equal(rows, np.broadcast_to(rows[0], rows.shape))  # bit for bit
    shared = d["item_embedding"][items == 2]  # item 2, seen by both users
    assert len(shared) == 2 and np.array_equal(shared[0], shared[1]) and np.abs(shared).max() > 0
    outputs = view.outputs(x_adv)
    assert outputs.shape == (len(RATINGS), 1)


def test_row_gradient_is_the_sum_over_its_pairs() -> None:
    target = _target()
    est, codec = target.estimator, target.estimator.codec
    grad = est.loss_gradient(target.x, target.labels)
    base = float(est.compute_loss(target.x, target.labels, reduction="sum"))
    assert base == pytest.approx(float(np.sum(est.compute_loss(target.x, None, reduction="none"))))
    h = 1e-2
    for row in (0, 1, 2):  # user 0 (four pairs), user 1 (three), item 2 (two)
        for j in range(codec.width):
            e = np.zeros_like(target.x)
            e[row, j] = h
            up = float(est.compute_loss(target.x + e, None, reduction="sum"))
            down = float(est.compute_loss(target.x - e, None, reduction="sum"))
            assert grad[row, j] == pytest.approx((up - down) / (2 * h), rel=2e-2, abs=1e-3)


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_budget_modes_bound_each_row(mode: str) -> None:
    target = _target(mode)
    codec = target.estimator.codec
    eps = 0.3
    x_adv = FGSM().generate(target, target.x, target.labels, eps, target.settings(AttackSettings()),
                            target.mask)
    rows = codec.x0 * codec.scale[:, None]
    moved = x_adv * codec.scale[:, None] - rows
    size = np.linalg.norm(moved.astype(np.float64), axis=1)
    norms = np.linalg.norm(rows.astype(np.float64), axis=1)
    # FGSM in L2 moves every row by exactly its budget
    expected = eps * norms if mode == "relative" else np.full(codec.rows, eps)
    np.testing.assert_allclose(size, expected, rtol=1e-4)
    assert target.budget.unit == ("relative-norm" if mode == "relative" else "embedding-l2")
    x_pgd = PGD().generate(target, target.x, target.labels, eps,
                           target.settings(AttackSettings(steps=8)), target.mask)
    size = np.linalg.norm((x_pgd * codec.scale[:, None] - rows).astype(np.float64), axis=1)
    assert np.all(size <= expected * (1 + 1e-4)) and size.max() > 0.5 * expected.max()


def test_norm_statistics_are_those_of_the_trained_tables() -> None:
    target = _target()
    from dlbench.builtin.tasks.recsys import N_USERS

    assert set(target.extras) == {f"embedding_norm_{s}_{t}_embedding" for s in ("mean", "median")
                                  for t in ("user", "item")}
    codec = target.estimator.codec
    table = np.asarray(codec.weights["user_embedding.embeddings"], np.float64)
    assert table.shape[0] == N_USERS
    assert target.extras["embedding_norm_median_user_embedding"] == pytest.approx(
        float(np.median(np.linalg.norm(table, axis=1))))


def test_budget_mode_errors_name_the_fix() -> None:
    tasks = get_plugins().tasks
    with pytest.raises(DlbenchError, match="leave budget at 'relative'"):
        budget_for(tasks.get("vision").perturbation({}), None, "absolute")
    with pytest.raises(DlbenchError, match="choose one of relative, absolute"):
        budget_for(tasks.get("recsys").perturbation({}), None, "huge")
    target = _target()
    with pytest.raises(UnsupportedError, match="must see every row at once"):
        target.estimator.codec.decode(target.x[:3])


def test_side_inputs_and_clean_outputs_match_the_full_model() -> None:
    from dlbench.builtin.frameworks.torch import TorchFramework

    target = _target()
    task = get_plugins().tasks.get("recsys")
    spec = task.model_spec({"model": "mf", "factors": 4})
    weights = spec.init_weights(3)
    fw = TorchFramework()
    fw.setup(1, 0, {})
    full = fw.build(spec, weights, BuildOptions(train=TrainConfig("mse", "adam", 1e-3)))
    inputs = {"user": USERS, "item": ITEMS}
    np.testing.assert_allclose(target.outputs(target.x), full.predict(inputs), rtol=1e-5, atol=1e-6)
    split = split_spec(spec, ("user_embedding", "item_embedding"))
    decoded = target.estimator.codec.decode(target.x)
    np.testing.assert_allclose(decoded["user_embedding"], lookup(split, weights, inputs)["user_embedding"],
                               rtol=1e-6)
