"""Padding masks hold per example for every attack (issue 12, item 8): on the NLP task's
embedding-space attack, with short and long texts in one batch, no attack moves a padded
position of any example (exactly), nor the codec's layout and code cells; APGD and Square, which
ART cannot mask per example, lose nothing to the projection (the model never reads padding)."""

from __future__ import annotations

import numpy as np
import pytest

from dlbench.framework import BuildOptions
from dlbench.plugins import get_plugins
from dlbench.robustness.attacks import APGD, AttackSettings, Square, keep_fixed
from dlbench.robustness.autoattack import BUILTIN
from dlbench.robustness.budgets import budget_for
from dlbench.robustness.embedding import EmbeddingCodec, lookup, split_spec
from dlbench.robustness.estimator import make_estimator
from dlbench.robustness.target import Target

pytest.importorskip("torch")
pytest.importorskip("art")

PARAMS = {"model": "transformer", "max_len": 16, "vocab_size": 50, "embed_dim": 16, "heads": 2}
EPS = 0.5  # relative-norm: half the example's embedding norm
SETTINGS = AttackSettings(steps=5, square_queries=20)


@pytest.fixture(scope="module")
def target():
    from dlbench.builtin.frameworks.torch import TorchFramework

    task = get_plugins().tasks.get("nlp")
    spec = task.model_spec(PARAMS)
    weights = spec.init_weights(3)
    x, _ = task.synthetic_batch(spec, 24, np.random.default_rng(0), PARAMS)
    lengths = np.arange(24) % PARAMS["max_len"] + 1  # 1 to 16 real tokens: short and long
    x["mask"] = (np.arange(PARAMS["max_len"])[None, :] < lengths[:, None]).astype(np.float32)
    x["tokens"] = np.where(x["mask"] > 0, np.maximum(x["tokens"], 2), 0).astype(np.int32)
    fw = TorchFramework()
    fw.setup(1, 0, {})
    split = split_spec(spec, task.perturbation(PARAMS).embedding_nodes)
    derived = fw.build(split.spec, split.weights(weights), BuildOptions(train=task.train_config(PARAMS)))
    codec = EmbeddingCodec(split, lookup(split, weights, x), max_eps=EPS)
    est = make_estimator(derived, codec, 2, (-codec.bound, codec.bound))
    labels = np.argmax(est.predict(codec.x0), axis=1)  # the model's own predictions: all correct
    budget = budget_for(task.perturbation(PARAMS))
    t = Target(est, codec.x0, labels, budget, "embedding", True, "", "accuracy",
               codec.attack_mask(True), codec.attack_mask(False))
    return t, codec, x["mask"]


ATTACKS = [a for a in BUILTIN if a.name != "autoattack-robustbench"]  # that one is pixel/255 only


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_no_attack_moves_padding(target, attack) -> None:
    t, codec, mask = target
    assert attack.skip_reason(t) is None
    adv = attack.generate(t, t.x, t.labels, EPS, SETTINGS, t.mask)
    fixed = np.broadcast_to(t.mask, t.x.shape) == 0  # padding, layout cells and the code
    np.testing.assert_array_equal(adv[fixed], t.x[fixed])
    (cut,) = codec.split.attacked  # token + position embeddings of the transformer
    before, after = codec.decode(t.x)[cut], codec.decode(adv)[cut]
    pad = mask < 0.5
    assert pad.any() and (~pad).any(axis=1).all()
    assert np.array_equal(after[pad], before[pad])  # every example's padded tokens, exactly
    moved = np.abs(after - before).max(axis=(1, 2)) > 0
    assert moved.any(), f"{attack.name} moved nothing: the test would prove nothing"
    size = np.sqrt(((after - before).astype(np.float64) ** 2).sum(axis=(1, 2)))
    assert np.all(size <= EPS * codec.norm * (1 + 1e-4))


@pytest.mark.parametrize("attack", [APGD(), Square()], ids=lambda a: a.name)
def test_projection_costs_the_attack_nothing(target, attack) -> None:
    """ART's raw result moves fixed cells (APGD's random start, Square's windows); projected
    onto each example's mask, as ``generate`` returns it and the scenario scores it, the model
    gives it the same outputs, and it is still an attack."""
    t, _, _ = target
    np.random.seed(SETTINGS.seed)
    art_mask = attack.art_mask(t, t.mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = attack.art_attack(t, EPS, SETTINGS).generate(
            t.x, t.labels, **({} if art_mask is None else {"mask": art_mask})
        )
    fixed = np.broadcast_to(t.mask, t.x.shape) == 0
    assert np.abs(raw - t.x)[fixed].max() > 0  # ART alone does move the fixed cells
    projected = keep_fixed(t.x, raw, t.mask)
    np.testing.assert_array_equal(projected[fixed], t.x[fixed])
    np.testing.assert_allclose(t.outputs(projected), t.outputs(raw), rtol=1e-6, atol=1e-6)
    clean = t.estimator.compute_loss(t.x, t.labels, reduction="none")
    attacked = t.estimator.compute_loss(projected, t.labels, reduction="none")
    assert attacked.mean() > clean.mean()
