"""Keras 3 framework plugin: the spec as a functional ``keras.Model`` on any Keras backend.

The framework parameter ``backend`` (``tensorflow``, ``jax``, ``torch``) is written to
``KERAS_BACKEND`` in :meth:`KerasFramework.setup`, before Keras is imported in the cell's process;
Keras fixes its backend at import, so a process that already imported Keras with another backend
is refused with a clear error (the subprocess launcher gives every cell a fresh process).

Training and inference use the Keras way: ``model.compile(optimizer, loss, run_eagerly,
jit_compile)`` then ``train_on_batch`` / ``predict_on_batch`` (both return host values, so
``synchronize`` has nothing left to wait for). Variants:

* ``eager``: ``run_eagerly=True``: the step runs op by op on every backend;
* ``graph`` (tensorflow backend only): ``run_eagerly=False, jit_compile=False``: a ``tf.function``
  without XLA (on jax and torch that setting would be eager again, so it is refused there);
* ``compiled``: ``jit_compile=True``: XLA on tensorflow, ``jax.jit`` on jax, ``torch.compile``
  on torch (all three give parity with PyTorch within 1e-6; torch.compile needs minutes of
  compilation on a small CPU, so the first call of a cell is long).

Devices: ``cpu``, ``cuda``, ``cuda:N`` as the backend sees them, entered with ``keras.device``.
``fp32`` is IEEE float32 on every backend (:func:`dlbench.builtin.frameworks.keras.backends.ieee_float32`): JAX's
default float32 matmul precision on GPUs is TF32, which put Keras+jax 5e-4 away from float64 on
an H200 while the torch backend stayed within 1e-6.

Precisions: ``fp32``; ``bf16`` is Keras mixed precision (``mixed_bfloat16`` policy on every
layer: float32 variables, bfloat16 compute, float32 logits).

Optimizers follow :class:`dlbench.framework.TrainConfig`: ``keras.optimizers.SGD`` (with
``momentum=0.9``: Keras's form ``v = 0.9 v - lr g; w += v`` equals PyTorch's heavy ball at a
constant learning rate) and an ``Adam`` whose ``eps`` sits outside the bias-corrected square root
as in PyTorch (Keras's own Adam folds the correction into the step size, which moves ``eps``).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from dlbench.api import (
    Batch,
    BuildOptions,
    DlbenchError,
    Framework,
    Model,
    ModelSpec,
    Param,
    TrainConfig,
    UnsupportedError,
    check_weights,
    gemm_rate,
    gradient_inputs,
    hookimpl,
)

from . import backends as kb
from .layers import (  # Keras layers; it imports no Keras at module level
    build_model,
    canonical_variables,
)


def _imported_backend() -> str | None:
    if "keras" not in sys.modules:
        return None
    import keras

    return str(keras.backend.backend())


def select_backend(backend: str) -> None:
    """Make ``backend`` Keras's backend in this process, or fail if Keras already runs another."""
    if backend not in kb.BACKENDS:
        raise DlbenchError(f"keras backend={backend!r}: choose one of {', '.join(kb.BACKENDS)}")
    current = _imported_backend()
    if current is None:
        os.environ["KERAS_BACKEND"] = backend
    elif current != backend:
        raise DlbenchError(
            f"keras backend={backend!r}: Keras was already imported in this process with backend "
            f"{current!r} and cannot switch (run each cell in its own process: the subprocess "
            "launcher)")


