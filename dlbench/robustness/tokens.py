"""A token-level attack on text classifiers: greedy substitution of real tokens by tokens of
the training vocabulary, scored by the model's loss (HotFlip-ranked, loss-verified).

Embedding-space attacks (:mod:`dlbench.robustness.embedding`) move each token's embedding
anywhere within an L2 ball, so their adversarial points are mostly no text at all. This attack
only writes texts: each step replaces one token id by another id of the training vocabulary,
and the model scores the resulting ids. For every example the model classifies correctly:

1. the loss gradient ``g_j`` with respect to the looked-up embedding of each position ``j`` is
   taken once (on the cell's framework, through the embedding-space remainder of the spec);
2. every real, not yet substituted position ``j`` and every vocabulary token ``w`` get the
   first-order estimate of the loss change ``g_j . (E[w] - E[t_j])`` (HotFlip, Ebrahimi et al.
   2018); each position keeps its ``candidates`` best tokens, and the ``evaluated`` best
   (position, token) pairs of the example are scored exactly: the full model runs on the
   substituted texts in one batch;
3. the substitution with the highest true loss is kept (one that flips the prediction first);
   when none raises the loss the example stops;
4. steps repeat until the prediction flips or the example has used its budget: ``words``
   substitutions and no more than ``fraction`` of its real tokens (at least one).

Padding (positions the model's mask marks 0) is never touched, a position is substituted at
most once (so at most ``words`` tokens differ from the original), and only ids of the training
vocabulary are written: a task offers the attack by naming their range in
``Dataset.meta["substitutable"]`` (``[first, stop)``: the NLP task's vocabulary less padding and
the unknown token). There is no synonym or grammar constraint: a substitution may change what
the text means, so the figure is the model's sensitivity to a few realisable token edits, not
a claim about imperceptible attacks.

:func:`greedy_substitution` is the attack on any :class:`TokenModel` (two callables and the
embedding table); :func:`framework_token_model` makes one from a cell's framework models;
:func:`run_token_attack` runs it in a robustness cell and records its figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dlbench.errors import DlbenchError, UnsupportedError
from dlbench.measure.parity import mask_inputs
from dlbench.params import Param
from dlbench.robustness.embedding import EmbeddingCodec, lookup
from dlbench.robustness.estimator import bucket_sizes, per_example_loss
from dlbench.robustness.target import score
from dlbench.scenarios.figures import ATTACK_FIGURES, Figure, as_float, attack_metric
from dlbench.stats import proportion_ci

if TYPE_CHECKING:
    from dlbench.framework import Model
    from dlbench.result import Result
    from dlbench.robustness.embedding import EmbeddingSplit
    from dlbench.robustness.target import EvalSet, Target
    from dlbench.run.context import CellContext
    from dlbench.spec import ModelSpec
    from dlbench.task import Dataset

NAME = "tokens"
"""The attack's name in metric names (``robust_tokens_k3``...)."""

TOKEN_PARAMS: dict[str, Param] = {
    "token_attack": Param(
        True,
        "greedy token substitution from the training vocabulary (tasks that offer it: nlp)",
        type=bool,
    ),
    "token_words": Param(
        3, "most tokens the token attack substitutes per text (k)", type=int, min=1
    ),
    "token_fraction": Param(
        0.25,
        "most substituted share of a text's real tokens (at least one token)",
        type=float,
        min=0,
        max=1,
        exclusive_min=True,
    ),
    "token_candidates": Param(
        8, "replacement tokens per position kept by the gradient ranking (m)", type=int, min=1
    ),
    "token_evaluated": Param(
        16, "(position, token) pairs per step whose true loss is computed", type=int, min=1
    ),
}
"""The robustness scenario's parameters of the token attack."""


