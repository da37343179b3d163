"""Parity: do two frameworks compute the same thing from the same weights and inputs?

:func:`measure_parity` compares a candidate model with a reference model (both built from the
same ``spec.without_dropout()`` and the same canonical weights): outputs, the loss, input
gradients and the weight update of one training step; its two sides are
:func:`reference_figures` (the reference's arrays, which a run can compute once) and
:func:`compare_with_reference`. :func:`layer_specs` gives one small spec
per op (the parity tests of every framework run over it) and :func:`example_inputs` their data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dlbench import spec_numpy
from dlbench.framework import Model
from dlbench.spec import ModelSpec, SpecBuilder

FP32_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ParityRow:
    """One comparison. ``tolerance``/``passed`` are None where only the error is reported (bf16)."""

    check: str
    rel_error: float
    tolerance: float | None
    passed: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def relative_error(a: Any, b: Any) -> float:
    """``max|a - b| / max(max|b|, 1e-12)``; ``b`` is the reference. Shapes must match."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"cannot compare shapes {a64.shape} and {b64.shape}")
    if a64.size == 0:
        return 0.0
    return float(np.max(np.abs(a64 - b64)) / max(float(np.max(np.abs(b64))), 1e-12))


def mask_inputs(spec: ModelSpec) -> set[str]:
    """Inputs used as masks (second input of GlobalAvgPool, MultiHeadSelfAttention, EmbeddingBag)."""
    return {n.inputs[1] for n in spec.nodes
            if n.op in ("GlobalAvgPool", "MultiHeadSelfAttention", "EmbeddingBag") and len(n.inputs) > 1}


def gradient_inputs(spec: ModelSpec) -> list[str]:
    """Inputs a gradient is taken for: float inputs that are not masks (ids and masks are not)."""
    masks = mask_inputs(spec)
    return [name for name, node in spec.inputs.items()
            if node.attrs.get("dtype", "float32") == "float32" and name not in masks]


def _row(check: str, err: float, tolerance: float | None) -> ParityRow:
    if tolerance is None:
        return ParityRow(check, err, None, None)
    return ParityRow(check, err, tolerance, bool(np.isfinite(err) and err <= tolerance))


def _tolerance(*models: Model) -> float | None:
    return _tolerance_for(*(getattr(m.options, "precision", "fp32") for m in models))


def _tolerance_for(*precisions: str) -> float | None:
    return None if any(p != "fp32" for p in precisions) else FP32_TOLERANCE


def _flat(arrays: Mapping[str, np.ndarray], keys: list[str]) -> np.ndarray:
    if not keys:
        return np.zeros(0)
    return np.concatenate([np.asarray(arrays[k], dtype=np.float64).ravel() for k in keys])


def numpy_output_row(spec: ModelSpec, weights: Mapping[str, np.ndarray], candidate: Model,
                     inputs: Mapping[str, np.ndarray]) -> ParityRow:
    """Candidate outputs against the NumPy ground truth (:mod:`dlbench.spec_numpy`)."""
    ref = spec_numpy.forward(spec, weights, inputs)
    return _row("outputs", relative_error(candidate.predict(dict(inputs)), ref), _tolerance(candidate))


GRADIENT = "input_gradient:"
BEFORE = "weights_before:"
AFTER = "weights_after:"


def reference_figures(reference: Model, inputs: Mapping[str, np.ndarray], targets: np.ndarray,
                      train: bool = True) -> dict[str, np.ndarray]:
    """The reference's side of :func:`measure_parity`, as NumPy arrays: ``outputs``, ``loss``
    and, with ``train``, ``input_gradient:<input>`` (the float non-mask inputs it returns a
    gradient for) and ``weights_before:<name>`` / ``weights_after:<name>`` around one
    ``train_step``; the reference ends with its weights. :func:`compare_with_reference` takes
    them, so a run can compute them once and compare every candidate with them."""
    inputs = dict(inputs)
    figures = {"outputs": np.asarray(reference.predict(inputs))}
    loss, grads = reference.loss_and_input_gradient(inputs, targets)
    figures["loss"] = np.asarray(loss)
    if not train:
        return figures
    figures.update({GRADIENT + k: np.asarray(grads[k]) for k in gradient_inputs(reference.spec) if k in grads})
    before = reference.get_weights()
    reference.train_step(reference.to_device(inputs), reference.to_device(np.asarray(targets)))
    reference.synchronize()
    after = reference.get_weights()
    figures.update({BEFORE + k: np.asarray(v) for k, v in before.items()})
    figures.update({AFTER + k: np.asarray(v) for k, v in after.items()})
    reference.set_weights(before)
    return figures


