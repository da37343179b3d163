"""Shared helpers of the classification task plugins: metrics, deterministic splits, and the
scikit-learn estimator wrapper behind ``Task.classic_model``. Not a plugin (no hooks)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from dlbench.api import Batch, Param, SuiteError


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true = np.asarray(y_true).reshape(-1)
    return float(np.mean(y_true == np.asarray(y_pred).reshape(-1))) if len(y_true) else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``y_true`` or ``y_pred``
    (scikit-learn's ``f1_score(average="macro")``; a class with no support and no prediction
    is left out)."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    k = int(max(num_classes or 0, y_true.max(initial=-1) + 1, y_pred.max(initial=-1) + 1))
    tp = np.bincount(y_true[y_true == y_pred], minlength=k).astype(float)
    support = np.bincount(y_true, minlength=k).astype(float)
    predicted = np.bincount(y_pred, minlength=k).astype(float)
    present = (support + predicted) > 0
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(f1[present].mean()) if present.any() else float("nan")


def classification_metrics(y_true: np.ndarray, outputs: np.ndarray,
                           num_classes: int | None = None) -> dict[str, float]:
    """``accuracy`` and ``macro_f1`` from logits/scores ``(N, C)`` or predicted labels ``(N,)``."""
    out = np.asarray(outputs)
    y_pred = out.argmax(axis=-1) if out.ndim == 2 else out.reshape(-1)
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred, num_classes)}


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: per class, a seeded permutation's first
    ``round(n_c * test_fraction)`` indices go to test. Returns sorted (train, test) indices."""
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n = int(round(len(idx) * test_fraction))
        test.append(rng.permutation(idx)[:n])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask), test_idx


class ClassicClassifier:
    """A scikit-learn classifier behind the ``Task.classic_model`` interface.

    ``fit(X: Batch, y)`` and ``predict(X: Batch) -> (N, C)`` scores (argmax is the label, so
    ``Task.evaluate`` works unchanged). ``features`` turns the batch into a 2-D matrix;
    ``make`` builds the estimator from a seed. After ``fit``, ``training_loss`` is the mean
    cross-entropy of the training set when the estimator gives probabilities, else NaN.
    """

    def __init__(self, name: str, make: Callable[[int], Any], features: Callable[[Batch], np.ndarray],
                 num_classes: int, random_state: int = 0) -> None:
        self.name = name
        self.make = make
        self.features = features
        self.num_classes = num_classes
        self.random_state = random_state
        self.estimator: Any = None
        self.training_loss = float("nan")

    def fit(self, X: Batch, y: np.ndarray) -> ClassicClassifier:
        feats = self.features(X)
        self.estimator = self.make(self.random_state)
        self.estimator.fit(feats, np.asarray(y))
        if hasattr(self.estimator, "predict_proba"):
            p = self._scatter(self.estimator.predict_proba(feats), fill=0.0)
            rows = np.arange(len(y))
            self.training_loss = float(-np.mean(np.log(np.clip(p[rows, np.asarray(y)], 1e-12, 1.0))))
        return self

    def predict(self, X: Batch) -> np.ndarray:
        """Scores ``(N, num_classes)``: class probabilities, or decision values."""
        if self.estimator is None:
            raise RuntimeError(f"{self.name}: call fit() before predict()")
        feats = self.features(X)
        if hasattr(self.estimator, "predict_proba"):
            return self._scatter(self.estimator.predict_proba(feats), fill=0.0).astype(np.float32)
        scores = np.asarray(self.estimator.decision_function(feats), dtype=np.float64)
        return self._scatter(scores, fill=-np.inf).astype(np.float32)

    def _scatter(self, cols: np.ndarray, fill: float) -> np.ndarray:
        """Place per-seen-class columns into ``num_classes`` columns (unseen classes: ``fill``)."""
        classes = np.asarray(self.estimator.classes_, dtype=np.int64)
        out = np.full((len(cols), self.num_classes), fill, dtype=np.float64)
        out[:, classes] = cols
        return out

    def get_weights(self) -> dict[str, np.ndarray]:
        """Linear coefficients where the final estimator has them (else empty)."""
        est = self.estimator
        if est is None:
            return {}
        final = est.steps[-1][1] if hasattr(est, "steps") else est
        out = {}
        for attr in ("coef_", "intercept_"):
            val = getattr(final, attr, None)
            if isinstance(val, np.ndarray):
                out[attr.rstrip("_")] = val.astype(np.float32)
        return out


def param(params: Mapping[str, Any], name: str, declared: Mapping[str, Param], task: str) -> Any:
    """A task parameter (its declared default when unset), validated against its choices."""
    value = params.get(name, declared[name].default)
    problem = declared[name].validate(name, value)
    if problem:
        raise SuiteError(f"task {task!r}: {problem}")
    return value