@dataclass(frozen=True)
class TokenSettings:
    words: int = 3
    fraction: float = 0.25
    candidates: int = 8
    evaluated: int = 16
    chunk: int = 1024
    """Positions scored against the vocabulary at once (bounds memory to chunk x vocabulary)."""

    def __post_init__(self) -> None:
        if int(self.words) < 1 or int(self.candidates) < 1 or int(self.evaluated) < 1:
            raise DlbenchError(
                f"token_words={self.words}, token_candidates={self.candidates}, "
                f"token_evaluated={self.evaluated}: each must be at least 1"
            )
        if not 0.0 < float(self.fraction) <= 1.0:
            raise DlbenchError(
                f"token_fraction={self.fraction}: must be in (0, 1] (1: only token_words limits)"
            )

    def limits(self, real: np.ndarray) -> np.ndarray:
        """Substitutions allowed per text: ``words``, and at most ``fraction`` of its tokens."""
        lengths = np.asarray(real, bool).sum(axis=1)
        share = np.maximum(1, np.floor(self.fraction * lengths + 1e-9)).astype(np.int64)
        return np.minimum(int(self.words), share)


@dataclass(frozen=True)
class TokenModel:
    """What the attack needs of a classifier over token ids."""

    outputs: Callable[[Mapping[str, np.ndarray]], np.ndarray]
    """Logits ``(N, C)`` of model inputs (token ids and the other inputs)."""
    gradient: Callable[[Mapping[str, np.ndarray], np.ndarray], np.ndarray]
    """Each example's loss gradient w.r.t. the looked-up embeddings of its tokens ``(N, L, D)``."""
    table: np.ndarray
    """The embedding table ``(V, D)``."""
    token_input: str
    loss: str = "cross_entropy"


@dataclass
class TokenAttack:
    """The outcome on a set of texts."""

    tokens: np.ndarray
    """Token ids after the attack ``(N, L)``."""
    outputs: np.ndarray
    """The model's outputs on them."""
    clean_correct: np.ndarray
    flipped: np.ndarray
    """Correct on the clean text, wrong after the attack."""
    substitutions: np.ndarray
    """Positions changed per text."""
    limits: np.ndarray
    model_calls: dict[str, int] = field(default_factory=dict)

    @property
    def attacked(self) -> int:
        return int(self.clean_correct.sum())

    @property
    def flips(self) -> int:
        return int(self.flipped.sum())

    @property
    def success_rate(self) -> float:
        """Flipped / clean-correct (nan when no text was correct)."""
        return self.flips / self.attacked if self.attacked else float("nan")