def _named(figures: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in figures.items() if k.startswith(prefix)}


def compare_with_reference(figures: Mapping[str, np.ndarray], candidate: Model,
                           inputs: Mapping[str, np.ndarray], targets: np.ndarray, train: bool = True,
                           reference_precision: str = "fp32") -> list[ParityRow]:
    """The rows of :func:`measure_parity` for ``candidate`` against the reference's
    :func:`reference_figures` (computed with the same ``train``); the candidate ends with its
    weights. ``reference_precision``: the reference model's (fp32 gates at 1e-4, else reported)."""
    tol = _tolerance_for(reference_precision, getattr(candidate.options, "precision", "fp32"))
    inputs = dict(inputs)
    cand_out = candidate.predict(inputs)
    rows = [_row("outputs", relative_error(cand_out, figures["outputs"]), tol)]
    if not train:
        cand = spec_numpy.loss(candidate.options.train.loss, cand_out, targets)
        return [*rows, _row("loss", relative_error(cand, figures["loss"]), tol)]

    cand_loss, cand_grads = candidate.loss_and_input_gradient(inputs, targets)
    rows.append(_row("loss", relative_error(cand_loss, figures["loss"]), tol))
    ref_grads = _named(figures, GRADIENT)
    keys = [k for k in gradient_inputs(candidate.spec) if k in ref_grads]
    if keys:
        missing = [k for k in keys if k not in cand_grads]
        err = float("inf") if missing else relative_error(_flat(cand_grads, keys), _flat(ref_grads, keys))
        rows.append(_row("input_gradient", err, tol))

    ref_before, ref_after = _named(figures, BEFORE), _named(figures, AFTER)
    cand_before = candidate.get_weights()
    names = sorted(ref_before)
    candidate.train_step(candidate.to_device(inputs), candidate.to_device(np.asarray(targets)))
    candidate.synchronize()
    cand_after = candidate.get_weights()
    if sorted(cand_after) != names:
        err = float("inf")
    else:
        err = update_error(_flat(cand_before, names), _flat(cand_after, names),
                           _flat(ref_before, names), _flat(ref_after, names))
    rows.append(_row("weights_after_step", err, tol))
    candidate.set_weights(cand_before)
    return rows


def measure_parity(reference: Model, candidate: Model, inputs: Mapping[str, np.ndarray],
                   targets: np.ndarray, train: bool = True) -> list[ParityRow]:
    """Compare ``candidate`` with ``reference`` on one batch; both models end with their weights.

    Rows: ``outputs`` (inference), ``loss`` and ``input_gradient`` (for the float non-mask inputs,
    omitted when there are none), ``weights_after_step``: the relative error of the weight
    *update* of one ``train_step`` (after minus before, all tensors together), which isolates the
    step from the unchanged weights. Use SGD for a sharp check: Adam's first step is about
    ``lr * sign(grad)`` and turns rounding noise in near-zero gradients into full-size updates.
    Without ``train`` (a candidate that cannot train: an inference runtime) the rows are
    ``outputs`` and ``loss``, the candidate's loss computed from its outputs by the NumPy reference.
    The two sides: :func:`reference_figures` and :func:`compare_with_reference`.
    """
    return compare_with_reference(reference_figures(reference, inputs, targets, train), candidate,
                                  inputs, targets, train, getattr(reference.options, "precision", "fp32"))


