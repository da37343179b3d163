"""scikit-learn: the traditional-ML baseline framework.

It ignores the neural spec: :meth:`SklearnFramework.build` raises UnsupportedError, and
:meth:`SklearnFramework.build_classic` wraps the task's classic estimator
(:meth:`dlbench.task.Task.classic_model`: ``fit(X: Batch, y)`` and ``predict(X) -> (N, C)``) in
a :class:`~dlbench.framework.Model`, so the accuracy and speed scenarios measure it like any
other model. One ``fit_epoch`` call fits the whole estimator; calling it again with the same
training data does nothing (a classic model has no epochs), so a learning curve is flat after
the first point. There are no gradients: robustness and parity cells are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dlbench.api import Batch, BuildOptions, Framework, Model, UnsupportedError, hookimpl


class SklearnModel(Model):
    """A classic estimator behind the Model interface (host memory, synchronous)."""

    def __init__(self, estimator: Any, options: BuildOptions) -> None:
        self.estimator = estimator
        self.options = options
        self.spec = None  # type: ignore[assignment]  # classic models have no neural spec
        self._fitted_on: tuple[Any, ...] | None = None
        self.last_loss = float("nan")

    def to_device(self, batch: Batch | np.ndarray) -> Any:
        if isinstance(batch, Mapping):
            return dict(batch)
        return batch

    def forward(self, native_inputs: Any) -> Any:
        return self.estimator.predict(native_inputs)

    def train_step(self, native_inputs: Any, native_targets: Any) -> Any:
        raise UnsupportedError("sklearn fits a classic model as a whole: it has no train steps "
                               "(use fit_epoch; speed cells in train mode are skipped)")

    def fit_epoch(self, inputs: Batch, targets: np.ndarray, batch_size: int, order: np.ndarray) -> float:
        """Fit the estimator on ``inputs[order]`` (the batch size is ignored); returns the
        training loss when the estimator reports one, else NaN. Refits only on new data."""
        key = (tuple((k, id(v), len(v)) for k, v in sorted(inputs.items())), id(targets),
               len(order))
        if key != self._fitted_on:
            idx = np.sort(np.asarray(order))
            self.estimator.fit({k: np.asarray(v)[idx] for k, v in inputs.items()},
                               np.asarray(targets)[idx])
            self._fitted_on = key
            self.last_loss = float(getattr(self.estimator, "training_loss", float("nan")))
        return self.last_loss

    def synchronize(self) -> None:
        pass

    def to_numpy(self, native: Any) -> np.ndarray:
        arr = np.asarray(native)
        return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)

    def get_weights(self) -> dict[str, np.ndarray]:
        getter = getattr(self.estimator, "get_weights", None)
        if callable(getter):
            return dict(getter())
        out = {}
        for attr in ("coef_", "intercept_"):
            val = getattr(self.estimator, attr, None)
            if isinstance(val, np.ndarray):
                out[attr.rstrip("_")] = val.astype(np.float32)
        return out

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        if weights:
            raise UnsupportedError("sklearn models have no canonical weights to load "
                                   "(parity cells skip the classic baseline)")

    def loss_and_input_gradient(self, inputs: Batch, targets: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        raise UnsupportedError("sklearn models have no input gradients "
                               "(gradient attacks skip the classic baseline)")


class SklearnFramework(Framework):
    name = "sklearn"
    label = "scikit-learn"
    modules = ("sklearn",)
    distribution = "scikit-learn"
    kind = "classic"
    variants = ("eager",)
    precisions = ("fp32",)
    device_kinds = ("cpu",)

    def __init__(self) -> None:
        self._limits: Any = None

    def setup(self, threads: int | None, seed: int, params: Mapping[str, Any]) -> None:
        """Limit BLAS/OpenMP thread pools (threadpoolctl) and seed NumPy's global generator."""
        np.random.seed(seed)
        if threads:
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=int(threads))

    def devices(self) -> list[str]:
        return ["cpu"]

    def build(self, spec: Any, weights: Mapping[str, np.ndarray], options: BuildOptions) -> Model:
        raise UnsupportedError("sklearn is a classic baseline: it ignores the neural spec")

    def build_classic(self, estimator: Any, options: BuildOptions) -> Model:
        if estimator is None:
            raise UnsupportedError("this task offers no classic model for the sklearn baseline")
        if options.device != "cpu":
            raise UnsupportedError(f"sklearn runs on cpu only, not {options.device!r}")
        self.check(options)
        if hasattr(estimator, "random_state"):
            estimator.random_state = options.seed
        return SklearnModel(estimator, options)


@hookimpl
def dlbench_register_frameworks(register: Any) -> None:
    register(SklearnFramework())
