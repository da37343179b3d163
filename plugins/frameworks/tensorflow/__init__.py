"""TensorFlow framework plugin: the spec as a ``tf.Module`` of ``tf.nn`` ops (no Keras).

Variants:

* ``eager``: plain eager execution, op by op;
* ``graph``: the forward pass, the training step and the input gradient wrapped in
  ``tf.function`` (one traced graph per input shape);
* ``compiled``: ``tf.function(jit_compile=True)``: the whole step is compiled by XLA.

Precisions: ``fp32``, and ``bf16`` as mixed precision: float32 master variables and optimizer
state, computation in ``bfloat16`` (variables and float inputs are cast inside the forward pass,
LayerNorm statistics and the attention softmax stay float32), float32 logits and loss.

Devices: ``cpu``, ``cuda`` (``/GPU:0``), ``cuda:N`` (``/GPU:N``); :meth:`TensorFlowFramework.setup`
turns on GPU memory growth so the peak from ``tf.config.experimental.get_memory_info`` is what
the model used, not TensorFlow's whole reservation.

The optimizers are written with ``tf.Variable`` slots and follow the PyTorch conventions the
contract fixes (:class:`dlbench.framework.TrainConfig`): momentum is heavy ball
``v = 0.9 v + g; w -= lr v`` and Adam puts ``eps`` outside the bias-corrected square root.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from dlbench.api import (
    Availability,
    Batch,
    BuildOptions,
    DlbenchError,
    Framework,
    Model,
    ModelSpec,
    TrainConfig,
    UnsupportedError,
    check_weights,
    gemm_rate,
    gradient_inputs,
    hookimpl,
)

from . import dp  # data parallelism; it imports no TensorFlow and never this module
from .graph import make_module  # the spec as a tf.Module; it imports no TensorFlow at module level

DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel", "tf-nightly")
"""Distributions that provide the ``tensorflow`` module; the first installed one is reported."""


class TensorFlowFramework(Framework):
    name = "tensorflow"
    label = "TensorFlow"
    modules = ("tensorflow",)
    distribution = "tensorflow"
    distributions = ("tensorflow", "tensorflow-cpu")
    variants = ("eager", "graph", "compiled")
    precisions = ("fp32", "bf16")

    def availability(self) -> Availability:
        if importlib.util.find_spec("tensorflow") is None:
            return Availability(False, None, "'tensorflow' is not installed: pip install 'dlbench[tensorflow]'")
        for dist in DISTRIBUTIONS:
            try:
                return Availability(True, importlib.metadata.version(dist))
            except importlib.metadata.PackageNotFoundError:
                continue
        return Availability(True, None)

    def preload(self, threads: int | None, params: Mapping[str, Any]) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if importlib.util.find_spec("tf_keras") is None:
            # ``import tensorflow`` loads Keras 3 eagerly (and through it pandas, scikit-learn and
            # scipy.stats: 1.3 CPU-s) unless TF_USE_LEGACY_KERAS points tf.keras at tf_keras; this
            # plugin never uses tf.keras, so a TensorFlow cell sets it (a user's value stands)
            os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow  # noqa: F401 - the import is the point

    def setup(self, threads: int | None, seed: int, params: Mapping[str, Any]) -> None:
        self.preload(threads, params)  # a no-op past the environment where a fork server ran it
        import tensorflow as tf

        configure_tensorflow(tf, threads)
        tf.random.set_seed(seed)

    def devices(self) -> list[str]:
        import tensorflow as tf

        n = len(tf.config.list_physical_devices("GPU"))
        return ["cpu"] + ["cuda" if i == 0 else f"cuda:{i}" for i in range(n)]

    def build(self, spec: ModelSpec, weights: Mapping[str, np.ndarray], options: BuildOptions) -> TensorFlowModel:
        self.check(options)
        check_weights(spec, weights)
        return TensorFlowModel(spec, weights, options, tf_device(options.device, self.devices()))

    def data_parallel_throughput(self, spec: ModelSpec, weights: Mapping[str, np.ndarray],
                                 options: BuildOptions, run: Any) -> list[float]:
        """MirroredStrategy (logical devices on CPU): see :mod:`dlbench.builtin.frameworks.tensorflow.dp`."""
        return dp.data_parallel_throughput(spec, weights, options, run)


def configure_tensorflow(tf: Any, threads: int | None) -> None:
    """Thread pools (intra- and inter-op both ``threads``) and GPU memory growth.

    TensorFlow fixes both once its runtime starts, so this must run before the first op; a
    second call asking for the same settings is harmless, a different thread count is an error.
    """
    if threads:
        threading = tf.config.threading
        try:
            threading.set_intra_op_parallelism_threads(threads)
            threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError as exc:
            current = threading.get_intra_op_parallelism_threads()
            if current != threads:
                raise DlbenchError(
                    f"threads={threads}: TensorFlow's runtime already started in this process with "
                    f"{current or 'default'} intra-op threads (run each cell in its own process: "
                    "the subprocess launcher)") from exc
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # runtime already started: growth stays as set
            tf.config.experimental.set_memory_growth(gpu, True)


def tf_device(device: str, available: list[str]) -> str:
    """Map a dlbench device (``cpu``, ``cuda``, ``cuda:N``) to a TensorFlow device string."""
    name = "cuda" if device == "cuda:0" else device
    if name not in available:
        raise UnsupportedError(f"tensorflow cannot see device {device!r}: choose one of {', '.join(available)}")
    if name == "cpu":
        return "/CPU:0"
    return f"/GPU:{name.split(':', 1)[1] if ':' in name else 0}"


class TensorFlowModel(Model):
    def __init__(self, spec: ModelSpec, weights: Mapping[str, np.ndarray], options: BuildOptions,
                 device: str) -> None:
        import tensorflow as tf

        self.spec = spec
        self.options = options
        self.device = device
        self._tf = tf
        self._grad_inputs = gradient_inputs(spec)
        with tf.device(device):
            self.module = make_module(spec, weights, options.precision, options.seed)
            self._vars = [self.module.vars[k] for k in sorted(self.module.vars)
                          if self.module.vars[k].trainable]  # not the running statistics
            self.optimizer = TFOptimizer(options.train, self._vars)
        self.loss_fn = loss = tf_loss(options.train.loss)  # loss(outputs, targets); dp.py uses it too
        module, optimizer, variables = self.module, self.optimizer, self._vars

        def forward(inputs: Mapping[str, Any]) -> Any:
            return module(inputs, training=False)

        def train(inputs: Mapping[str, Any], targets: Any) -> Any:
            with tf.GradientTape() as tape:
                value = loss(module(inputs, training=True), targets)
            optimizer.apply(tape.gradient(value, variables))
            return value

        def input_grad(inputs: Mapping[str, Any], targets: Any) -> Any:
            watched = [inputs[k] for k in self._grad_inputs]
            with tf.GradientTape() as tape:
                tape.watch(watched)
                value = loss(module(inputs, training=False), targets)
            return value, tape.gradient(value, watched)

        self._forward = self._wrap(forward)
        self._train = self._wrap(train)
        self._input_grad = self._wrap(input_grad)
        self._last: Any = None

    def _wrap(self, fn: Any) -> Any:
        """tf.function without AutoGraph: every branch of the graph builder is on Python values
        (the op, the training flag, static shapes), so there is nothing to convert, and AutoGraph's
        conversion of the builder once called ``_op`` for ``_conv`` (a ResNet-50 bf16 training
        step in the reference suite: "tf___op() missing 2 required positional arguments")."""
        variant = self.options.variant
        if variant == "graph":
            return self._tf.function(fn, reduce_retracing=True, autograph=False)
        if variant == "compiled":
            return self._tf.function(fn, jit_compile=True, autograph=False)
        return fn

    # -- data ------------------------------------------------------------------------------------
    def to_device(self, batch: Batch | np.ndarray) -> Any:
        tf = self._tf
        with tf.device(self.device):
            if isinstance(batch, Mapping):
                return {k: tf.identity(tf.convert_to_tensor(_host(v))) for k, v in batch.items()}
            return tf.identity(tf.convert_to_tensor(_host(batch)))

    def to_numpy(self, native: Any) -> np.ndarray:
        arr = native.numpy() if hasattr(native, "numpy") else np.asarray(native)
        arr = np.asarray(arr)
        return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)

    # -- compute ---------------------------------------------------------------------------------
    def forward(self, native_inputs: Any) -> Any:
        with self._tf.device(self.device):
            self._last = self._forward(native_inputs)
        return self._last

    def train_step(self, native_inputs: Any, native_targets: Any) -> Any:
        with self._tf.device(self.device):
            self._last = self._train(native_inputs, native_targets)
        return self._last

    def matmul_flops(self, n: int = 1024) -> float | None:
        """``tf.linalg.matmul`` at the cell's precision on the model's device (eager: oneDNN)."""
        tf = self._tf
        dtype = tf.bfloat16 if self.options.precision == "bf16" else tf.float32
        with tf.device(self.device):
            a, b = (tf.cast(tf.random.stateless_normal((n, n), seed=(0, i)), dtype) for i in range(2))
            return gemm_rate(lambda: tf.linalg.matmul(a, b), n)

    def synchronize(self) -> None:
        sync = getattr(self._tf.test.experimental, "sync_devices", None)
        if sync is not None:
            sync()
        elif self._last is not None:
            _ = self._last.numpy()

    def loss_and_input_gradient(self, inputs: Batch, targets: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        x = self.to_device(inputs)
        y = self.to_device(targets)
        with self._tf.device(self.device):
            value, grads = self._input_grad(x, y)
        return float(value.numpy()), {k: np.asarray(g.numpy(), np.float32)
                                      for k, g in zip(self._grad_inputs, grads, strict=True)}

    def embed(self, inputs: Batch) -> dict[str, np.ndarray]:
        names = [n.name for n in self.spec.nodes if n.op == "Embedding"]
        if not names:
            raise UnsupportedError(f"spec {self.spec.name!r} has no Embedding node")
        with self._tf.device(self.device):
            values = self.module.run_nodes(self.to_device(inputs))
        return {k: self.to_numpy(self._tf.cast(values[k], self._tf.float32)) for k in names}

    # -- weights ---------------------------------------------------------------------------------
    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v.numpy(), np.float32) for k, v in self.module.vars.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        check_weights(self.spec, weights)
        for k, v in self.module.vars.items():
            v.assign(np.asarray(weights[k], np.float32))
        self.optimizer.reset()

    # -- memory ----------------------------------------------------------------------------------
    def peak_memory_bytes(self) -> int | None:
        if not self.device.startswith("/GPU"):
            return None
        return int(self._tf.config.experimental.get_memory_info(self.device[1:])["peak"])

    def reset_peak_memory(self) -> None:
        if self.device.startswith("/GPU"):
            self._tf.config.experimental.reset_memory_stats(self.device[1:])


def _host(a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        return arr.astype(np.int32)
    return arr.astype(np.float32)


def tf_loss(name: str) -> Any:
    """``loss(outputs, targets)``: the mean loss of :class:`~dlbench.framework.TrainConfig`."""
    import tensorflow as tf

    if name == "cross_entropy":
        def ce(out: Any, t: Any) -> Any:
            labels = tf.cast(tf.reshape(t, [-1]), tf.int32)
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=out))
        return ce
    if name == "binary_cross_entropy":
        def bce(out: Any, t: Any) -> Any:
            labels = tf.cast(tf.reshape(t, [-1]), tf.float32)
            return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=tf.reshape(out, [-1])))
        return bce
    if name == "mse":
        def mse(out: Any, t: Any) -> Any:
            return tf.reduce_mean(tf.square(tf.reshape(out, [-1]) - tf.cast(tf.reshape(t, [-1]), tf.float32)))
        return mse
    raise UnsupportedError(f"tensorflow: unknown loss {name!r}: choose one of binary_cross_entropy, cross_entropy, mse")


class TFOptimizer:
    """SGD, heavy-ball momentum 0.9 and Adam (PyTorch conventions) over ``tf.Variable`` slots."""

    MOMENTUM = 0.9
    BETAS = (0.9, 0.999)
    EPS = 1e-7

    def __init__(self, config: TrainConfig, variables: list[Any]) -> None:
        import tensorflow as tf

        if config.optimizer not in ("sgd", "momentum", "adam"):
            raise UnsupportedError(f"tensorflow: unknown optimizer {config.optimizer!r}: choose one of adam, momentum, sgd")
        self.kind = config.optimizer
        self.lr = float(config.learning_rate)
        self.variables = variables
        self.step = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="step")
        n_slots = {"sgd": 0, "momentum": 1, "adam": 2}[self.kind]
        self.slots = [[tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
                      for _ in range(n_slots)]

    def reset(self) -> None:
        self.step.assign(0.0)
        for group in self.slots:
            for s in group:
                s.assign(self._zeros(s))

    @staticmethod
    def _zeros(v: Any) -> Any:
        import tensorflow as tf

        return tf.zeros_like(v)

    def apply(self, grads: list[Any]) -> None:
        import tensorflow as tf

        lr = self.lr
        grads = [tf.zeros_like(w) if g is None else tf.convert_to_tensor(g)  # densify IndexedSlices
                 for w, g in zip(self.variables, grads, strict=True)]
        if self.kind == "sgd":
            for w, g in zip(self.variables, grads, strict=True):
                w.assign_sub(lr * g)
            return
        if self.kind == "momentum":
            for w, v, g in zip(self.variables, self.slots[0], grads, strict=True):
                v.assign(self.MOMENTUM * v + g)
                w.assign_sub(lr * v)
            return
        b1, b2 = self.BETAS
        t = self.step.assign_add(1.0)
        bc1 = 1.0 - tf.pow(b1, t)
        bc2_sqrt = tf.sqrt(1.0 - tf.pow(b2, t))
        for w, m, v, g in zip(self.variables, self.slots[0], self.slots[1], grads, strict=True):
            m.assign(b1 * m + (1.0 - b1) * g)
            v.assign(b2 * v + (1.0 - b2) * tf.square(g))
            w.assign_sub((lr / bc1) * m / (tf.sqrt(v) / bc2_sqrt + self.EPS))


@hookimpl
def dlbench_register_frameworks(register: Any) -> None:
    register(TensorFlowFramework())
