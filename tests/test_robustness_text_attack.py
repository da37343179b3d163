"""The token-level attack (greedy vocabulary substitution, HotFlip-ranked and loss-verified):
it flips a planted model in one step, stays within k substitutions, never touches padding,
writes only training-vocabulary ids, and its success rate is flips / clean-correct, on plain
NumPy models and on trained framework models (through the framework contract)."""

from __future__ import annotations

import numpy as np
import pytest

from dlbench.errors import DlbenchError
from dlbench.framework import BuildOptions, TrainConfig
from dlbench.plugins import get_plugins
from dlbench.robustness.embedding import lookup, split_spec
from dlbench.robustness.tokens import (
    TokenModel,
    TokenSettings,
    framework_token_model,
    greedy_substitution,
    real_positions,
)

KEY = 5
"""The planted models' decisive word."""
FIRST, STOP = 2, 12
"""Substitutable ids: the 'training vocabulary' (0 padding, 1 unknown; rows >= 12 unused)."""


def _softmax_grad(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1.0
    return p  # d(cross-entropy)/d(logits), per example


def numpy_counter(table: np.ndarray, w: np.ndarray, bias: float, masked: bool) -> TokenModel:
    """A bag model in NumPy: logits ``[bias, mean_j E[t_j] . w]``, the mean over real tokens
    (``masked``) or over every position, padding included (a model that ignores its mask)."""

    def pooled(x):
        e = table[x["tokens"]]
        m = x["mask"] if masked else np.ones(x["tokens"].shape, np.float32)
        return e, m

    def outputs(x):
        e, m = pooled(x)
        s = ((e * m[..., None]).sum(1) / m.sum(1, keepdims=True)) @ w
        return np.stack([np.full(len(s), bias), s], axis=1)

    def gradient(x, labels):
        e, m = pooled(x)
        d = _softmax_grad(outputs(x), labels)[:, 1]  # dL/ds
        return (d[:, None, None] * (m / m.sum(1, keepdims=True))[..., None]) * w[None, None, :]

    return TokenModel(outputs, gradient, table, "tokens")


def planted_table(dim: int = 4, rows: int = 20) -> np.ndarray:
    table = np.zeros((rows, dim), np.float32)
    table[KEY, 0] = 10.0
    return table


def texts(rows: list[list[int]], length: int = 8) -> dict[str, np.ndarray]:
    tokens = np.zeros((len(rows), length), np.int32)
    mask = np.zeros((len(rows), length), np.float32)
    for i, r in enumerate(rows):
        tokens[i, : len(r)], mask[i, : len(r)] = r, 1.0
    return {"tokens": tokens, "mask": mask}


W = np.array([1.0, 0, 0, 0], np.float32)


def test_substituting_the_planted_word_flips_the_model_in_one_step() -> None:
    model = numpy_counter(planted_table(), W, 0.5, masked=True)
    x = texts([[3, KEY, 4, 6], [KEY, 7], [2, 3, 4, 8, 9, 10, 11, KEY], [3, 4, 6, 7]])
    y = np.array([1, 1, 1, 0])
    assert np.array_equal(np.argmax(model.outputs(x), 1), y)  # the planted decision
    res = greedy_substitution(model, x, y, x["mask"] > 0, (FIRST, STOP), TokenSettings(words=3))
    assert res.flipped[:3].all()
    assert np.array_equal(res.substitutions[:3], [1, 1, 1])  # one step each
    for i in range(3):
        changed = np.flatnonzero(res.tokens[i] != x["tokens"][i])
        assert list(changed) == [list(x["tokens"][i]).index(KEY)]  # the key word, nothing else
        assert FIRST <= res.tokens[i, changed[0]] < STOP and res.tokens[i, changed[0]] != KEY
    # the negative text flips by writing the key word in (a realisable text)
    assert res.flipped[3] and KEY in res.tokens[3]
    assert res.success_rate == res.flips / res.attacked == 1.0


def test_never_more_than_k_substitutions_and_the_fraction_budget() -> None:
    model = numpy_counter(planted_table(), W, 0.5, masked=True)
    # five key words among 8 tokens: s = 50/8 = 6.25; flipping needs s < 0.5 (all five gone)
    x = texts([[KEY, KEY, 3, KEY, KEY, 4, KEY, 6], [KEY, 3, 4, 6, 7, 8, 9, 10]])
    y = np.array([1, 1])
    res = greedy_substitution(model, x, y, x["mask"] > 0, (FIRST, STOP), TokenSettings(words=3))
    assert not res.flipped[0]
    assert np.all(res.substitutions <= 3)
    assert np.all((res.tokens != x["tokens"]).sum(1) == res.substitutions)
    assert res.flipped[1] and res.substitutions[1] == 1
    # fraction 0.25 of 4 real tokens: one substitution, whatever k
    x2 = texts([[KEY, KEY, 3, 4]])
    one = greedy_substitution(model, x2, np.array([1]), x2["mask"] > 0, (FIRST, STOP),
                              TokenSettings(words=3, fraction=0.25))
    assert one.limits[0] == 1 and one.substitutions[0] == 1 and not one.flipped[0]
    assert greedy_substitution(model, x2, np.array([1]), x2["mask"] > 0, (FIRST, STOP),
                               TokenSettings(words=3, fraction=1.0)).flipped[0]


def test_padding_and_tokens_outside_the_vocabulary_are_never_used() -> None:
    # a model that reads padding (it ignores its mask) and an unused table row that would flip
    # it at once: the attack must still touch only real positions and write vocabulary ids
    table = planted_table()
    table[15, 0] = -1000.0  # outside [FIRST, STOP): the best first-order candidate everywhere
    table[0, 0] = 3.0  # the padding id moves the unmasked model: its gradient is large there
    model = numpy_counter(table, W, 0.5, masked=False)
    x = texts([[KEY, 3, 4], [3, KEY], [KEY, KEY, KEY, 6, 7]])
    y = np.argmax(model.outputs(x), 1)
    assert np.all(y == 1)
    res = greedy_substitution(model, x, y, x["mask"] > 0, (FIRST, STOP), TokenSettings(words=3))
    pad = x["mask"] < 0.5
    assert np.array_equal(res.tokens[pad], x["tokens"][pad])
    new = res.tokens[res.tokens != x["tokens"]]
    assert len(new) and np.all((new >= FIRST) & (new < STOP))
    assert 0.0 <= res.success_rate <= 1.0 and res.success_rate == res.flips / res.attacked


def test_wrong_examples_are_not_attacked_and_bad_settings_are_one_line() -> None:
    model = numpy_counter(planted_table(), W, 0.5, masked=True)
    x = texts([[KEY, 3], [3, 4]])
    y = np.array([0, 1])  # both misclassified
    res = greedy_substitution(model, x, y, x["mask"] > 0, (FIRST, STOP))
    assert res.attacked == 0 and np.isnan(res.success_rate)
    assert np.array_equal(res.tokens, x["tokens"])
    with pytest.raises(DlbenchError, match="token_words=0"):
        TokenSettings(words=0)
    with pytest.raises(DlbenchError, match="token_fraction=1.5"):
        TokenSettings(fraction=1.5)
    # a suite says so before any cell runs
    params = get_plugins().scenarios.get("robustness").params
    assert "must be an integer >= 1" in params["token_words"].validate("token_words", 0)
    assert "must be a number > 0" in params["token_fraction"].validate("token_fraction", 0.0)
    assert params["token_fraction"].validate("token_fraction", 1) is None


# -- through a framework ------------------------------------------------------------------------
torch = pytest.importorskip("torch")


def _framework(name: str):
    plugins = get_plugins()
    if name not in plugins.frameworks or not plugins.frameworks.get(name).availability().installed:
        pytest.skip(f"{name} is not installed")
    fw = plugins.frameworks.get(name)
    fw.setup(None, 0, {})  # threads as this process has them (TF fixes them when it starts)
    return fw


def _token_model(fw, spec, weights, opts):
    model = fw.build(spec, weights, opts)
    split = split_spec(spec, ("embedding",))
    remainder = fw.build(split.spec, split.weights(weights), opts)
    return model, framework_token_model(model, remainder, split, weights)


@pytest.mark.parametrize("framework", ["torch", "jax", "tensorflow", "keras"])
def test_planted_spec_model_flips_on_every_framework(framework: str) -> None:
    task = get_plugins().tasks.get("nlp")
    params = {"model": "bag", "max_len": 8, "vocab_size": 20, "embed_dim": 4}
    spec = task.model_spec(params)
    weights = {
        "embedding.embeddings": planted_table(),
        "hidden.kernel": np.eye(4, dtype=np.float32),
        "hidden.bias": np.zeros(4, np.float32),
        "logits.kernel": np.array([[0, 1], [0, 0], [0, 0], [0, 0]], np.float32),
        "logits.bias": np.array([0.5, 0.0], np.float32),
    }
    fw = _framework(framework)
    _, tm = _token_model(fw, spec, weights, BuildOptions(train=task.train_config(params)))
    x = texts([[3, KEY, 4, 6], [KEY, 7], [2, 3, KEY]])
    y = np.array([1, 1, 1])
    real = real_positions(spec, "tokens", x)
    assert np.array_equal(real, x["mask"] > 0)
    res = greedy_substitution(tm, x, y, real, (FIRST, STOP), TokenSettings(words=3))
    assert res.flipped.all() and np.array_equal(res.substitutions, [1, 1, 1])
    assert not np.any(res.tokens == KEY)


def test_transformer_positions_cut_keeps_the_invariants() -> None:
    # the transformer is cut after its PositionEmbedding: the gradient is taken there, and the
    # first-order change of a substitution is the same (the position vector cancels)
    task = get_plugins().tasks.get("nlp")
    params = {"model": "transformer", "max_len": 10, "vocab_size": 40, "embed_dim": 8, "heads": 2}
    spec = task.model_spec(params)
    weights = spec.init_weights(3)
    fw = _framework("torch")
    model, tm = _token_model(fw, spec, weights, BuildOptions(train=task.train_config(params)))
    x, _ = task.synthetic_batch(spec, 40, np.random.default_rng(0), params)
    y = np.argmax(model.predict(x), 1)  # every example correct: all are attacked
    real = real_positions(spec, "tokens", x)
    res = greedy_substitution(tm, x, y, real, (2, 30), TokenSettings(words=2, fraction=1.0))
    changed = res.tokens != x["tokens"]
    assert res.attacked == 40 and res.flips > 0
    assert np.all(changed.sum(1) <= 2) and not np.any(changed & ~real)
    assert np.all((res.tokens[changed] >= 2) & (res.tokens[changed] < 30))
    np.testing.assert_allclose(model.predict({**x, "tokens": res.tokens}), res.outputs,
                               rtol=1e-5, atol=1e-6)


def test_trained_bag_model_on_sentiment() -> None:
    task = get_plugins().tasks.get("nlp")
    params = {"dataset": "sentiment", "model": "bag", "max_len": 32, "vocab_size": 2000}
    try:
        data = task.load(params)
    except Exception as exc:  # noqa: BLE001 - the shared dataset folder is absent
        pytest.skip(f"sentiment data unavailable: {exc}")
    first, stop = data.meta["substitutable"]
    assert (first, stop) == (2, len(data.meta["vocab"]))
    spec = task.model_spec(params, data)
    fw = _framework("torch")
    opts = BuildOptions(train=TrainConfig("cross_entropy", "adam", 3e-3))
    model = fw.build(spec, spec.init_weights(0), opts)
    for epoch in range(3):
        model.fit_epoch(data.x_train, data.y_train, 64,
                        np.random.default_rng(epoch).permutation(data.n_train))
    weights = model.get_weights()
    model, tm = _token_model(fw, spec, weights, opts)
    rows = np.arange(120)
    x = {k: v[rows] for k, v in data.x_test.items()}
    y = data.y_test[rows]
    real = real_positions(spec, "tokens", x)
    res = greedy_substitution(tm, x, y, real, (first, stop), TokenSettings(words=3))
    # the full model on the ids agrees with the remainder on the looked-up embeddings
    split = split_spec(spec, ("embedding",))
    derived = fw.build(split.spec, split.weights(weights), opts)
    np.testing.assert_allclose(derived.predict(lookup(split, weights, {**x, "tokens": res.tokens})),
                               res.outputs, rtol=1e-4, atol=1e-5)
    changed = res.tokens != x["tokens"]
    assert np.all(changed.sum(1) <= 3) and np.all(changed.sum(1) == res.substitutions)
    assert np.all(res.substitutions <= res.limits)
    assert not np.any(changed & ~real)  # padding never substituted
    assert np.all((res.tokens[changed] >= first) & (res.tokens[changed] < stop))
    assert not np.any(changed[~res.clean_correct])  # wrong examples are left alone
    assert res.attacked == int(np.sum(np.argmax(model.predict(x), 1) == y))
    assert 0.0 < res.success_rate <= 1.0 and res.success_rate == res.flips / res.attacked
    # better than the same number of random vocabulary substitutions at random real positions
    rng = np.random.default_rng(0)
    rand = x["tokens"].copy()
    for i in range(len(y)):
        pos = rng.permutation(np.flatnonzero(real[i]))[: res.limits[i]]
        rand[i, pos] = rng.integers(first, stop, size=len(pos))
    rand_flips = np.sum(res.clean_correct & (np.argmax(model.predict({**x, "tokens": rand}), 1) != y))
    assert res.flips > rand_flips


def test_robustness_cell_reports_the_token_attack(tmp_path) -> None:
    from robustness_helpers import run_cell

    params = {"dataset": "sentiment", "model": "bag", "max_len": 32, "vocab_size": 2000,
              "epochs": 2, "batch_size": 64, "eval_size": 60, "attacks": "fgsm",
              "epsilons": [0.5], "corruptions": False, "audit": False,
              "token_words": 2}
    try:
        get_plugins().tasks.get("nlp").load(params)
    except Exception as exc:  # noqa: BLE001 - the shared dataset folder is absent
        pytest.skip(f"sentiment data unavailable: {exc}")
    r = run_cell("nlp", "torch", params, tmp_path)
    assert r.status == "ok", r.error
    d = r.details["token_attack"]
    assert d["words"] == 2 and d["n"] == 60
    rate = r.metrics["success_rate_tokens_k2"]
    assert rate == d["flipped"] / d["correct"]
    lo, hi = r.details["metric_ci"]["success_rate_tokens_k2"]
    assert 0.0 <= lo <= rate <= hi <= 1.0
    acc = r.metrics["robust_tokens_k2"]
    assert acc == pytest.approx((d["correct"] - d["flipped"]) / 60, abs=1e-12)
    assert acc <= r.metrics["clean_metric"]
    assert "robust_fgsm_eps0.5" in r.metrics  # beside the embedding-space figures
    assert d["written"] and all(isinstance(t, str) and n >= 1 for t, n in d["written"])
    scenario = get_plugins().scenarios.get("robustness")
    col = [c for c in scenario.columns([r]) if c.title.startswith("Token attack")]
    assert col and col[0].figure(r).value == rate
    off = run_cell("nlp", "torch", {**params, "token_attack": False}, tmp_path)
    assert "token_attack" not in off.details
