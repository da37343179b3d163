"""Built-in task plugin ``nlp``: short-text classification (sentiment, SMS spam).

Data (read from the dataset cache, see :mod:`dlbench.data.registry`):

* ``sentiment``: UCI Sentiment Labelled Sentences, amazon + imdb + yelp (3,000 sentences,
  balanced); ``sentiment-amazon``/``-imdb``/``-yelp`` use one source (1,000 each).
  Classes: 0 negative, 1 positive.
* ``spam``: UCI SMS Spam Collection (5,574 messages, 13 % spam). Classes: 0 ham, 1 spam.

Preprocessing (once, in NumPy, identical for every framework):

* files are split on raw ``b"\\n"`` bytes and decoded as UTF-8 (no csv module, no
  ``str.splitlines``: the imdb file holds U+0085 inside sentences);
* :func:`tokenize` lowercases and splits with the regex ``\\w+(?:'\\w+)*|[^\\w\\s]`` (words with
  inner apostrophes, and every other non-space character as its own token);
* exact duplicates (texts whose token lists are identical) are removed before the split, the
  first occurrence kept (:func:`first_occurrences`; no duplicate pair in these files disagrees
  on its label): 21 of the 3,000 sentiment sentences, 415 of the 5,574 SMS messages, so no text
  is in both train and test; the number removed is ``Dataset.meta["duplicates_removed"]``;
* the split is stratified (by source and label), seeded with the fixed :data:`SPLIT_SEED`
  whatever the cell's seed: 80 % train, 20 % test of the distinct texts, both kept in file order
  (``meta["train_index"]``/``["test_index"]`` index the corpus as read);
* the vocabulary comes from the train split only: tokens by descending count then
  alphabetically, truncated to ``vocab_size`` ids where 0 is padding and 1 unknown;
* inputs ``tokens`` (int32, ``(max_len,)``: the first ``max_len`` tokens, zero-padded) and
  ``mask`` (float32, 1 for a real token, 0 for padding). A text without tokens becomes one unknown
  token so that no row is all padding.

Models (the token Embedding node is named ``embedding``, ``vocab_size`` x ``embed_dim``):

* ``bag``: Embedding -> masked GlobalAvgPool -> Dense(``embed_dim``, ``activation``) -> Dense(C);
* ``transformer``: Embedding + PositionEmbedding, then ``layers`` post-norm encoder blocks
  (masked self-attention with ``heads`` heads + residual + LayerNorm; Dense(2 x ``embed_dim``,
  ``activation``) -> Dense(``embed_dim``) + residual + LayerNorm), masked mean pool, Dense(C);
* ``bert``: a BERT encoder of ``size`` tiny (2 layers, d=128, 2 heads), mini (4, 256, 4), small
  (4, 512, 8) or base (12, 768, 12), post-LN, GELU feed-forward of 4d, masked mean pooling and
  BERT's tanh pooler (:mod:`._bert`, which states where it departs from the published model);
  ``size`` sets its shape, ``embed_dim``/``layers``/``heads`` shape ``transformer`` only. Speed
  cells read no data: ``max_len: 128, vocab_size: 30522`` gives BERT's input shapes.

Metrics: ``accuracy`` and ``macro_f1``. The headline (:meth:`NlpTask.headline`, which
:meth:`NlpTask.target` refers to) is ``accuracy`` for the balanced sentiment sets and ``macro_f1`` for
the imbalanced spam set (always predicting ham scores 0.87 accuracy but 0.46 macro-F1).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    Task,
    TrainConfig,
    find_corruption,
    hookimpl,
    require,
)

from ._bert import SIZES as BERT_SIZES
from ._bert import bert_spec

SPLIT_SEED = 0
"""Seed of the train/test split: fixed, so every cell and every seed sees the same split."""
TEST_FRACTION = 0.2
PAD, UNK = 0, 1

_UCI = "https://archive.ics.uci.edu/static/public"
SENTIMENT_SOURCES = ("amazon", "imdb", "yelp")
SENTIMENT_FILES = {"amazon": "amazon_cells_labelled.txt", "imdb": "imdb_labelled.txt",
                   "yelp": "yelp_labelled.txt"}

SENTIMENT_INFO = DatasetInfo(
    name="sentiment-sentences",
    description="UCI Sentiment Labelled Sentences: 3,000 review sentences (amazon, imdb, yelp), "
                "positive/negative",
    files=tuple(
        FileEntry(path, digest, f"{_UCI}/331/sentiment+labelled+sentences.zip",
                  f"sentiment labelled sentences/{path}")
        for path, digest in (
            ("amazon_cells_labelled.txt",
             "47003fc0a0d4840b00e96e715b6189bad09e7443a3da41c4cbe12ffc79f86ae3"),
            ("imdb_labelled.txt", "aef2e49e3da25714d61175e3a6e68eeef74a20a2f914318dc3be9947ea86512d"),
            ("yelp_labelled.txt", "c76468b7b5c6e56a0804d728345c5f84aa2142ddb214420f61cc9cfd4c00d2ea"),
        )),
    licence="CC BY 4.0",
    citation="Kotzias, Denil, de Freitas, Smyth: From Group to Individual Labels using Deep "
             "Features, KDD 2015",
    homepage="https://archive.ics.uci.edu/dataset/331/sentiment+labelled+sentences",
    size="0.2 MB",
    redistributable=True,
)

SPAM_INFO = DatasetInfo(
    name="sms-spam",
    description="UCI SMS Spam Collection: 5,574 SMS messages, 4,827 ham / 747 spam",
    files=(FileEntry("SMSSpamCollection",
                     "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
                     f"{_UCI}/228/sms+spam+collection.zip", "SMSSpamCollection"),),
    licence="CC BY 4.0",
    citation="Almeida, Gomez Hidalgo, Yamakami: Contributions to the Study of SMS Spam "
             "Filtering: New Collection and Results, DocEng 2011",
    homepage="https://archive.ics.uci.edu/dataset/228/sms+spam+collection",
    size="0.5 MB",
    redistributable=True,
)

DATASETS = ("sentiment", *(f"sentiment-{s}" for s in SENTIMENT_SOURCES), "spam")
TARGETS = {"sentiment": 0.75, "sentiment-amazon": 0.75, "sentiment-imdb": 0.75,
           "sentiment-yelp": 0.75, "spam": 0.90}
"""Time-to-accuracy targets on the headline metric (accuracy; macro-F1 for spam)."""

# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """Raw texts with integer labels and a stratification group per text."""

    texts: tuple[str, ...]
    labels: np.ndarray  # int64 (N,)
    groups: np.ndarray  # int64 (N,): stratification key (source * classes + label)
    class_names: tuple[str, ...]


def _lines(path: Path) -> list[str]:
    """Non-empty lines of a UTF-8 file split on raw ``\\n`` bytes (``\\r`` stripped)."""
    out = []
    for raw in path.read_bytes().split(b"\n"):
        line = raw.rstrip(b"\r").decode("utf-8")
        if line.strip():
            out.append(line)
    return out


def read_sentiment(folder: Path, sources: Sequence[str] = SENTIMENT_SOURCES) -> Corpus:
    """``sentence<TAB>label`` lines, sources concatenated in the given order."""
    texts: list[str] = []
    labels: list[int] = []
    groups: list[int] = []
    for si, src in enumerate(sources):
        for line in _lines(folder / SENTIMENT_FILES[src]):
            text, _, label = line.rpartition("\t")
            if label.strip() not in ("0", "1"):
                raise DatasetError(f"{SENTIMENT_FILES[src]}: bad label {label!r} in line {line[:60]!r} "
                                   f"(re-fetch: dlbench data fetch sentiment-sentences)")
            texts.append(text.strip())
            labels.append(int(label))
            groups.append(si * 2 + int(label))
    return Corpus(tuple(texts), np.asarray(labels, np.int64), np.asarray(groups, np.int64),
                  ("negative", "positive"))


def read_spam(folder: Path) -> Corpus:
    """``label<TAB>text`` lines with labels ``ham``/``spam``."""
    texts: list[str] = []
    labels: list[int] = []
    for line in _lines(folder / "SMSSpamCollection"):
        label, _, text = line.partition("\t")
        if label not in ("ham", "spam"):
            raise DatasetError(f"SMSSpamCollection: bad label {label!r} (re-fetch: dlbench data fetch sms-spam)")
        texts.append(text.strip())
        labels.append(int(label == "spam"))
    y = np.asarray(labels, np.int64)
    return Corpus(tuple(texts), y, y.copy(), ("ham", "spam"))


# ---------------------------------------------------------------------------------------------
# Tokenizer, vocabulary, encoding, split
# ---------------------------------------------------------------------------------------------

TOKEN_RE = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lowercase, then words (with inner apostrophes) and single punctuation characters."""
    return TOKEN_RE.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    """Token strings by id; id 0 is ``<pad>``, id 1 ``<unk>``."""

    tokens: tuple[str, ...]

    @classmethod
    def build(cls, docs: Sequence[Sequence[str]], size: int) -> Vocabulary:
        """The ``size - 2`` most frequent tokens of ``docs`` (ties: alphabetical) after pad/unk."""
        if size < 3:
            raise DlbenchError(f"vocab_size={size}: must be at least 3 (pad, unk and one token)")
        counts = Counter(t for d in docs for t in d)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls(("<pad>", "<unk>", *(t for t, _ in ranked[: size - 2])))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def encode(self, docs: Sequence[Sequence[str]], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens int32 (N, max_len), mask float32 (N, max_len))``; truncates, pads with 0."""
        index = self.index
        ids = np.zeros((len(docs), max_len), np.int32)
        mask = np.zeros((len(docs), max_len), np.float32)
        for i, doc in enumerate(docs):
            row = [index.get(t, UNK) for t in doc[:max_len]] or [UNK]
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1.0
        return ids, mask


def first_occurrences(docs: Sequence[Sequence[str]]) -> np.ndarray:
    """Sorted indices of the first text of each distinct token list (exact duplicates dropped)."""
    first: dict[tuple[str, ...], int] = {}
    for i, doc in enumerate(docs):
        first.setdefault(tuple(doc), i)
    return np.fromiter(first.values(), np.int64, len(first))


def stratified_split(groups: np.ndarray, test_fraction: float = TEST_FRACTION,
                     seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices; each group puts ``round(n * test_fraction)`` in test."""
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        test.append(rng.permutation(idx)[: int(round(len(idx) * test_fraction))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(groups)), test_idx)
    return train_idx, test_idx


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def predicted_labels(outputs: np.ndarray) -> np.ndarray:
    """Argmax of ``(N, C)`` scores; a 1-D array is taken as labels already."""
    out = np.asarray(outputs)
    return out.astype(np.int64) if out.ndim == 1 else np.argmax(out, axis=-1)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over the labels present in ``y_true`` or ``y_pred`` (sklearn's default;
    a label with no true and no predicted example is skipped, 0/0 precision counts as 0)."""
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_pred = np.asarray(y_pred).reshape(-1).astype(np.int64)
    f1s = []
    for c in np.union1d(y_true, y_pred):
        tp = float(np.sum((y_true == c) & (y_pred == c)))
        fp = float(np.sum((y_true != c) & (y_pred == c)))
        fn = float(np.sum((y_true == c) & (y_pred != c)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0)
    return float(np.mean(f1s)) if f1s else 0.0


# ---------------------------------------------------------------------------------------------
# Classic baseline
# ---------------------------------------------------------------------------------------------


class TfidfLogReg:
    """TF-IDF over the (truncated, unpadded) token ids + logistic regression.

    Works on the same ``tokens``/``mask`` inputs as the neural models, so it sees exactly the
    text they see. ``predict`` returns ``(N, C)`` log-probabilities (argmax = predicted class).
    """

    def __init__(self, vocab_size: int, c: float = 10.0, random_state: int = 0) -> None:
        self.vocab_size = vocab_size
        self.c = c
        self.random_state = random_state
        self.training_loss = float("nan")
        """Mean cross-entropy on the training set after :meth:`fit`."""
        self._tfidf: Any = None
        self._clf: Any = None

    def _counts(self, x: Batch) -> Any:
        from scipy.sparse import csr_matrix

        ids = np.asarray(x["tokens"])
        keep = np.asarray(x["mask"]) > 0.5
        rows = np.nonzero(keep)[0]
        m = csr_matrix((np.ones(len(rows)), (rows, ids[keep])), shape=(len(ids), self.vocab_size))
        m.sum_duplicates()
        return m

    def fit(self, x: Batch, y: np.ndarray) -> TfidfLogReg:
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.linear_model import LogisticRegression

        self._tfidf = TfidfTransformer(sublinear_tf=True)
        feats = self._tfidf.fit_transform(self._counts(x))
        labels = np.asarray(y).astype(np.int64)
        self._clf = LogisticRegression(C=self.c, max_iter=2000, random_state=self.random_state)
        self._clf.fit(feats, labels)
        proba = self._clf.predict_proba(feats)
        col = np.searchsorted(self._clf.classes_, labels)
        self.training_loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(labels)), col], 1e-12, 1))))
        return self

    def predict(self, x: Batch) -> np.ndarray:
        if self._clf is None:
            raise DlbenchError("TfidfLogReg.predict called before fit")
        proba = self._clf.predict_proba(self._tfidf.transform(self._counts(x)))
        return np.log(np.clip(proba, 1e-12, 1.0)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------


class NlpTask(Task):
    name: ClassVar[str] = "nlp"
    domain: ClassVar[str] = "nlp"
    description: ClassVar[str] = ("Short-text classification: review sentiment (UCI sentences) or "
                                  "SMS spam, with an embedding-bag or a small transformer")
    params: ClassVar[dict[str, Param]] = {
        "dataset": Param("sentiment", "sentiment (amazon+imdb+yelp), one sentiment source, or spam",
                         DATASETS),
        "model": Param("bag", "bag: embedding bag + MLP; transformer: small encoder; bert: BERT "
                       "encoder of size", ("bag", "transformer", "bert")),
        "size": Param("tiny", "bert: tiny (2 layers, d=128), mini (4, 256), small (4, 512), "
                      "base (12, 768)", tuple(BERT_SIZES)),
        "activation": Param("relu", "hidden activation", ACTIVATIONS),
        "max_len": Param(64, "tokens per text (truncate / pad)", type=int, min=1),
        "vocab_size": Param(8000, "vocabulary size including pad and unk", type=int, min=3),
        "embed_dim": Param(64, "embedding / model width", type=int, min=1),
        "layers": Param(1, "transformer encoder blocks", (1, 2)),
        "heads": Param(4, "attention heads (must divide embed_dim)", type=int, min=1),
    }
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")
    higher_is_better: ClassVar[dict[str, bool]] = {"accuracy": True, "macro_f1": True}

    # -- parameters ------------------------------------------------------------------------------
    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Task parameters with defaults filled in, validated."""
        p = {k: params.get(k, v.default) for k, v in self.params.items()}
        for k, v in self.params.items():
            err = v.validate(k, p[k])
            if err:
                raise DlbenchError(f"task nlp: {err}")
        if p["max_len"] < 1 or p["embed_dim"] < 1 or p["heads"] < 1:
            raise DlbenchError("task nlp: max_len, embed_dim and heads must be positive")
        if p["embed_dim"] % p["heads"]:
            raise DlbenchError(f"task nlp: embed_dim={p['embed_dim']} is not divisible by "
                               f"heads={p['heads']}: choose heads dividing it (e.g. 4)")
        return p

    def metrics_for(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """Metrics of this configuration, headline first (macro-F1 leads for spam)."""
        if self.resolve(params)["dataset"] == "spam":
            return ("macro_f1", "accuracy")
        return self.metrics

    def headline(self, params: Mapping[str, Any]) -> str:
        return self.metrics_for(params)[0]

    # -- data ------------------------------------------------------------------------------------
    def datasets(self, params: Mapping[str, Any]) -> list[str]:
        ds = self.resolve(params)["dataset"]
        return [SPAM_INFO.name] if ds == "spam" else [SENTIMENT_INFO.name]

    def corpus(self, params: Mapping[str, Any]) -> Corpus:
        ds = self.resolve(params)["dataset"]
        if ds == "spam":
            return read_spam(require(SPAM_INFO))
        sources = SENTIMENT_SOURCES if ds == "sentiment" else (ds.split("-", 1)[1],)
        return read_sentiment(require(SENTIMENT_INFO), sources)

    def load(self, params: Mapping[str, Any]) -> Dataset:
        p = self.resolve(params)
        corpus = self.corpus(p)
        docs = [tokenize(t) for t in corpus.texts]
        distinct = first_occurrences(docs)
        train_pos, test_pos = stratified_split(corpus.groups[distinct])
        train_idx, test_idx = distinct[train_pos], distinct[test_pos]
        vocab = Vocabulary.build([docs[i] for i in train_idx], p["vocab_size"])
        tr_ids, tr_mask = vocab.encode([docs[i] for i in train_idx], p["max_len"])
        te_ids, te_mask = vocab.encode([docs[i] for i in test_idx], p["max_len"])
        return Dataset(
            x_train={"tokens": tr_ids, "mask": tr_mask}, y_train=corpus.labels[train_idx],
            x_test={"tokens": te_ids, "mask": te_mask}, y_test=corpus.labels[test_idx],
            num_classes=len(corpus.class_names), name=p["dataset"],
            meta={"vocab": list(vocab.tokens), "class_names": list(corpus.class_names),
                  "substitutable": (UNK + 1, len(vocab)),  # ids a token attack may write
                  "train_index": train_idx, "test_index": test_idx,
                  "duplicates_removed": len(docs) - len(distinct),
                  "split": f"exact duplicates removed ({len(docs) - len(distinct)}), stratified "
                           f"{1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%}, seed {SPLIT_SEED}"})

    # -- model -----------------------------------------------------------------------------------
    def model_spec(self, params: Mapping[str, Any], dataset: Dataset | None = None) -> ModelSpec:
        """The embedding table always has ``vocab_size`` rows (unused rows stay at their initial
        values), so the spec does not depend on the data and speed cells need no download."""
        p = self.resolve(params)
        n_classes = 2
        if dataset is not None and dataset.num_classes:
            n_classes = dataset.num_classes
        d, act, length = p["embed_dim"], p["activation"], p["max_len"]
        if p["model"] == "bert":
            return bert_spec(f"nlp-bert-{p['size']}", BERT_SIZES[p["size"]], length, p["vocab_size"],
                             n_classes)
        b = SpecBuilder(f"nlp-{p['model']}")
        tokens = b.input("tokens", (length,), "int32")
        mask = b.input("mask", (length,), "float32")
        x = b.embedding(tokens, p["vocab_size"], d, name="embedding")
        if p["model"] == "bag":
            h = b.global_avg_pool(x, mask, name="pool")
            h = b.dense(h, d, act, name="hidden")
            return b.build(b.dense(h, n_classes, name="logits"))
        x = b.position_embedding(x, length, name="positions")
        for i in range(p["layers"]):
            a = b.self_attention(x, p["heads"], mask, name=f"block{i}_attention")
            x = b.layer_norm(b.add(x, a, name=f"block{i}_residual1"), name=f"block{i}_norm1")
            f = b.dense(x, 2 * d, act, name=f"block{i}_ff1")
            f = b.dense(f, d, name=f"block{i}_ff2")
            x = b.layer_norm(b.add(x, f, name=f"block{i}_residual2"), name=f"block{i}_norm2")
        h = b.global_avg_pool(x, mask, name="pool")
        return b.build(b.dense(h, n_classes, name="logits"))

    def train_config(self, params: Mapping[str, Any]) -> TrainConfig:
        """Adam at 1e-3; BERT at 3e-4, a lower rate for the deeper post-LN encoder trained
        without warm-up (Turc et al. fine-tune the BERT miniatures at 1e-4 to 3e-4)."""
        lr = 3e-4 if self.resolve(params)["model"] == "bert" else 1e-3
        return TrainConfig(loss="cross_entropy", optimizer="adam", learning_rate=lr)

    def default_epochs(self, params: Mapping[str, Any]) -> int:
        """At batch 32 both models reach their test plateau in 2-4 epochs on the combined sentiment
        set and on spam (then overfit); a single sentiment source (800 texts) needs about 6."""
        return 5 if self.resolve(params)["dataset"] in ("sentiment", "spam") else 8

    def target(self, params: Mapping[str, Any]) -> float | None:
        """Target on the headline metric of :meth:`metrics_for` (accuracy; macro-F1 for spam)."""
        return TARGETS[self.resolve(params)["dataset"]]

    def synthetic_batch(self, spec: ModelSpec, batch_size: int, rng: np.random.Generator,
                        params: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Random token ids with a {0, 1} prefix mask of random length (at least one token)."""
        xs, y = super().synthetic_batch(spec, batch_size, rng, params)
        length = xs["tokens"].shape[1]
        lengths = rng.integers(1, length + 1, size=batch_size)
        mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.float32)
        xs["mask"] = mask
        xs["tokens"] = np.where(mask > 0, np.maximum(xs["tokens"], UNK), PAD).astype(np.int32)
        return xs, y

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, y_true: np.ndarray, outputs: np.ndarray, params: Mapping[str, Any]) -> dict[str, float]:
        y = np.asarray(y_true).reshape(-1).astype(np.int64)
        pred = predicted_labels(outputs)
        if len(pred) != len(y):
            raise DlbenchError(f"task nlp: {len(pred)} outputs for {len(y)} test examples")
        scores = {"accuracy": float(np.mean(pred == y)) if len(y) else 0.0,
                  "macro_f1": macro_f1(y, pred)}
        return {m: scores[m] for m in self.metrics_for(params)}

    def classic_model(self, params: Mapping[str, Any]) -> TfidfLogReg:
        p = self.resolve(params)
        return TfidfLogReg(p["vocab_size"], random_state=int(params.get("seed", 0) or 0))

    def perturbation(self, params: Mapping[str, Any]) -> PerturbationDomain:
        return PerturbationDomain(space="embedding", clip_min=None,
                                  clip_max=None, unit="relative-norm", embedding_nodes=("embedding",))

    def describe(self, params: Mapping[str, Any]) -> str:
        p = self.resolve(params)
        return (f"{p['dataset']} classification, {p['model']} model ({p['activation']}), "
                f"max_len {p['max_len']}, vocab {p['vocab_size']}")

    def corruptions(self, params: Mapping[str, Any]) -> tuple[Corruption, ...]:
        return TEXT_CORRUPTIONS

    def corrupt(self, x: Batch, y: np.ndarray, corruption: str, level: int,
                rng: np.random.Generator, dataset: Dataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Character typos re-encoded through the train vocabulary (``dataset.meta["vocab"]``)."""
        find_corruption(TEXT_CORRUPTIONS, corruption, self.name)
        tokens = typo_tokens(x["tokens"], x["mask"], dataset.meta["vocab"], level, rng, UNK)
        return {**x, "tokens": tokens}, y


# ---------------------------------------------------------------------------------------------
# Corruptions: character typos in 5/10/20% of the words, re-encoded through the task's vocabulary
# (a misspelt word usually becomes the unknown token, as it would for a deployed model)
# ---------------------------------------------------------------------------------------------

TEXT_CORRUPTIONS = (Corruption("typos", (0.05, 0.10, 0.20), "fraction of words"),)

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def typo(word: str, rng: np.random.Generator) -> str:
    """One character edit: swap two neighbours, delete, insert or substitute a letter."""
    if len(word) < 2:
        return word + LETTERS[int(rng.integers(26))]
    op = int(rng.integers(4))
    i = int(rng.integers(len(word) - 1 if op == 0 else len(word)))
    if op == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 1:
        return word[:i] + word[i + 1 :]
    letter = LETTERS[int(rng.integers(26))]
    if op == 2:
        return word[:i] + letter + word[i:]
    return word[:i] + letter + word[i + 1 :]


def typo_tokens(
    tokens: np.ndarray,
    mask: np.ndarray,
    vocab: Sequence[str],
    level: int,
    rng: np.random.Generator,
    unk: int = 1,
) -> np.ndarray:
    """Token ids ``(N, L)`` with a typo in each real word token with probability of the level's
    fraction, re-encoded through ``vocab`` (id -> token; unknown -> ``unk``). Punctuation and
    unknown-word tokens are left alone."""
    frac = find_corruption(TEXT_CORRUPTIONS, "typos", "nlp").value(level)
    index = {t: i for i, t in enumerate(vocab)}
    out = np.array(tokens, copy=True)
    hit = (rng.random(out.shape) < frac) & (np.asarray(mask) > 0.5)
    for i, j in zip(*np.nonzero(hit), strict=True):
        tid = int(out[i, j])
        word = vocab[tid] if 0 <= tid < len(vocab) else ""
        if tid == unk or not word.replace("'", "").isalpha():
            continue
        out[i, j] = index.get(typo(word, rng), unk)
    return out


@hookimpl
def dlbench_register_tasks(register: Any) -> None:
    register(NlpTask())


@hookimpl
def dlbench_register_datasets(register: Any) -> None:
    register(SENTIMENT_INFO)
    register(SPAM_INFO)
