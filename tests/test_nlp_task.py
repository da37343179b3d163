"""The nlp task plugin: reading, tokenizer, vocabulary, split, specs, metrics and baselines on the
real UCI files (``DLBENCH_DATA_DIR``, default ``../shared/data`` beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from dlbench.builtin.tasks import nlp
from dlbench.builtin.tasks.nlp import NlpTask, Vocabulary, stratified_split, tokenize

from dlbench import spec_numpy
from dlbench.data import registry as dldata
from dlbench.errors import DatasetError, DlbenchError
from tests import family_parity

DATA = Path(os.environ.get("DLBENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_data = pytest.mark.skipif(not (DATA / "sms-spam").is_dir(), reason=f"no shared datasets in {DATA}")


@pytest.fixture(autouse=True)
def _data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLBENCH_DATA_DIR", str(DATA))


@pytest.fixture(scope="module")
def task() -> NlpTask:
    return NlpTask()


@pytest.fixture(scope="module")
def sentiment(task: NlpTask):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DLBENCH_DATA_DIR", str(DATA))
        return task.load({"dataset": "sentiment"})


@pytest.fixture(scope="module")
def spam(task: NlpTask):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DLBENCH_DATA_DIR", str(DATA))
        return task.load({"dataset": "spam"})


# -- tokenizer and vocabulary -----------------------------------------------------------------


def test_tokenizer_lowercases_and_splits_words_and_punctuation() -> None:
    assert tokenize("Don't STOP!! Call 0800-123 now, £5") == [
        "don't", "stop", "!", "!", "call", "0800", "-", "123", "now", ",", "£", "5"]
    assert tokenize("  ") == []
    text = "A very, very slow-moving movie\u0085 about a man."
    assert tokenize(text) == tokenize(text) == ["a", "very", ",", "very", "slow", "-", "moving",
                                                "movie", "about", "a", "man", "."]


def test_vocabulary_orders_by_count_then_alphabet_and_truncates() -> None:
    docs = [["b", "a", "c"], ["c", "b"], ["c", "d"]]
    vocab = Vocabulary.build(docs, 10)
    assert vocab.tokens == ("<pad>", "<unk>", "c", "b", "a", "d")
    assert Vocabulary.build(docs, 4).tokens == ("<pad>", "<unk>", "c", "b")
    with pytest.raises(DlbenchError, match="vocab_size"):
        Vocabulary.build(docs, 2)


def test_encode_truncates_pads_and_masks() -> None:
    vocab = Vocabulary.build([["x", "y", "y"]], 10)  # y=2, x=3
    ids, mask = vocab.encode([["y", "x", "zzz", "y"], [], ["x"]], 3)
    assert ids.dtype == np.int32 and mask.dtype == np.float32
    assert ids.tolist() == [[2, 3, 1], [1, 0, 0], [3, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0]]  # an empty text is one unknown token


# -- reading and splitting ------------------------------------------------------------------------


@needs_data
def test_sentiment_files_read_on_raw_newlines() -> None:
    folder = dldata.require(nlp.SENTIMENT_INFO)
    corpus = nlp.read_sentiment(folder)
    assert len(corpus.texts) == 3000
    assert np.bincount(corpus.labels).tolist() == [1500, 1500]
    assert np.bincount(corpus.groups).tolist() == [500] * 6  # (source, label) strata
    assert any("\u0085" in t for t in corpus.texts)  # str.splitlines would have cut these
    assert all("\t" not in t for t in corpus.texts)
    spam = nlp.read_spam(dldata.require(nlp.SPAM_INFO))
    assert len(spam.texts) == 5574 and int(spam.labels.sum()) == 747


def test_stratified_split_is_deterministic_and_stratified() -> None:
    groups = np.repeat([0, 1, 2], [50, 30, 20])
    tr, te = stratified_split(groups, 0.2, seed=0)
    tr2, te2 = stratified_split(groups, 0.2, seed=0)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    assert np.bincount(groups[te]).tolist() == [10, 6, 4]
    assert sorted(np.r_[tr, te].tolist()) == list(range(100))
    assert not np.array_equal(te, stratified_split(groups, 0.2, seed=1)[1])


@needs_data
def test_load_is_deterministic_and_split_is_stratified(task: NlpTask, sentiment) -> None:
    again = task.load({"dataset": "sentiment", "seed": 7})  # the cell seed does not move the split
    for k in ("tokens", "mask"):
        assert np.array_equal(sentiment.x_train[k], again.x_train[k])
        assert np.array_equal(sentiment.x_test[k], again.x_test[k])
    assert np.array_equal(sentiment.y_test, again.y_test)
    corpus = task.corpus({"dataset": "sentiment"})
    tr, te = sentiment.meta["train_index"], sentiment.meta["test_index"]
    distinct = {tuple(tokenize(t)) for t in corpus.texts}
    removed = sentiment.meta["duplicates_removed"]
    assert removed == len(corpus.texts) - len(distinct) > 0
    # the split covers every distinct text once: sizes add up to the deduplicated count
    assert sentiment.n_train + sentiment.n_test == len(distinct)
    assert len(set(tr) | set(te)) == len(distinct) and not set(te) & set(tr)
    assert np.array_equal(sentiment.y_test, corpus.labels[te])
    # stratified: each (source, label) stratum puts round(20 %) of its distinct texts in test
    kept = np.r_[tr, te]
    for g in np.unique(corpus.groups):
        n_g = int(np.sum(corpus.groups[kept] == g))
        assert int(np.sum(corpus.groups[te] == g)) == round(n_g * nlp.TEST_FRACTION)


def test_exact_duplicates_are_dropped_keeping_the_first() -> None:
    docs = [["a", "b"], ["c"], ["a", "b"], [], ["c"], [], ["b", "a"]]
    assert nlp.first_occurrences(docs).tolist() == [0, 1, 3, 6]


@needs_data
def test_vocabulary_comes_from_the_train_split_only(task: NlpTask, sentiment) -> None:
    corpus = task.corpus({"dataset": "sentiment"})
    train_tokens = {t for i in sentiment.meta["train_index"] for t in tokenize(corpus.texts[i])}
    test_only = {t for i in sentiment.meta["test_index"] for t in tokenize(corpus.texts[i])} - train_tokens
    vocab = sentiment.meta["vocab"]
    assert vocab[:2] == ["<pad>", "<unk>"]
    assert set(vocab[2:]) <= train_tokens
    assert test_only and not test_only & set(vocab)
    assert len(vocab) == len(train_tokens) + 2  # 4,706 train tokens fit in 8,000 ids
    # test words never seen in training are encoded as <unk>
    index = {t: i for i, t in enumerate(vocab)}
    doc = next(tokenize(corpus.texts[i]) for i in sentiment.meta["test_index"]
               if set(tokenize(corpus.texts[i])) & test_only)
    ids, _ = Vocabulary(tuple(vocab)).encode([doc], 64)
    expected = [index.get(t, nlp.UNK) for t in doc[:64]]
    assert ids[0, : len(expected)].tolist() == expected and nlp.UNK in expected


@needs_data
def test_tokens_and_masks_agree(spam) -> None:
    for x in (spam.x_train, spam.x_test):
        tokens, mask = x["tokens"], x["mask"]
        assert tokens.dtype == np.int32 and mask.dtype == np.float32 and tokens.shape == (len(tokens), 64)
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert np.all(mask[:, 0] == 1)  # every text has at least one token
        assert np.all((tokens > 0) == (mask > 0))  # padding is id 0 exactly where mask is 0
        lengths = mask.sum(1).astype(int)
        assert np.all(mask == (np.arange(64)[None, :] < lengths[:, None]))  # masks are prefixes
        assert tokens.max() < 8000
    assert spam.n_train + spam.n_test + spam.meta["duplicates_removed"] == 5574
    for label in (0, 1):  # stratified by label
        n = int(np.sum(spam.y_train == label) + np.sum(spam.y_test == label))
        assert int(np.sum(spam.y_test == label)) == round(n * nlp.TEST_FRACTION)


@needs_data
def test_vocab_size_and_max_len_params(task: NlpTask) -> None:
    ds = task.load({"dataset": "sentiment-yelp", "vocab_size": 100, "max_len": 8})
    assert len(ds.meta["vocab"]) == 100 and ds.x_train["tokens"].max() == 99
    assert ds.x_train["tokens"].shape == (ds.n_train, 8)
    assert ds.n_train + ds.n_test + ds.meta["duplicates_removed"] == 1000


# -- model specs ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["bag", "transformer"])
def test_spec_shapes_and_perturbation_nodes(task: NlpTask, model: str) -> None:
    params = {"model": model, "layers": 2, "max_len": 32, "vocab_size": 500, "activation": "gelu"}
    spec = task.model_spec(params)
    shapes = spec.shapes()
    assert {n: (s.attrs["shape"], s.attrs["dtype"]) for n, s in spec.inputs.items()} == {
        "tokens": ((32,), "int32"), "mask": ((32,), "float32")}
    assert shapes["embedding"] == (32, 64) and shapes[spec.output] == (2,)
    assert spec.node("embedding").attrs["input_dim"] == 500
    for node in task.perturbation(params).embedding_nodes:
        assert spec.node(node).op == "Embedding"
    if model == "transformer":
        attn = [n for n in spec.nodes if n.op == "MultiHeadSelfAttention"]
        assert len(attn) == 2 and all(n.inputs[1] == "mask" for n in attn)
        assert {"PositionEmbedding", "LayerNorm", "Add"} <= spec.ops()
    assert spec.node("pool").inputs[1] == "mask"


@pytest.mark.parametrize("model", ["bag", "transformer", "bert"])
def test_padding_does_not_change_outputs(task: NlpTask, model: str) -> None:
    params = {"model": model, "max_len": 16, "vocab_size": 50}
    spec = task.model_spec(params)
    weights = spec.init_weights(3)
    xs, _ = task.synthetic_batch(spec, 8, np.random.default_rng(0), params)
    assert np.all(xs["mask"][:, 0] == 1) and np.all((xs["tokens"] > 0) == (xs["mask"] > 0))
    out = spec_numpy.forward(spec, weights, xs)
    noisy = dict(xs, tokens=np.where(xs["mask"] > 0, xs["tokens"], 7).astype(np.int32))
    assert out.shape == (8, 2)
    np.testing.assert_allclose(spec_numpy.forward(spec, weights, noisy), out, rtol=1e-9, atol=1e-12)


def test_bad_params_name_the_fix(task: NlpTask) -> None:
    with pytest.raises(DlbenchError, match="dataset='news'"):
        task.model_spec({"dataset": "news"})
    with pytest.raises(DlbenchError, match="divisible"):
        task.model_spec({"model": "transformer", "embed_dim": 30, "heads": 4})


# -- metrics, headline, target ------------------------------------------------------------------


def test_evaluate_on_hand_made_outputs(task: NlpTask) -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    logits = np.array([[2, 1], [2, 1], [2, 1], [0, 1], [0, 1], [1, 0]], dtype=np.float32)
    # predictions 0 0 0 1 1 0: class 0 F1 = 6/8, class 1 F1 = 2/4
    got = task.evaluate(y, logits, {"dataset": "sentiment"})
    assert list(got) == ["accuracy", "macro_f1"]
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["macro_f1"] == pytest.approx((0.75 + 0.5) / 2)
    spam_metrics = task.evaluate(y, logits, {"dataset": "spam"})
    assert list(spam_metrics) == ["macro_f1", "accuracy"] and spam_metrics == got
    assert task.evaluate(y, np.zeros((6, 2)), {})["macro_f1"] == pytest.approx(0.8 / 2)


def test_macro_f1_matches_sklearn() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        y, p = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
        assert nlp.macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"))
    assert nlp.macro_f1(np.array([0, 0]), np.array([0, 0])) == 1.0


def test_headline_and_target_follow_the_dataset(task: NlpTask) -> None:
    assert task.headline({}) == "accuracy" and task.target({}) == 0.75
    assert task.headline({"dataset": "spam"}) == "macro_f1" and task.target({"dataset": "spam"}) == 0.90
    assert task.is_better("macro_f1", 0.91, 0.90)


def test_perturbation_is_the_token_embedding(task: NlpTask) -> None:
    dom = task.perturbation({})
    assert (dom.space, dom.unit, dom.embedding_nodes) == ("embedding", "relative-norm", ("embedding",))


# -- registration -------------------------------------------------------------------------------


def test_registered_digests_match_the_shared_sums() -> None:
    sums_file = DATA / "SHA256SUMS"
    if not sums_file.is_file():
        pytest.skip("no SHA256SUMS")
    for info in (nlp.SENTIMENT_INFO, nlp.SPAM_INFO):
        sums = dldata.read_sha256sums(sums_file.read_text(), prefix=f"{info.name}/")
        for fe in info.files:
            assert sums[fe.path] == fe.sha256
            assert fe.url and fe.url.startswith("https://archive.ics.uci.edu/") and fe.archive_member
    assert NlpTask().datasets({"dataset": "spam"}) == ["sms-spam"]


def test_missing_data_raises_with_the_fix(task: NlpTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLBENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match="dlbench data fetch sms-spam"):
        task.load({"dataset": "spam"})


def test_plugin_registers_task_and_datasets() -> None:
    tasks, infos = [], []
    nlp.dlbench_register_tasks(tasks.append)
    nlp.dlbench_register_datasets(infos.append)
    assert [t.name for t in tasks] == ["nlp"] and tasks[0].domain == "nlp"
    assert [i.name for i in infos] == ["sentiment-sentences", "sms-spam"]


# -- baselines ------------------------------------------------------------------------------------


@needs_data
def test_tfidf_logistic_regression_baselines(task: NlpTask, sentiment, spam) -> None:
    # measured (duplicates removed): spam macro-F1 0.944, sentiment accuracy 0.829
    model = task.classic_model({"dataset": "spam"}).fit(spam.x_train, spam.y_train)
    out = model.predict(spam.x_test)
    assert out.shape == (spam.n_test, 2) and 0 < model.training_loss < 0.5
    assert task.evaluate(spam.y_test, out, {"dataset": "spam"})["macro_f1"] >= 0.90
    model = task.classic_model({}).fit(sentiment.x_train, sentiment.y_train)
    assert task.evaluate(sentiment.y_test, model.predict(sentiment.x_test), {})["accuracy"] >= 0.75


def _torch_train(task: NlpTask, ds, params: dict, epochs: int) -> dict[str, float]:
    from dlbench.framework import BuildOptions

    torch_framework = pytest.importorskip("dlbench.builtin.frameworks.torch")
    fw = torch_framework.TorchFramework()
    fw.setup(1, 0, {})
    spec = task.model_spec(params, ds)
    model = fw.build(spec, spec.init_weights(0), BuildOptions(train=task.train_config(params), seed=0))
    for epoch in range(1, epochs + 1):
        order = np.random.default_rng([0, epoch]).permutation(ds.n_train)
        model.fit_epoch(ds.x_train, ds.y_train, 32, order)
    return task.evaluate(ds.y_test, model.predict(ds.x_test), params)


@needs_data
def test_torch_bag_model_reaches_the_guide_levels(task: NlpTask, sentiment, spam) -> None:
    pytest.importorskip("torch")
    # measured (torch 2.x CPU, seed 0, batch 32, duplicates removed): sentiment accuracy 0.822
    # after 3 epochs; spam macro-F1 0.959 after 2
    assert _torch_train(task, sentiment, {}, 3)["accuracy"] >= 0.75
    assert _torch_train(task, spam, {"dataset": "spam"}, 2)["macro_f1"] >= 0.90


# ---------------------------------------------------------------------------------------------
# BERT family
# ---------------------------------------------------------------------------------------------

def _bert_by_formula(layers: int, d: int, vocab: int = 30522, positions: int = 512,
                     classes: int = 2, seq: int = 128) -> tuple[int, int]:
    """(parameters, multiply-adds per sequence) of a post-LN BERT classifier written out by hand,
    independent of the spec: embeddings + LayerNorm, per layer Q/K/V/O + two LayerNorms + a 4d
    feed-forward, the tanh pooler, the classifier."""
    ffn = 4 * d
    per_layer = 4 * (d * d + d) + 2 * d + (d * ffn + ffn) + (ffn * d + d) + 2 * d
    params = vocab * d + positions * d + 2 * d + layers * per_layer + (d * d + d) + (d * classes + classes)
    layer_macs = 4 * seq * d * d + 2 * seq * seq * d + 2 * seq * d * ffn  # projections, QK^T and AV, FFN
    return params, layers * layer_macs + d * d + d * classes


BERT_BASE = {"model": "bert", "size": "base", "max_len": 128, "vocab_size": 30522}


def test_bert_base_parameters_and_flops() -> None:
    task = NlpTask()
    spec = task.model_spec(BERT_BASE)
    params, macs = _bert_by_formula(12, 768)
    assert spec.parameter_count() == params
    # the published 110M (109.48M in Hugging Face's BertModel, whose 1,536 token-type weights
    # this spec leaves out and whose 1,538 classifier weights it adds)
    assert params == 109_482_240 - 2 * 768 + (768 * 2 + 2)
    assert spec.flops_per_example() == 2 * macs  # about 22.3 GFLOPs per 128-token sequence
    shapes = spec.shapes()
    assert shapes["layer11_norm2"] == (128, 768) and shapes["layer11_ffn1"] == (128, 3072)
    assert spec.node("layer0_attention").attrs["num_heads"] == 12
    assert spec.node("layer0_ffn1").attrs["activation"] == "gelu"


@pytest.mark.parametrize("size,layers,d,heads", [("tiny", 2, 128, 2), ("mini", 4, 256, 4),
                                                 ("small", 4, 512, 8)])
def test_bert_miniatures(size: str, layers: int, d: int, heads: int) -> None:
    task = NlpTask()
    spec = task.model_spec({"model": "bert", "size": size})  # the task's vocab (8000) and max_len (64)
    assert spec.parameter_count() == _bert_by_formula(layers, d, vocab=8000, seq=64)[0]
    attention = [n for n in spec.nodes if n.op == "MultiHeadSelfAttention"]
    assert len(attention) == layers and {n.attrs["num_heads"] for n in attention} == {heads}
    assert all(n.inputs[1] == "mask" for n in attention)  # padded keys are ignored
    assert spec.node("pool").inputs == (f"layer{layers - 1}_norm2", "mask")  # mean over real tokens
    assert spec.shapes()["embedding"] == (64, d)
    assert task.perturbation({}).embedding_nodes == ("embedding",)


def test_bert_synthetic_inputs_have_the_real_shapes() -> None:
    task = NlpTask()
    spec = task.model_spec(BERT_BASE)
    xs, y = task.synthetic_batch(spec, 2, np.random.default_rng(0), BERT_BASE)
    assert xs["tokens"].shape == xs["mask"].shape == (2, 128)
    assert xs["tokens"].max() < 30522 and set(np.unique(xs["mask"])) <= {0.0, 1.0}


BERT_PARITY = {"model": "bert", "size": "tiny", "max_len": 8, "vocab_size": 50}


@pytest.mark.parametrize("fw_name", family_parity.framework_ids())
def test_bert_parity_on_every_framework(fw_name: str) -> None:
    """Outputs vs NumPy; loss and one SGD step vs torch (token ids take no gradient)."""
    family_parity.assert_family_parity(fw_name, "nlp", BERT_PARITY)