def greedy_substitution(
    model: TokenModel,
    inputs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    real: np.ndarray,
    substitutable: tuple[int, int],
    settings: TokenSettings | None = None,
) -> TokenAttack:
    """Attack the texts ``inputs`` (true classes ``labels``); ``real`` marks non-padding
    positions, ``substitutable`` the ``[first, stop)`` ids that may be written."""
    settings = settings or TokenSettings()
    first, stop = int(substitutable[0]), int(substitutable[1])
    table = np.asarray(model.table, np.float32)
    if not 0 <= first < stop <= len(table):
        raise UnsupportedError(
            f"substitutable ids [{first}, {stop}) are not rows of the {len(table)}-row "
            "embedding table: the task's Dataset.meta['substitutable'] is wrong"
        )
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    real = np.asarray(real, bool)
    tokens = np.array(inputs[model.token_input], copy=True)
    others = {k: np.asarray(v) for k, v in inputs.items() if k != model.token_input}
    calls = {"outputs": 0, "gradient": 0}

    def outputs(rows: np.ndarray, toks: np.ndarray) -> np.ndarray:
        calls["outputs"] += 1
        return np.asarray(model.outputs({model.token_input: toks,
                                         **{k: v[rows] for k, v in others.items()}}))

    everyone = np.arange(len(labels))
    out = outputs(everyone, tokens)
    correct = np.argmax(out, axis=1) == labels
    loss = per_example_loss(out, labels, model.loss)
    limits = settings.limits(real)
    changed = np.zeros(tokens.shape, bool)
    active = correct & (limits > 0)
    vocab = table[first:stop]
    for _ in range(int(settings.words)):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        calls["gradient"] += 1
        grads = np.asarray(
            model.gradient({model.token_input: tokens[rows],
                            **{k: v[rows] for k, v in others.items()}}, labels[rows]),
            np.float32,
        )
        pairs = _candidates(grads, tokens[rows], real[rows] & ~changed[rows], table, vocab,
                            first, settings)
        owner = np.repeat(np.arange(len(rows)), [len(p) for p in pairs])
        flat = np.concatenate([p for p in pairs if len(p)]) if len(owner) else None
        if flat is None:
            active[rows] = False
            break
        cand = tokens[rows[owner]].copy()
        cand[np.arange(len(owner)), flat[:, 0]] = flat[:, 1]
        c_out = outputs(rows[owner], cand)
        c_loss = per_example_loss(c_out, labels[rows[owner]], model.loss)
        c_flip = np.argmax(c_out, axis=1) != labels[rows[owner]]
        for i, row in enumerate(rows):
            mine = np.flatnonzero(owner == i)
            if not len(mine):
                active[row] = False
                continue
            pool = mine[c_flip[mine]] if c_flip[mine].any() else mine  # a flipping one first
            best = pool[int(np.argmax(np.nan_to_num(c_loss[pool], nan=-np.inf)))]
            if not (c_flip[best] or c_loss[best] > loss[row]):
                active[row] = False  # no substitution raises the loss: a local optimum
                continue
            pos, tok = int(flat[best, 0]), int(flat[best, 1])
            tokens[row, pos] = tok
            changed[row, pos] = True
            loss[row] = c_loss[best]
            if c_flip[best] or changed[row].sum() >= limits[row]:
                active[row] = False
    final = outputs(everyone, tokens)
    flipped = correct & (np.argmax(final, axis=1) != labels)
    return TokenAttack(tokens, final, correct, flipped, changed.sum(axis=1), limits, calls)


def _candidates(
    grads: np.ndarray,
    tokens: np.ndarray,
    open_: np.ndarray,
    table: np.ndarray,
    vocab: np.ndarray,
    first: int,
    settings: TokenSettings,
) -> list[np.ndarray]:
    """Per example, its ``evaluated`` best ``(position, token)`` pairs by the first-order loss
    change, each position contributing at most ``candidates`` tokens."""
    ex, pos = np.nonzero(open_)
    m = min(int(settings.candidates), len(vocab))
    best_tok = np.zeros((len(ex), m), np.int64)
    best_score = np.full((len(ex), m), -np.inf)
    for s in range(0, len(ex), int(settings.chunk)):
        e, p = ex[s : s + settings.chunk], pos[s : s + settings.chunk]
        g = grads[e, p].astype(np.float64)
        cur = tokens[e, p].astype(np.int64)
        est = g @ vocab.T.astype(np.float64) - np.sum(g * table[cur], axis=1)[:, None]
        own = (cur >= first) & (cur < first + len(vocab))
        est[np.flatnonzero(own), cur[own] - first] = -np.inf  # not the token already there
        top = np.argpartition(-est, m - 1, axis=1)[:, :m]
        best_tok[s : s + len(e)] = top + first
        best_score[s : s + len(e)] = np.take_along_axis(est, top, axis=1)
    out: list[np.ndarray] = []
    for i in range(len(tokens)):
        mine = np.flatnonzero(ex == i)
        scores = best_score[mine].reshape(-1)
        keep = np.flatnonzero(np.isfinite(scores))
        keep = keep[np.argsort(-scores[keep], kind="stable")][: int(settings.evaluated)]
        out.append(np.stack([np.repeat(pos[mine], m)[keep],
                             best_tok[mine].reshape(-1)[keep]], axis=1).astype(np.int64))
    return out


