"""The recsys task's DLRM family: MLPerf's shape, the MovieLens features (no test leakage), speed
inputs, and parity at the tiny size on every installed framework (tests/family_parity.py)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from dlbench.builtin.tasks import _dlrm, recsys

from dlbench import spec_numpy
from dlbench.errors import DlbenchError
from dlbench.framework import BuildOptions
from dlbench.plugins import get_plugins
from dlbench.task import Task
from tests import family_parity

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "ml-100k" / "u.user").is_file(),
                                reason="needs ../shared/data/ml-100k")
TINY = {"model": "dlrm", "objective": "ranking"}
MLPERF = {"model": "dlrm", "size": "mlperf", "table_rows": 1000}


@pytest.fixture(scope="module")
def task() -> Task:
    return get_plugins().tasks.get("recsys")


def test_mlperf_shape(task: Task) -> None:
    spec = task.model_spec(MLPERF)
    shapes = spec.shapes()
    dense = [n for n in spec.nodes if n.op == "Dense"]
    assert [spec.param_shapes()[f"{n.name}.kernel"] for n in dense] == [
        (13, 512), (512, 256), (256, 128), (479, 1024), (1024, 1024), (1024, 512), (512, 256), (256, 1)]
    tables = [n for n in spec.nodes if n.op == "EmbeddingBag"]
    assert [n.attrs["input_dim"] for n in tables] == [min(r, 1000) for r in _dlrm.MLPERF_TABLES]
    assert {n.attrs["output_dim"] for n in tables} == {128} and len(tables) == 26
    assert shapes["interaction"] == (27 * 26 // 2,) and shapes["top_input"] == (479,)
    macs = sum(math.prod(spec.param_shapes()[f"{n.name}.kernel"]) for n in dense)
    assert spec.flops_per_example() == 2 * macs + 2 * 351 * 128  # lookups count no FLOPs
    mlp = sum(math.prod(spec.param_shapes()[f"{n.name}.kernel"]) + n.attrs["units"] for n in dense)
    assert spec.parameter_count() == mlp + 128 * sum(min(r, 1000) for r in _dlrm.MLPERF_TABLES)
    # the FLOPs do not depend on the table sizes: a larger cap only adds rows
    assert task.model_spec({**MLPERF, "table_rows": 50_000}).flops_per_example() == spec.flops_per_example()


def test_mlperf_has_no_data_and_says_so(task: Task) -> None:
    with pytest.raises(DlbenchError, match="speed cells only"):
        task.load(MLPERF)


def test_tiny_spec_inputs_and_attackable_tables(task: Task) -> None:
    spec = task.model_spec({**TINY, "factors": 8})
    inputs = {n: (s.attrs["shape"], s.attrs["dtype"]) for n, s in spec.inputs.items()}
    assert inputs == {"dense": ((4,), "float32"), "user": ((1,), "int32"), "item": ((1,), "int32"),
                      "genres": ((6,), "int32"), "genres_mask": ((6,), "float32"),
                      "age_group": ((1,), "int32"), "gender": ((1,), "int32"),
                      "occupation": ((1,), "int32")}
    assert spec.node("genres_embedding").op == "EmbeddingBag"
    assert spec.node("genres_embedding").inputs == ("genres", "genres_mask")
    for node in task.perturbation(TINY).embedding_nodes:  # the embedding attack's nodes
        assert spec.node(node).op == "Embedding"
    assert spec.shapes()["top_input"] == (8 + 7 * 6 // 2,) and spec.shapes()[spec.output] == (1,)


@pytest.mark.parametrize("params", [TINY, MLPERF])
def test_synthetic_inputs_are_in_range(task: Task, params: dict) -> None:
    spec = task.model_spec(params)
    xs, y = task.synthetic_batch(spec, 64, np.random.default_rng(0), params)
    for n in spec.nodes:
        if n.op in ("Embedding", "EmbeddingBag"):
            ids = xs[n.inputs[0]]
            assert ids.min() >= 0 and ids.max() < n.attrs["input_dim"], n.name
    if "genres_mask" in xs:
        m = xs["genres_mask"]
        assert set(np.unique(m)) <= {0.0, 1.0} and np.all(m[:, 0] == 1) and np.all(np.diff(m, axis=1) <= 0)
    assert set(np.unique(y)) <= {0.0, 1.0}


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_mlperf_shape_trains_on_torch(task: Task) -> None:
    spec = task.model_spec(MLPERF)
    xs, y = task.synthetic_batch(spec, 8, np.random.default_rng(0), MLPERF)
    model = get_plugins().frameworks.get("torch").build(
        spec, spec.init_weights(0), BuildOptions(train=task.train_config(MLPERF)))
    np.testing.assert_allclose(model.predict(xs), spec_numpy.forward(spec, model.get_weights(), xs),
                               rtol=1e-4, atol=1e-5)
    assert np.isfinite(float(model.to_numpy(model.train_step(model.to_device(xs), model.to_device(y)))))


@needs_data
def test_movielens_features(task: Task) -> None:
    d = task.load(TINY)
    side = d.meta["side_information"]
    f = side.features(np.array([[0]]), np.array([[0]]))  # user 1 (24, M, technician), Toy Story
    assert f["age_group"][0, 0] == 1 and f["gender"][0, 0] == 1
    assert _dlrm.OCCUPATIONS[f["occupation"][0, 0]] == "technician"
    assert f["genres"][0].tolist() == [3, 4, 5, 0, 0, 0]  # Animation, Children's, Comedy
    assert f["genres_mask"][0].tolist() == [1, 1, 1, 0, 0, 0]
    assert f["dense"][0, :2].tolist() == pytest.approx([0.24, 0.95])
    # activity counts are the training positives only: the held-out interactions are not counted
    pos = d.y_train > 0.5
    assert side.item_count.sum() == side.user_count.sum() == pos.sum() == 100_000 - recsys.N_USERS
    held_out = d.x_test["item"].reshape(-1, recsys.CANDIDATES)[:, 0]
    users = np.arange(recsys.N_USERS)
    assert np.all(side.user_count[users] == np.bincount(d.x_train["user"][pos, 0], minlength=recsys.N_USERS))
    assert np.all(side.item_count[held_out] == np.bincount(d.x_train["item"][pos, 0],
                                                           minlength=recsys.N_ITEMS)[held_out])
    for split in (d.x_train, d.x_test):
        assert set(split) == set(task.model_spec(TINY).inputs)
        np.testing.assert_array_equal(split["dense"], side.features(split["user"], split["item"])["dense"])
    x, y = task.corrupt(d.x_train, d.y_train, "random_interactions", 1, np.random.default_rng(0), d)
    assert set(x) == set(d.x_train) and len(y) > len(d.y_train)
    np.testing.assert_array_equal(x["genres"], side.genres[x["item"][:, 0]])


# -- parity ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fw_name", family_parity.framework_ids())
def test_tiny_dlrm_parity_on_every_framework(fw_name: str) -> None:
    """Outputs vs NumPy; loss, input gradients (dense features) and one SGD step vs torch."""
    family_parity.assert_family_parity(fw_name, "recsys", TINY)
