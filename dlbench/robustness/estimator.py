"""One ART estimator over any dlbench :class:`~dlbench.framework.Model`.

ART's attacks talk to an *estimator*: ``predict``, ``loss_gradient``, ``class_gradient``,
``compute_loss``. :class:`ModelEstimatorCore` implements them with the framework contract alone
(``forward``, ``loss_and_input_gradient``, ``class_gradient``), so PyTorch, TensorFlow, JAX and
Keras models (eager or compiled) all get every ART attack without per-framework code. It is
structured like ART's ``PyTorchClassifier``: ART's preprocessing defences run in the forward
pass and their gradient estimates (BPDA, identity by default) in the backward pass.

A :class:`Codec` maps ART's single array ``x`` (batch first) to the model's named inputs and
maps input gradients back; :class:`InputCodec` serves input-space tasks, and
:class:`dlbench.robustness.embedding.EmbeddingCodec` embedding-space ones.

Conventions:

* classifiers (:func:`make_classifier`) predict ``log_softmax(logits)``: the same argmax,
  cross-entropy and logit margins as the logits, and exactly the quantity whose gradient
  :meth:`dlbench.framework.Model.class_gradient` returns, so ``class_gradient`` is exact;
* gradients are per example (the gradient of each example's own loss, not of the batch mean);
* every model call runs on a batch of one of a few fixed sizes (powers of two up to
  ``max_batch``, padded by repeating the last row), so compiled variants (``jax.jit``,
  ``tf.function``, ``torch.compile``) trace a handful of shapes, not one per attack batch.

ART is imported only when an estimator is made (:func:`estimator_classes`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from dlbench.errors import UnsupportedError
from dlbench.framework import Model


class Codec:
    """How ART's array ``x`` (batch first, shape ``(N, *shape)``) feeds a model."""

    shape: tuple[int, ...]

    def decode(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Model inputs for rows ``x``."""
        raise NotImplementedError

    def encode_grad(self, x: np.ndarray, grads: Mapping[str, np.ndarray]) -> np.ndarray:
        """Gradients w.r.t. the model's float inputs -> gradient w.r.t. ``x`` (same shape)."""
        raise NotImplementedError


class InputCodec(Codec):
    """Input space: ``x`` is the model's one float input ``name``, as an image ``(H, W, C)``.

    Rank-2 inputs (a sequence of feature vectors, e.g. a spectrogram for a Conv1D model) get a
    trailing channel axis, and non-square images are zero-padded at the bottom and right to a
    square, because ART's Square attack assumes square images. The model sees the crop; padding
    cells have zero gradient, so gradient attacks never move them, and what other attacks put
    there is cropped away.
    """

    def __init__(self, name: str, input_shape: tuple[int, ...]) -> None:
        self.name = name
        self.input_shape = tuple(input_shape)
        image = self.input_shape + (1,) if len(self.input_shape) == 2 else self.input_shape
        self.image = image
        if len(image) == 3 and image[0] != image[1]:
            side = max(image[0], image[1])
            image = (side, side, image[2])
        self.shape = image

    def encode(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        x = np.asarray(inputs[self.name], dtype=np.float32)
        x = x.reshape((len(x), *self.image))
        if self.image == self.shape:
            return x
        out = np.zeros((len(x), *self.shape), np.float32)
        out[:, : self.image[0], : self.image[1]] = x
        return out

    def _crop(self, x: np.ndarray) -> np.ndarray:
        if self.image != self.shape:
            x = x[:, : self.image[0], : self.image[1]]
        return x

    def decode(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = self._crop(np.asarray(x, np.float32))
        return {self.name: np.ascontiguousarray(x).reshape((len(x), *self.input_shape))}

    def encode_grad(self, x: np.ndarray, grads: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.encode({self.name: np.asarray(grads[self.name], np.float32)})


def bucket_sizes(n: int, max_batch: int) -> list[tuple[int, int, int]]:
    """``(start, stop, padded)`` chunks of ``n`` rows; ``padded`` is a power of two (>= 8) or
    ``max_batch``, so a model sees few distinct batch sizes."""
    out = []
    start = 0
    while start < n:
        stop = min(start + max_batch, n)
        size = stop - start
        padded = (
            max_batch if size == max_batch else min(max_batch, max(8, 1 << (size - 1).bit_length()))
        )
        out.append((start, stop, padded))
        start = stop
    return out


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def per_example_loss(outputs: np.ndarray, targets: np.ndarray, loss: str) -> np.ndarray:
    """Each example's loss from raw model outputs (see :data:`dlbench.framework.LOSSES`)."""
    out = np.asarray(outputs, np.float64)
    if loss == "cross_entropy":
        t = np.asarray(targets).reshape(-1).astype(np.int64)
        return -_log_softmax(out)[np.arange(len(t)), t]
    z = out.reshape(-1)
    t = np.asarray(targets, np.float64).reshape(-1)  # type: ignore[assignment]
    if loss == "binary_cross_entropy":
        return np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return (z - t) ** 2


class ModelEstimatorCore:
    """The ART estimator methods, built on a :class:`~dlbench.framework.Model` and a :class:`Codec`.

    Mixed into ART's classes by :func:`estimator_classes`; not useful on its own.
    """

    dl_model: Model
    codec: Codec
    loss_name: str
    max_batch: int
    _classifier: bool

    def _setup(self, model: Model, codec: Codec, max_batch: int) -> None:
        self.dl_model = model
        self.codec = codec
        self.loss_name = model.options.train.loss
        self.max_batch = int(max_batch)
        self.calls = {"forward": 0, "gradient": 0}

    # -- shapes -------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.codec.shape)

    # -- model calls on padded buckets ---------------------------------------------------------
    def _rows(self, n: int, start: int, stop: int, padded: int) -> np.ndarray:
        idx = np.arange(start, stop)
        return (
            np.concatenate([idx, np.full(padded - len(idx), stop - 1)])
            if padded > len(idx)
            else idx
        )

    def model_outputs(self, x: np.ndarray, defended: bool = True) -> np.ndarray:
        """Raw model outputs (logits, scores) for ART-space ``x``, after preprocessing defences."""
        x = np.asarray(x, np.float32)
        if defended:
            x, _ = self._apply_preprocessing(x, y=None, fit=False)  # type: ignore[attr-defined]
        outs = []
        for start, stop, padded in bucket_sizes(len(x), self.max_batch):
            rows = self._rows(len(x), start, stop, padded)
            native = self.dl_model.forward(self.dl_model.to_device(self.codec.decode(x[rows])))
            outs.append(np.asarray(self.dl_model.to_numpy(native))[: stop - start])
            self.calls["forward"] += 1
        if not outs:
            return np.zeros((0,), np.float32)
        return np.concatenate(outs).astype(np.float32)

    def _targets(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        if self.loss_name == "cross_entropy":
            return (np.argmax(y, axis=1) if y.ndim == 2 else y.reshape(-1)).astype(np.int64)
        return y.reshape(-1).astype(np.float32)

    def _gradients(
        self,
        x: np.ndarray,
        targets: np.ndarray,
        fn: Callable[[dict[str, np.ndarray], np.ndarray], dict[str, np.ndarray]],
    ) -> np.ndarray:
        grads = np.zeros(x.shape, np.float32)
        for start, stop, padded in bucket_sizes(len(x), self.max_batch):
            rows = self._rows(len(x), start, stop, padded)
            g = fn(self.codec.decode(x[rows]), targets[rows])
            grads[start:stop] = self.codec.encode_grad(x[rows], g)[: stop - start]
            self.calls["gradient"] += 1
        return grads

    def _loss_grad(
        self, inputs: dict[str, np.ndarray], targets: np.ndarray
    ) -> dict[str, np.ndarray]:
        _, g = self.dl_model.loss_and_input_gradient(inputs, targets)
        n = len(targets)  # mean loss -> each example's own loss gradient
        return {k: np.asarray(v, np.float32) * n for k, v in g.items()}

    # -- ART estimator API --------------------------------------------------------------------
    def predict(
        self, x: np.ndarray, batch_size: int = 128, training_mode: bool = False, **kwargs: Any
    ) -> np.ndarray:
        out = self.model_outputs(x)
        if self._classifier:
            out = _log_softmax(out).astype(np.float32)
        return self._apply_postprocessing(preds=out, fit=False)  # type: ignore[attr-defined]

    def loss_gradient(
        self, x: np.ndarray, y: np.ndarray, training_mode: bool = False, **kwargs: Any
    ) -> np.ndarray:
        x = np.asarray(x, np.float32)
        x_p, y_p = self._apply_preprocessing(x, y, fit=False)  # type: ignore[attr-defined]
        grads = self._gradients(np.asarray(x_p, np.float32), self._targets(y_p), self._loss_grad)
        return self._apply_preprocessing_gradient(x, grads)  # type: ignore[attr-defined]

    def straight_through_loss_gradient(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """BPDA: the loss gradient at the preprocessed point, passed straight through the
        preprocessing defences (identity backward pass)."""
        x_p, y_p = self._apply_preprocessing(np.asarray(x, np.float32), y, fit=False)  # type: ignore[attr-defined]
        return self._gradients(np.asarray(x_p, np.float32), self._targets(y_p), self._loss_grad)

    def class_gradient(
        self,
        x: np.ndarray,
        label: int | list[int] | np.ndarray | None = None,
        training_mode: bool = False,
        **kwargs: Any,
    ) -> np.ndarray:
        """Gradients of the predicted log-probabilities: ``(N, C, *shape)`` for ``label=None``,
        else ``(N, 1, *shape)`` for one class or one class per example."""
        x = np.asarray(x, np.float32)
        x_p, _ = self._apply_preprocessing(x, y=None, fit=False)  # type: ignore[attr-defined]
        x_p = np.asarray(x_p, np.float32)
        n = len(x)
        if label is None:
            labels = [np.full(n, c) for c in range(self.nb_classes)]  # type: ignore[attr-defined]
        elif np.ndim(label) == 0:
            labels = [np.full(n, int(label))]  # type: ignore[arg-type]
        else:
            labels = [np.asarray(label).reshape(-1)]
        cols = []
        for lab in labels:
            g = self._gradients(x_p, lab.astype(np.int64), self.dl_model.class_gradient)
            cols.append(self._apply_preprocessing_gradient(x, g))  # type: ignore[attr-defined]
        return np.stack(cols, axis=1)

    def compute_loss(
        self, x: np.ndarray, y: np.ndarray, reduction: str = "mean", **kwargs: Any
    ) -> np.ndarray | float:
        losses = per_example_loss(self.model_outputs(x), self._targets(y), self.loss_name)
        if reduction == "none":
            return losses.astype(np.float32)
        return float(losses.sum() if reduction == "sum" else losses.mean())

    def fit(self, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> None:
        raise NotImplementedError(
            "dlbench trains models through the accuracy scenario (train_or_load)"
        )

    def get_activations(
        self, x: np.ndarray, layer: int | str, batch_size: int = 128, framework: bool = False
    ) -> np.ndarray:
        raise NotImplementedError("dlbench estimators expose outputs and input gradients only")

    def save(self, filename: str, path: str | None = None) -> None:
        raise NotImplementedError("trained weights are stored by the accuracy scenario (.npz)")


@functools.lru_cache(maxsize=1)
def estimator_classes() -> tuple[type, type]:
    """``(DlbenchClassifier, DlbenchRegressor)``, built on ART's mixins on first use.

    The classifier is ART's ``ClassGradientsMixin + ClassifierMixin + LossGradientsMixin +
    NeuralNetworkMixin + BaseEstimator`` (what ``PyTorchClassifier`` is, so gradient and
    black-box attacks accept it); the regressor (MSE ratings, BCE ranking scores) is
    ``RegressorMixin + LossGradientsMixin + BaseEstimator`` for FGSM and PGD.
    """
    from art.estimators.classification.classifier import ClassGradientsMixin, ClassifierMixin
    from art.estimators.estimator import BaseEstimator, LossGradientsMixin, NeuralNetworkMixin
    from art.estimators.regression import RegressorMixin

    class DlbenchClassifier(
        ModelEstimatorCore,
        ClassGradientsMixin,
        ClassifierMixin,  # type: ignore[misc]
        LossGradientsMixin,
        NeuralNetworkMixin,
        BaseEstimator,
    ):
        """ART classifier over a dlbench Model (any framework)."""

        estimator_params = (
            BaseEstimator.estimator_params
            + NeuralNetworkMixin.estimator_params
            + ClassifierMixin.estimator_params
        )
        _classifier = True

        def __init__(
            self,
            model: Model,
            codec: Codec,
            nb_classes: int,
            clip_values: tuple[float, float] | None = None,
            preprocessing_defences: Any = None,
            max_batch: int = 128,
        ) -> None:
            super().__init__(
                model=None,
                clip_values=clip_values,
                channels_first=False,
                preprocessing_defences=preprocessing_defences,
                preprocessing=None,
            )
            self._setup(model, codec, max_batch)
            self.nb_classes = int(nb_classes)

    class DlbenchRegressor(
        ModelEstimatorCore,
        RegressorMixin,
        LossGradientsMixin,  # type: ignore[misc]
        BaseEstimator,
    ):
        """ART regressor over a dlbench Model (scores and ratings; loss from the model)."""

        _classifier = False

        def __init__(
            self,
            model: Model,
            codec: Codec,
            clip_values: tuple[float, float] | None = None,
            preprocessing_defences: Any = None,
            max_batch: int = 128,
        ) -> None:
            super().__init__(
                model=None,
                clip_values=clip_values,
                preprocessing_defences=preprocessing_defences,
                preprocessing=None,
            )
            self._setup(model, codec, max_batch)

    return DlbenchClassifier, DlbenchRegressor


def make_estimator(
    model: Model,
    codec: Codec,
    nb_classes: int | None,
    clip_values: tuple[float, float] | None = None,
    defences: Any = None,
    max_batch: int = 128,
) -> Any:
    """A classifier for ``cross_entropy`` models (``nb_classes`` outputs), else a regressor."""
    classifier, regressor = estimator_classes()
    if model.options.train.loss == "cross_entropy":
        if not nb_classes:
            raise UnsupportedError("a cross_entropy model needs its number of classes for ART")
        return classifier(model, codec, nb_classes, clip_values, defences, max_batch)
    return regressor(model, codec, clip_values, defences, max_batch)


def is_classifier(estimator: Any) -> bool:
    return bool(getattr(estimator, "_classifier", False))