def update_error(cand_before: np.ndarray, cand_after: np.ndarray, ref_before: np.ndarray,
                 ref_after: np.ndarray) -> float:
    """Relative error of the weight update, net of float32 rounding of the weights themselves.

    Both frameworks store ``w - lr * g`` in float32, so where the update is tiny next to the
    weight (embedding rows, late layers) a last-bit difference in ``g`` moves the stored weight
    by one unit in the last place of ``w``: a difference of representation, not of the framework.
    Per element, up to two ULPs of the stored weight are forgiven; the rest is divided by the
    largest reference update.
    """
    delta_c = cand_after.astype(np.float64) - cand_before
    delta_r = ref_after.astype(np.float64) - ref_before
    ulp = np.spacing(np.abs(ref_after).astype(np.float32)).astype(np.float64)
    excess = np.maximum(np.abs(delta_c - delta_r) - 2 * ulp, 0.0)
    scale = float(np.max(np.abs(delta_r))) if delta_r.size else 0.0
    return float(np.max(excess)) / max(scale, 1e-12) if excess.size else 0.0


# ---------------------------------------------------------------------------------------------
# Layer specs and their data
# ---------------------------------------------------------------------------------------------


def _head(b: SpecBuilder, x: str, flatten: bool = True) -> ModelSpec:
    """Flatten (optional) and a 3-class Dense head, so every op feeds a classification loss."""
    if flatten:
        x = b.flatten(x)
    return b.build(b.dense(x, 3))


def _one(name: str, shape: tuple[int, ...], body: Any, flatten: bool = True) -> ModelSpec:
    b = SpecBuilder(name)
    x = b.input("x", shape)
    return _head(b, body(b, x), flatten)