class KerasFramework(Framework):
    name = "keras"
    label = "Keras 3"
    modules = ("keras",)
    distribution = "keras"
    variants = ("eager", "graph", "compiled")
    precisions = ("fp32", "bf16")
    params = {"backend": Param("tensorflow", "Keras 3 backend", kb.BACKENDS, applies_to=("keras",))}

    def preload(self, threads: int | None, params: Mapping[str, Any]) -> None:
        backend = str(params.get("backend") or self.params["backend"].default)
        select_backend(backend)
        kb.prepare_import(backend, threads)
        import keras  # noqa: F401 - the import is the point

    def setup(self, threads: int | None, seed: int, params: Mapping[str, Any]) -> None:
        backend = str(params.get("backend") or self.params["backend"].default)
        select_backend(backend)
        kb.configure_backend(backend, threads)
        import keras

        keras.utils.set_random_seed(seed)

    def backend(self, options: BuildOptions | None = None) -> str:
        """The backend a build uses: ``options.extra["backend"]``, else the imported one."""
        wanted = (options.extra.get("backend") if options is not None else None) or _imported_backend()
        wanted = str(wanted or os.environ.get("KERAS_BACKEND") or self.params["backend"].default)
        select_backend(wanted)
        return wanted

    def devices(self) -> list[str]:
        backend = self.backend()
        n = kb.gpu_count(backend)
        return ["cpu"] + ["cuda" if i == 0 else f"cuda:{i}" for i in range(n)]

    def unsupported(self, device: str, params: Mapping[str, Any]) -> str | None:
        """Also: ``graph`` (tf.function) needs the tensorflow backend (checked in the parent too)."""
        backend = params.get("backend")
        if params.get("variant") == "graph" and backend is not None and backend != "tensorflow":
            return (f"keras[backend={backend}] has no variant 'graph' (tensorflow backend only): "
                    "choose eager or compiled")
        return super().unsupported(device, params)

    def check(self, options: BuildOptions) -> None:
        super().check(options)
        reason = self.unsupported(options.device, {"variant": options.variant, "backend": self.backend(options)})
        if reason:
            raise UnsupportedError(reason)

    def build(self, spec: ModelSpec, weights: Mapping[str, np.ndarray], options: BuildOptions) -> KerasModel:
        self.check(options)
        check_weights(spec, weights)
        backend = self.backend(options)
        device = kb.keras_device(options.device, self.devices(), backend)
        return KerasModel(spec, weights, options, backend, device)


