"""What the inference-runtime plugins (onnxruntime, openvino) share: the spec exported to ONNX
with its canonical weights (:func:`dlbench.api.to_onnx_bytes`), compiled by the runtime, behind
the :class:`~dlbench.api.Model` interface.

A runtime only runs the model: ``train_step`` and ``loss_and_input_gradient`` raise
UnsupportedError (``Framework.trains`` is False, so speed cells in train mode skip in the parent,
parity compares outputs and the loss, gradient attacks skip and the audit says which checks it
could not run); accuracy and robustness cells run the weights the ``trained_by`` framework
trained (:func:`dlbench.scenarios.accuracy.trained_elsewhere`). ``set_weights`` exports and
compiles again. Inputs and outputs are host NumPy arrays and every call is synchronous.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from dlbench.api import (
    Batch,
    BuildOptions,
    Framework,
    Model,
    ModelSpec,
    Param,
    UnsupportedError,
    check_weights,
    to_onnx_bytes,
)

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]
"""A compiled model: inputs by name to the output array."""
Compiler = Callable[[bytes], Runner]
"""ONNX bytes to a compiled model."""


class InferenceModel(Model):
    """A spec exported to ONNX and compiled by an inference runtime."""

    def __init__(self, spec: ModelSpec, weights: Mapping[str, np.ndarray], options: BuildOptions,
                 runtime: str, compile_onnx: Compiler) -> None:
        self.spec, self.options, self.runtime = spec, options, runtime
        self._compile = compile_onnx
        self._dtypes = {name: np.int32 if node.attrs.get("dtype") == "int32" else np.float32
                        for name, node in spec.inputs.items()}
        self.set_weights(weights)

    def to_device(self, batch: Batch | np.ndarray) -> Any:
        if isinstance(batch, Mapping):
            unknown = [k for k in batch if k not in self._dtypes]
            if unknown:
                raise UnsupportedError(f"input {unknown[0]!r} is not in spec {self.spec.name!r}: "
                                       f"give {', '.join(self._dtypes)}")
            return {k: np.ascontiguousarray(v, dtype=self._dtypes[k]) for k, v in batch.items()}
        return np.asarray(batch)

    def forward(self, native_inputs: Any) -> Any:
        return self._run(native_inputs)

    def train_step(self, native_inputs: Any, native_targets: Any) -> Any:
        raise UnsupportedError(f"{self.runtime} is an inference runtime: it has no train step")

    def synchronize(self) -> None:
        """Nothing to wait for: every run returns its finished output."""

    def to_numpy(self, native: Any) -> np.ndarray:
        arr = np.asarray(native)
        return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._weights.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        check_weights(self.spec, weights)
        self._weights = {k: np.array(v, dtype=np.float32) for k, v in weights.items()}
        self._run = self._compile(to_onnx_bytes(self.spec, self._weights))

    def loss_and_input_gradient(self, inputs: Batch, targets: np.ndarray
                                ) -> tuple[float, dict[str, np.ndarray]]:
        raise UnsupportedError(f"{self.runtime} is an inference runtime without input gradients: "
                               "gradient attacks skip it (black-box attacks and corruptions run)")


class InferenceFramework(Framework):
    """Base of the runtime plugins: inference only, weights trained by ``trained_by``."""

    trains = False
    params: ClassVar[dict[str, Param]] = {
        "trained_by": Param("torch", "the framework whose trained weights accuracy and robustness "
                            "cells run (reloaded from the store, else trained there once)", type=str),
    }

    def __init__(self) -> None:
        self.threads: int | None = None

    def setup(self, threads: int | None, seed: int, params: Mapping[str, Any]) -> None:
        self.threads = int(threads) if threads else None
        np.random.seed(seed % 2**32)

    @abstractmethod
    def compiler(self, options: BuildOptions) -> Compiler:
        """How this runtime compiles ONNX bytes for ``options`` (device, variant, precision)."""

    def build(self, spec: ModelSpec, weights: Mapping[str, np.ndarray],
              options: BuildOptions) -> Model:
        self.check(options)
        if options.device not in self.devices():
            raise UnsupportedError(f"{self.name} has no device {options.device!r}: choose one of "
                                   f"{', '.join(self.devices())}")
        return InferenceModel(spec, weights, options, self.name, self.compiler(options))