# -- on a cell's framework ---------------------------------------------------------------------
def _buckets(n: int, max_batch: int) -> list[tuple[np.ndarray, int]]:
    """Rows of each padded bucket (the last row repeated) and its real size, so compiled
    variants see a few batch sizes (as :mod:`dlbench.robustness.estimator` does)."""
    out = []
    for start, stop, padded in bucket_sizes(n, max_batch):
        idx = np.arange(start, stop)
        out.append((np.concatenate([idx, np.full(padded - len(idx), stop - 1)]), stop - start))
    return out


def framework_token_model(
    model: Model,
    remainder: Model,
    split: EmbeddingSplit,
    weights: Mapping[str, np.ndarray],
    max_batch: int = 128,
) -> TokenModel:
    """A :class:`TokenModel` over a cell's trained ``model`` (outputs on token ids) and the
    embedding-space ``remainder`` of its spec (gradients w.r.t. the looked-up embeddings),
    through the framework contract alone (any framework)."""
    attacked = [c for c in split.cuts if c.name in split.attacked]
    if len(attacked) != 1:
        raise UnsupportedError(
            f"token attacks substitute one token input; this model embeds {len(attacked)}"
        )
    cut = attacked[0]

    def outputs(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        parts = []
        for idx, size in _buckets(len(inputs[cut.ids]), max_batch):
            native = model.forward(model.to_device({k: np.asarray(v)[idx] for k, v in inputs.items()}))
            parts.append(np.asarray(model.to_numpy(native))[:size])
        return np.concatenate(parts)

    def gradient(inputs: Mapping[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
        parts = []
        for idx, size in _buckets(len(labels), max_batch):
            x = lookup(split, weights, {k: np.asarray(v)[idx] for k, v in inputs.items()})
            _, g = remainder.loss_and_input_gradient(x, np.asarray(labels)[idx])
            # the gradient of the batch mean, times the batch: each example's own loss gradient
            parts.append(np.asarray(g[cut.name], np.float32)[:size] * len(idx))
        return np.concatenate(parts)

    return TokenModel(outputs, gradient, np.asarray(weights[f"{cut.embedding}.embeddings"]),
                      cut.ids, remainder.options.train.loss)


def real_positions(spec: ModelSpec, token_input: str, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Non-padding positions: the spec's mask input of the token input's shape."""
    shape = tuple(spec.inputs[token_input].attrs["shape"])
    masks = [m for m in sorted(mask_inputs(spec)) if tuple(spec.inputs[m].attrs["shape"]) == shape]
    if len(masks) != 1:
        raise UnsupportedError(
            f"token attacks need the padding mask of input {token_input!r}; the model has "
            f"{len(masks)} mask inputs of its shape"
        )
    return np.asarray(inputs[masks[0]]) > 0.5


def run_token_attack(
    ctx: CellContext,
    model: Model,
    spec: ModelSpec | None,
    target: Target | None,
    weights: Mapping[str, np.ndarray] | None,
    dataset: Dataset,
    evalset: EvalSet,
    headline: str,
) -> None:
    """The token attack in a robustness cell, for tasks that offer it: metrics
    ``robust_tokens_k<k>`` (the headline metric on the attacked texts, CI in
    ``details["metric_ci"]``), ``success_rate_tokens_k<k>`` (flips / clean-correct, Wilson CI),
    ``attack_time_s_tokens_k<k>``; ``details["token_attack"]``; a reason in
    ``details["token_attack_skipped"]`` when it cannot run."""
    p, r = ctx.params, ctx.result
    if not p.get("token_attack", True) or "substitutable" not in dataset.meta:
        return
    settings = TokenSettings(
        int(p.get("token_words") or 3),
        float(p.get("token_fraction") or 0.25),
        int(p.get("token_candidates") or 8),
        int(p.get("token_evaluated") or 16),
    )
    try:
        if target is None or spec is None or weights is None or not target.gradients:
            raise UnsupportedError(
                f"{ctx.framework.name} has no embedding gradients to rank substitutions"
            )
        codec = target.estimator.codec
        if not isinstance(codec, EmbeddingCodec) or not target.classifier:
            raise UnsupportedError("token attacks need a classifier attacked in embedding space")
        tm = framework_token_model(model, target.estimator.dl_model, codec.split, weights)
        real = real_positions(spec, tm.token_input, evalset.inputs)
    except UnsupportedError as exc:
        r.details["token_attack_skipped"] = str(exc)
        ctx.log(f"skip token attack: {exc}")
        return
    lo, hi = dataset.meta["substitutable"]
    t0 = time.perf_counter()
    res = greedy_substitution(tm, evalset.inputs, evalset.y, real, (int(lo), int(hi)), settings)
    dt = time.perf_counter() - t0
    s = score(ctx.task, p, headline, evalset.y, res.outputs, evalset.group, ctx.seed)
    sr_lo, sr_hi = proportion_ci(res.flips, res.attacked)
    robust, success, took = (attack_metric(f, NAME, settings.words, "k") for f in ATTACK_FIGURES)
    r.metrics[robust] = s.value
    r.metrics[success] = res.success_rate
    r.metrics[took] = dt
    cis = r.details.setdefault("metric_ci", {})
    cis[robust] = [s.ci_low, s.ci_high]
    cis[success] = [sr_lo, sr_hi]
    flipped = res.substitutions[res.flipped]
    changed = res.tokens != np.asarray(evalset.inputs[tm.token_input])
    r.details["token_attack"] = {
        "attack": NAME,
        "space": "tokens",
        "words": settings.words,
        "fraction": settings.fraction,
        "candidates": settings.candidates,
        "evaluated": settings.evaluated,
        "substitutable": [int(lo), int(hi)],
        "metric": s.value,
        "ci_low": s.ci_low,
        "ci_high": s.ci_high,
        "n": len(evalset.y),
        "correct": res.attacked,
        "flipped": res.flips,
        "success_rate": res.success_rate,
        "success_ci": [sr_lo, sr_hi],
        "mean_substitutions_flipped": float(flipped.mean()) if len(flipped) else float("nan"),
        # what it wrote and over what: the evidence that substitutions need not keep the meaning
        "written": _most_common(res.tokens[changed], dataset.meta.get("vocab")),
        "replaced": _most_common(evalset.inputs[tm.token_input][changed], dataset.meta.get("vocab")),
        "time_s": dt,
        "model_calls": res.model_calls,
    }
    ctx.log(
        f"token attack (<= {settings.words} substitutions): {headline} {s.value:.4f} "
        f"[{s.ci_low:.3f}, {s.ci_high:.3f}], success {res.flips}/{res.attacked} ({dt:.2f} s)"
    )




def _most_common(ids: np.ndarray, vocab: Any, top: int = 10) -> list[list[Any]]:
    """``[token, count]`` of the ``top`` most frequent ids (the token's string when the task
    lists its vocabulary in ``Dataset.meta["vocab"]``, else the id)."""
    values, counts = np.unique(np.asarray(ids).reshape(-1), return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    names = list(vocab) if vocab is not None else None
    return [[names[int(values[i])] if names and int(values[i]) < len(names) else int(values[i]),
             int(counts[i])] for i in order]


def token_figure(result: Result) -> Figure | None:
    """The token attack's success rate with its Wilson CI, for the robustness leaderboard
    (lower is better for the model; None when the cell did not run it)."""
    d = result.details.get("token_attack")
    if not isinstance(d, dict):
        return None
    lo, hi = (d.get("success_ci") or [float("nan")] * 2)[:2]
    return Figure(attack_metric("success_rate", NAME, as_float(d.get("words")), "k"), as_float(d.get("success_rate")),
                  "", as_float(lo), as_float(hi), n=int(d.get("correct") or 0),
                  higher_is_better=False)