def layer_specs() -> dict[str, ModelSpec]:
    """One small spec per op and mode (Dense, Conv1D/2D valid/same/stride 2, pools, ...)."""
    specs: dict[str, ModelSpec] = {}

    def add(spec: ModelSpec) -> None:
        specs[spec.name] = spec

    add(_one("dense", (6,), lambda b, x: b.dense(x, 5, "relu"), flatten=False))
    add(_one("dense_seq", (4, 6), lambda b, x: b.dense(x, 5)))
    add(_one("conv1d_same", (9, 3), lambda b, x: b.conv1d(x, 4, 3, 1, "same", "relu")))
    add(_one("conv1d_valid", (9, 3), lambda b, x: b.conv1d(x, 4, 3, 1, "valid")))
    add(_one("conv1d_same_stride2", (8, 3), lambda b, x: b.conv1d(x, 4, 3, 2, "same")))
    add(_one("conv2d_same", (6, 6, 2), lambda b, x: b.conv2d(x, 4, 3, 1, "same", "relu")))
    add(_one("conv2d_valid", (6, 6, 2), lambda b, x: b.conv2d(x, 4, 3, 1, "valid")))
    add(_one("conv2d_same_stride2", (8, 7, 2), lambda b, x: b.conv2d(x, 4, 3, 2, "same")))
    add(_one("conv2d_valid_stride2", (7, 7, 2), lambda b, x: b.conv2d(x, 3, 2, 2, "valid")))
    add(_one("maxpool1d", (9, 3), lambda b, x: b.max_pool(b.conv1d(x, 4, 3), 2)))
    add(_one("avgpool1d", (9, 3), lambda b, x: b.avg_pool(x, 3)))
    add(_one("maxpool2d", (7, 6, 2), lambda b, x: b.max_pool(x, 2)))
    add(_one("avgpool2d", (6, 6, 2), lambda b, x: b.avg_pool(b.conv2d(x, 3, 3), 2)))
    # overlapping, padded max pools on the N(0, 1) input itself: negative borders, so padding
    # with zeros instead of -inf would change the outputs (ResNet's ImageNet stem is 3, 2, 1)
    add(_one("maxpool2d_overlap_pad", (9, 9, 2), lambda b, x: b.max_pool(x, 3, strides=2, padding=1)))
    add(_one("maxpool1d_overlap_pad", (10, 3), lambda b, x: b.max_pool(x, 4, strides=3, padding=2)))
    add(_one("global_avg_pool2d", (5, 5, 3),
             lambda b, x: b.global_avg_pool(b.conv2d(x, 4, 3)), flatten=False))
    add(_one("global_avg_pool1d", (6, 4), lambda b, x: b.global_avg_pool(x), flatten=False))
    add(_one("flatten", (3, 4, 2), lambda b, x: x))
    add(_one("dropout", (6,), lambda b, x: b.dropout(b.dense(x, 8, "relu"), 0.5), flatten=False))
    add(_one("layer_norm", (4, 6), lambda b, x: b.layer_norm(b.dense(x, 6))))
    add(_one("attention", (5, 8), lambda b, x: b.self_attention(x, 2)))
    for fn in ("relu", "tanh", "sigmoid", "gelu"):
        add(_one(f"activation_{fn}", (6,), lambda b, x, fn=fn: b.activation(b.dense(x, 6), fn),
                 flatten=False))
    add(_one("add", (6,), lambda b, x: b.add(b.dense(x, 4), b.dense(x, 4)), flatten=False))
    add(_one("add_conv", (6, 6, 2), lambda b, x: b.add(b.conv2d(x, 2, 3), x)))
    add(_one("concat", (6,), lambda b, x: b.concat(b.dense(x, 4), b.dense(x, 3)), flatten=False))
    add(_one("concat_conv", (6, 6, 2), lambda b, x: b.concat(b.conv2d(x, 3, 3), b.conv2d(x, 2, 1))))
    add(_one("dot", (6,), lambda b, x: b.dot(b.dense(x, 4), b.dense(x, 4)), flatten=False))

    b = SpecBuilder("global_avg_pool_masked")
    x, m = b.input("x", (6, 4)), b.input("mask", (6,))
    add(_head(b, b.global_avg_pool(b.conv1d(x, 5, 3), m), flatten=False))

    b = SpecBuilder("attention_masked")
    x, m = b.input("x", (5, 8)), b.input("mask", (5,))
    add(_head(b, b.global_avg_pool(b.self_attention(x, 2, mask=m), m), flatten=False))

    b = SpecBuilder("embedding")
    ids = b.input("ids", (5,), dtype="int32")
    add(_head(b, b.embedding(ids, 11, 4)))

    b = SpecBuilder("position_embedding")
    ids = b.input("ids", (5,), dtype="int32")
    add(_head(b, b.position_embedding(b.embedding(ids, 11, 4), 8)))

    # -- the ops of the reference families (ResNet, BERT, speech encoders, DLRM) -------------
    add(_one("batch_norm_conv", (5, 5, 3), lambda b, x: b.batch_norm(b.conv2d(x, 4, 3, use_bias=False),
                                                                       momentum=0.2, epsilon=1e-3)))
    add(_one("batch_norm_dense", (6,), lambda b, x: b.activation(b.batch_norm(b.dense(x, 5)), "relu"),
             flatten=False))
    add(_one("conv2d_pad1_stride2", (8, 7, 2), lambda b, x: b.conv2d(x, 4, 3, 2, 1)))
    add(_one("conv2d_grouped", (5, 5, 4), lambda b, x: b.conv2d(x, 6, 3, 1, 1, groups=2)))
    add(_one("conv2d_depthwise", (6, 6, 3), lambda b, x: b.conv2d(x, 6, 3, 2, 1, "relu", groups=3,
                                                                   use_bias=False)))
    add(_one("conv1d_subsample", (12, 3), lambda b, x: b.conv1d(
        b.conv1d(x, 4, 3, 2, 1, "gelu"), 4, 3, 2, "valid", "gelu", groups=2)))

    def residual(b: SpecBuilder, x: str) -> str:  # a ResNet basic block that halves the grid
        h = b.activation(b.batch_norm(b.conv2d(x, 4, 3, 2, 1, use_bias=False)), "relu")
        h = b.batch_norm(b.conv2d(h, 4, 3, 1, 1, use_bias=False))
        shortcut = b.batch_norm(b.conv2d(x, 4, 1, 2, 0, use_bias=False))
        return b.global_avg_pool(b.activation(b.add(h, shortcut), "relu"))

    add(_one("residual_block", (6, 6, 2), residual, flatten=False))

    def ffn(b: SpecBuilder, x: str) -> str:  # pre-norm Transformer feed-forward block, GELU
        return b.add(x, b.dense(b.dense(b.layer_norm(x), 12, "gelu"), 6))

    add(_one("ffn_gelu", (4, 6), ffn))
    add(_one("attention_causal", (5, 8), lambda b, x: b.self_attention(x, 2, causal=True)))

    b = SpecBuilder("attention_causal_masked")
    x, m = b.input("x", (5, 8)), b.input("mask", (5,))
    add(_head(b, b.global_avg_pool(b.self_attention(x, 2, mask=m, causal=True), m), flatten=False))

    b = SpecBuilder("embedding_bag")  # multi-hot bags: padded (sum and mean) and two bags per example
    ids, m = b.input("ids", (5,), dtype="int32"), b.input("bag_mask", (5,))
    bags = b.flatten(b.embedding_bag(b.input("bags", (2, 3), dtype="int32"), 7, 2, "mean"))
    add(_head(b, b.concat(b.embedding_bag(ids, 11, 3, "sum", mask=m),
                          b.embedding_bag(ids, 11, 3, "mean", mask=m, name="bag_mean"), bags),
                 flatten=False))

    b = SpecBuilder("dot_interaction")  # DLRM: bottom MLP, two sparse features, interaction, top
    dense = b.dense(b.input("dense", (4,)), 3, "relu")
    sparse = [b.embedding_bag(b.input(f"cat{i}", (2,), dtype="int32"), 5 + i, 3) for i in range(2)]
    add(_head(b, b.concat(dense, b.dot_interaction(dense, *sparse)), flatten=False))

    b = SpecBuilder("dot_two_towers")  # recommendation style: (N, 1) output, regression loss
    u, i = b.input("user", (1,), dtype="int32"), b.input("item", (1,), dtype="int32")
    eu, ei = b.flatten(b.embedding(u, 7, 4)), b.flatten(b.embedding(i, 9, 4))
    add(b.build(b.dot(eu, ei)))
    return specs