class KerasModel(Model):
    def __init__(self, spec: ModelSpec, weights: Mapping[str, np.ndarray], options: BuildOptions,
                 backend: str, device: str) -> None:
        import keras

        self.spec, self.options, self.backend, self.device = spec, options, backend, device
        self._keras = keras
        self._int_inputs = {n for n, node in spec.inputs.items() if node.attrs.get("dtype") == "int32"}
        self._grad_inputs = gradient_inputs(spec)
        if options.precision == "fp32" and device.startswith("gpu"):
            kb.ieee_float32(backend)
        with keras.device(device):
            self.model = build_model(spec, options.precision, options.seed)
            self._vars = canonical_variables(self.model, spec)
            self.set_weights(weights)
        self._embed_model: Any = None

    def _compile(self) -> None:
        """(Re)compile: a fresh optimizer, so its state starts from zero."""
        self._loss = keras_loss(self.options.train.loss)
        with self._keras.device(self.device):
            self.model.compile(optimizer=keras_optimizer(self.options.train), loss=self._loss,
                               run_eagerly=self.options.variant == "eager",
                               jit_compile=self.options.variant == "compiled")

    # -- data ------------------------------------------------------------------------------------
    def to_device(self, batch: Batch | np.ndarray) -> Any:
        ops = self._keras.ops
        with self._keras.device(self.device):
            if isinstance(batch, Mapping):
                return {k: ops.convert_to_tensor(np.asarray(v), "int32" if k in self._int_inputs else "float32")
                        for k, v in batch.items()}
            dtype = "int32" if self.options.train.loss == "cross_entropy" else "float32"
            return ops.convert_to_tensor(np.asarray(batch), dtype)

    def to_numpy(self, native: Any) -> np.ndarray:
        arr = np.asarray(self._keras.ops.convert_to_numpy(native))
        return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)

    # -- compute ---------------------------------------------------------------------------------
    def forward(self, native_inputs: Any) -> Any:
        with self._keras.device(self.device):
            return self.model.predict_on_batch(native_inputs)

    def train_step(self, native_inputs: Any, native_targets: Any) -> Any:
        with self._keras.device(self.device):
            return np.float32(self.model.train_on_batch(native_inputs, native_targets))

    def matmul_flops(self, n: int = 1024) -> float | None:
        """``keras.ops.matmul`` at the cell's precision on the backend and device the model runs."""
        ops = self._keras.ops
        dtype = "bfloat16" if self.options.precision == "bf16" else "float32"
        rng = np.random.default_rng(0)
        with self._keras.device(self.device):
            a, b = (ops.convert_to_tensor(rng.standard_normal((n, n)).astype(np.float32), dtype)
                    for _ in range(2))
            return gemm_rate(lambda: ops.matmul(a, b), n)

    def synchronize(self) -> None:
        kb.synchronize(self.backend, self.device)

    def loss_and_input_gradient(self, inputs: Batch, targets: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        x = self.to_device(inputs)
        y = self.to_device(targets)
        with self._keras.device(self.device):
            return kb.input_gradient(self.backend, self.model, self._loss, x, y, self._grad_inputs)

    def embed(self, inputs: Batch) -> dict[str, np.ndarray]:
        names = [n.name for n in self.spec.nodes if n.op == "Embedding"]
        if not names:
            raise UnsupportedError(f"spec {self.spec.name!r} has no Embedding node")
        keras = self._keras
        with keras.device(self.device):
            if self._embed_model is None:
                self._embed_model = keras.Model(self.model.input,
                                                {k: self.model.get_layer(k).output for k in names})
            out = self._embed_model(self.to_device(inputs), training=False)
        return {k: self.to_numpy(keras.ops.cast(out[k], "float32")) for k in names}

    # -- weights ---------------------------------------------------------------------------------
    def get_weights(self) -> dict[str, np.ndarray]:
        ops = self._keras.ops
        return {k: np.asarray(ops.convert_to_numpy(v), np.float32) for k, v in self._vars.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        check_weights(self.spec, weights)
        with self._keras.device(self.device):
            for k, v in self._vars.items():
                v.assign(np.asarray(weights[k], np.float32))
        self._compile()

    # -- memory ----------------------------------------------------------------------------------
    def peak_memory_bytes(self) -> int | None:
        return kb.peak_memory(self.backend, self.device)

    def reset_peak_memory(self) -> None:
        kb.reset_peak_memory(self.backend, self.device)


def keras_loss(name: str) -> Any:
    import keras

    if name == "cross_entropy":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if name == "binary_cross_entropy":
        return keras.losses.BinaryCrossentropy(from_logits=True)
    if name == "mse":
        return keras.losses.MeanSquaredError()
    raise UnsupportedError(f"keras: unknown loss {name!r}: choose one of binary_cross_entropy, cross_entropy, mse")


def keras_optimizer(config: TrainConfig) -> Any:
    import keras

    lr = float(config.learning_rate)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr)
    if config.optimizer == "momentum":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    if config.optimizer == "adam":
        return torch_style_adam()(learning_rate=lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    raise UnsupportedError(f"keras: unknown optimizer {config.optimizer!r}: choose one of adam, momentum, sgd")


@functools.cache
def torch_style_adam() -> type:
    """``keras.optimizers.Adam`` with PyTorch's update ``w -= lr/bc1 * m / (sqrt(v/bc2) + eps)``."""
    import keras
    from keras import ops

    class TorchStyleAdam(keras.optimizers.Adam):
        def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
            dtype = variable.dtype
            lr = ops.cast(learning_rate, dtype)
            gradient = ops.cast(gradient, dtype)
            step = ops.cast(self.iterations + 1, dtype)
            bc1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
            bc2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
            m = self._momentums[self._get_variable_index(variable)]
            v = self._velocities[self._get_variable_index(variable)]
            self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
            self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
            denom = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bc2)), self.epsilon)
            self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bc1), denom))

    return TorchStyleAdam


@hookimpl
def dlbench_register_frameworks(register: Any) -> None:
    register(KerasFramework())
