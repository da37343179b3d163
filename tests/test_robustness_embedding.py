"""Attacks in embedding space: the split spec computes what the full model computes, the codec
keeps side inputs with their examples, and PGD on the NLP bag model works within its budget."""

from __future__ import annotations

import numpy as np
import pytest

from dlbench.framework import BuildOptions, TrainConfig
from dlbench.plugins import get_plugins
from dlbench.robustness.embedding import EmbeddingCodec, lookup, split_spec
from dlbench.robustness.estimator import make_estimator

torch = pytest.importorskip("torch")
pytest.importorskip("art")

CASES = [
    ("nlp", {"model": "bag", "max_len": 12, "vocab_size": 50, "embed_dim": 8}, ("embedding",)),
    (
        "nlp",
        {"model": "transformer", "max_len": 12, "vocab_size": 50, "embed_dim": 8, "heads": 2},
        ("embedding",),
    ),
    ("recsys", {"model": "mf", "factors": 4}, ("user_embedding", "item_embedding")),
    ("recsys", {"model": "ncf", "factors": 4}, ("user_embedding", "item_embedding")),
]


def _torch():
    from dlbench.builtin.frameworks.torch import TorchFramework

    fw = TorchFramework()
    fw.setup(1, 0, {})
    return fw


@pytest.mark.parametrize(("task_name", "params", "attacked"), CASES, ids=lambda c: str(c)[:24])
def test_split_spec_computes_the_full_model(task_name, params, attacked) -> None:
    task = get_plugins().tasks.get(task_name)
    spec = task.model_spec(params)
    weights = spec.init_weights(1)
    assert tuple(task.perturbation(params).embedding_nodes) == attacked
    split = split_spec(spec, attacked)
    assert {n.op for n in split.spec.nodes} & {"PositionEmbedding"} == set()
    fw = _torch()
    opts = BuildOptions(train=task.train_config(params))
    x, _ = task.synthetic_batch(spec, 16, np.random.default_rng(0), params)
    full = fw.build(spec, weights, opts).predict(x)
    derived = fw.build(split.spec, split.weights(weights), opts).predict(lookup(split, weights, x))
    np.testing.assert_allclose(derived, full, rtol=1e-5, atol=1e-6)


def test_codec_recovers_examples_whatever_the_row_order() -> None:
    task = get_plugins().tasks.get("nlp")
    params = CASES[0][1]
    spec = task.model_spec(params)
    weights = spec.init_weights(1)
    split = split_spec(spec, ("embedding",))
    x, _ = task.synthetic_batch(spec, 20, np.random.default_rng(0), params)
    values = lookup(split, weights, x)
    codec = EmbeddingCodec(split, values, max_eps=1.0)
    assert codec.shape[0] == codec.shape[1]
    order = np.random.default_rng(1).permutation(20)[:13]
    noisy = codec.x0[order] + np.random.default_rng(2).uniform(-1, 1, codec.x0[order].shape).astype(
        np.float32
    )
    decoded = codec.decode(noisy)
    np.testing.assert_array_equal(
        decoded["mask"], x["mask"][order]
    )  # side inputs follow their rows
    clean = codec.decode(codec.x0[order])
    np.testing.assert_allclose(clean["embedding"], values["embedding"][order], rtol=1e-5, atol=1e-7)
    norms = np.sqrt(((values["embedding"] ** 2) * x["mask"][..., None]).sum(axis=(1, 2)))
    np.testing.assert_allclose(codec.norm, norms, rtol=1e-5)


def test_pgd_in_embedding_space_on_the_nlp_bag_model() -> None:
    task = get_plugins().tasks.get("nlp")
    params = {"dataset": "sentiment", "model": "bag", "max_len": 32, "vocab_size": 2000}
    try:
        data = task.load(params)
    except Exception as exc:  # noqa: BLE001 - the shared dataset folder is absent
        pytest.skip(f"sentiment data unavailable: {exc}")
    spec = task.model_spec(params, data)
    fw = _torch()
    model = fw.build(
        spec, spec.init_weights(0), BuildOptions(train=TrainConfig("cross_entropy", "adam", 3e-3))
    )
    for epoch in range(3):
        model.fit_epoch(
            data.x_train, data.y_train, 64, np.random.default_rng(epoch).permutation(data.n_train)
        )
    weights = model.get_weights()
    rows = np.arange(120)
    x = {k: v[rows] for k, v in data.x_test.items()}
    y = data.y_test[rows]
    split = split_spec(spec, ("embedding",))
    derived = fw.build(split.spec, split.weights(weights), BuildOptions())
    codec = EmbeddingCodec(split, lookup(split, weights, x), max_eps=0.5)
    est = make_estimator(derived, codec, 2, (-codec.bound, codec.bound))
    clean = float(np.mean(est.predict(codec.x0).argmax(1) == y))
    assert clean > 0.65

    from art.attacks.evasion import ProjectedGradientDescent

    np.random.seed(0)
    eps = 0.5
    adv = ProjectedGradientDescent(
        est, norm=2, eps=eps, eps_step=eps / 4, max_iter=10, num_random_init=1, verbose=False
    ).generate(codec.x0, y, mask=codec.attack_mask())
    robust = float(np.mean(est.predict(adv).argmax(1) == y))
    assert robust < clean - 0.3
    before, after = codec.decode(codec.x0), codec.decode(adv)
    np.testing.assert_array_equal(after["mask"], x["mask"])
    delta = (after["embedding"] - before["embedding"]).astype(np.float64)
    pad = x["mask"] < 0.5
    assert np.abs(delta[pad]).max() == 0  # padding positions never move
    size = np.sqrt((delta**2).sum(axis=(1, 2)))
    assert np.all(size <= eps * codec.norm * (1 + 1e-4))  # budget relative to the embedding norm
    assert size.max() > 0.9 * eps * codec.norm.max()