def with_running_statistics(spec: ModelSpec, weights: Mapping[str, np.ndarray], seed: int = 0
                            ) -> dict[str, np.ndarray]:
    """``weights`` with seeded BatchNorm running statistics (means N(0, 0.5), variances
    U(0.5, 2)) in place of the initial zeros and ones, so inference-mode checks test them."""
    rng = np.random.default_rng(seed)
    out = dict(weights)
    for key in spec.state_keys():
        shape = np.shape(weights[key])
        stat = rng.normal(0.0, 0.5, shape) if key.endswith("mean") else rng.uniform(0.5, 2.0, shape)
        out[key] = stat.astype(np.float32)
    return out


def loss_for(spec: ModelSpec) -> str:
    """The loss :func:`example_inputs` makes targets for: cross-entropy unless the output is 1-d."""
    return "mse" if spec.shapes()[spec.output][-1] == 1 else "cross_entropy"


def example_inputs(spec: ModelSpec, n: int = 4, seed: int = 0, loss: str | None = None
                   ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Deterministic inputs (float N(0,1), ids in range, padding masks) and targets for ``loss``.

    Masks are ``{0, 1}`` float32 rows with trailing padding: the first row is unpadded, every
    row keeps at least one real token. Targets: int64 classes for ``cross_entropy``, float32
    ``{0, 1}`` for ``binary_cross_entropy``, float32 N(0, 1) for ``mse``.
    """
    rng = np.random.default_rng(seed)
    masks = mask_inputs(spec)
    vocab: dict[str, int] = {}
    for node in spec.nodes:
        if node.op in ("Embedding", "EmbeddingBag"):
            src = node.inputs[0]
            vocab[src] = min(vocab.get(src, node.attrs["input_dim"]), node.attrs["input_dim"])
    inputs: dict[str, np.ndarray] = {}
    for name, node in spec.inputs.items():
        shape = (n, *node.attrs["shape"])
        if name in masks:
            length = shape[1]
            keep = rng.integers(1, length + 1, size=n)
            keep[0] = length
            if n > 1 and length > 1:
                keep[1] = max(1, length // 2)
            inputs[name] = (np.arange(length)[None, :] < keep[:, None]).astype(np.float32)
        elif node.attrs.get("dtype") == "int32":
            inputs[name] = rng.integers(0, vocab.get(name, 10), size=shape).astype(np.int32)
        else:
            inputs[name] = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    loss = loss or loss_for(spec)
    out_dim = spec.shapes()[spec.output][-1]
    if loss == "cross_entropy":
        targets = rng.integers(0, out_dim, size=n).astype(np.int64)
    elif loss == "binary_cross_entropy":
        targets = rng.integers(0, 2, size=n).astype(np.float32)
    else:
        targets = rng.normal(0.0, 1.0, size=n).astype(np.float32)
    return inputs, targets
