"""The contract a framework plugin fulfils.

A :class:`Framework` is cheap to construct and never imports its library at module level:
:meth:`Framework.availability` uses ``importlib.util.find_spec``. Inside a cell's process the
runner calls :meth:`Framework.setup` (threads, seeds, backend environment) and then
:meth:`Framework.build`, which compiles a :class:`~dlbench.spec.ModelSpec` plus canonical weights
into a native :class:`Model` on one device.

The :class:`Model` keeps data on the device between calls so a timing loop measures the
framework, not host transfers: ``to_device`` once, then ``forward``/``train_step`` many times
(asynchronous where the framework is), then ``synchronize``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from dlbench.errors import UnsupportedError
from dlbench.params import Param
from dlbench.spec import ModelSpec

Batch = Mapping[str, np.ndarray]
"""Model inputs by input-node name, batch axis first."""

LOSSES = ("cross_entropy", "binary_cross_entropy", "mse")
OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """Loss and optimizer, chosen by the task (all reductions are means over the batch).

    ``cross_entropy`` takes logits ``(N, C)`` and integer targets ``(N,)``;
    ``binary_cross_entropy`` takes logits ``(N, 1)`` and float targets ``(N,)`` in {0, 1};
    ``mse`` takes outputs ``(N, 1)`` and float targets ``(N,)``. ``momentum`` is SGD with
    momentum 0.9 (heavy ball, PyTorch convention); ``adam`` uses betas (0.9, 0.999), eps 1e-7.
    """

    loss: str = "cross_entropy"
    optimizer: str = "adam"
    learning_rate: float = 1e-3


@dataclass(frozen=True)
class BuildOptions:
    """How to build a model: the cell's framework-level parameters."""

    device: str = "cpu"
    variant: str = "eager"
    """``eager``; ``graph`` (traced, not compiled: tf.function, on TensorFlow and Keras's
    tensorflow backend); ``compiled`` (torch.compile, jax.jit, XLA). A framework lists the ones
    it supports in :attr:`Framework.variants`."""
    precision: str = "fp32"  # fp32 | bf16
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)  # framework-specific params


@dataclass(frozen=True)
class DataParallelRun:
    """One data-parallel throughput measurement (see :meth:`Framework.data_parallel_throughput`).

    ``inputs``/``targets`` hold the global batch, ``workers x batch_size`` examples: replica ``i``
    takes examples ``[i * batch_size, (i + 1) * batch_size)`` every step (weak scaling: the
    per-worker batch stays fixed as workers are added). ``budget`` is a sampler budget
    (:class:`dlbench.measure.sampler.Budget` fields). ``threads_per_worker`` is each replica's
    intra-op thread count on CPU (None: 1, as ``torchrun`` does, so N workers use N cores).
    """

    workers: int
    batch_size: int
    inputs: Mapping[str, np.ndarray]
    targets: np.ndarray
    budget: Mapping[str, Any] = field(default_factory=dict)
    threads_per_worker: int | None = None


@dataclass(frozen=True)
class Availability:
    installed: bool
    version: str | None
    reason: str = ""


class Model(ABC):
    """A compiled model on one device. Natives are whatever the framework uses (tensors, arrays)."""

    spec: ModelSpec
    options: BuildOptions

    @abstractmethod
    def to_device(self, batch: Batch | np.ndarray) -> Any:
        """Copy inputs (a mapping, returns a mapping of natives) or targets (an array) to the device."""

    @abstractmethod
    def forward(self, native_inputs: Any) -> Any:
        """Inference-mode forward pass (dropout off); may return before the work is done."""

    @abstractmethod
    def train_step(self, native_inputs: Any, native_targets: Any) -> Any:
        """One optimizer step on a batch (dropout on); returns the loss as a native scalar."""

    @abstractmethod
    def synchronize(self) -> None:
        """Block until all work queued on the model's device has finished."""

    @abstractmethod
    def to_numpy(self, native: Any) -> np.ndarray:
        """Bring a native result back to the host as float32/float64 NumPy."""

    @abstractmethod
    def get_weights(self) -> dict[str, np.ndarray]:
        """Current weights in canonical layout (see :mod:`dlbench.spec`), float32."""

    @abstractmethod
    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load canonical weights (optimizer state is reset)."""

    @abstractmethod
    def loss_and_input_gradient(self, inputs: Batch, targets: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean loss and its gradient with respect to each float input (inference mode)."""

    def class_gradient(self, inputs: Batch, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Per-example gradient of ``log_softmax(outputs)[i, labels[i]]`` w.r.t. each float input
        (optional; used by attacks that need class gradients, see :mod:`dlbench.robustness`).

        The default serves every ``cross_entropy`` model from :meth:`loss_and_input_gradient`:
        with ``labels`` as targets the mean loss is ``-(1/N) sum_i log_softmax(z_i)[labels[i]]``
        and example ``i``'s loss depends on example ``i`` only (inference mode), so
        ``-N * gradient`` is exactly each example's log-probability gradient. It differs from the
        gradient of the raw logit ``z_c`` by ``sum_j p_j grad z_j``, a term shared by every class,
        so differences of class gradients are those of the logits. Frameworks may override it.
        """
        if self.options.train.loss != "cross_entropy":
            raise UnsupportedError(f"class gradients need a cross_entropy model, not "
                                   f"{self.options.train.loss!r}")
        n = len(next(iter(inputs.values())))
        _, grads = self.loss_and_input_gradient(inputs, np.asarray(labels))
        return {k: -float(n) * np.asarray(g) for k, g in grads.items()}

    def embed(self, inputs: Batch) -> dict[str, np.ndarray]:  # pragma: no cover - optional
        """Outputs of the model's Embedding nodes, for attacks in embedding space (optional)."""
        raise UnsupportedError(f"{type(self).__name__} does not expose embeddings")

    def native_step(self, native_inputs: Any, native_targets: Any, mode: str) -> tuple[Any, Any]:
        """The framework's own callable for one step and its sync, bypassing this wrapper, for the
        harness-fidelity check (``mode`` is infer or train). Default: the wrapper's methods."""
        if mode == "train":
            return (lambda: self.train_step(native_inputs, native_targets)), self.synchronize
        return (lambda: self.forward(native_inputs)), self.synchronize

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory since the last reset, or None where the device does not tell."""
        return None

    def matmul_flops(self, n: int = 1024) -> float | None:
        """This framework's own dense ``n x n`` matmul FLOP/s on the model's device, at its
        precision and with the cell's threads (use :func:`dlbench.api.gemm_rate`): part of the
        CPU roofline an efficiency is measured against. None (default): not offered."""
        return None

    def parameter_count(self) -> int:
        """Trainable parameters: the spec's (a native model counts its own)."""
        return self.spec.parameter_count()

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory window."""

    # -- conveniences built on the primitives ----------------------------------------------------
    def predict(self, inputs: Batch, batch_size: int = 256) -> np.ndarray:
        """Forward pass over any number of examples, in batches, returned as NumPy."""
        n = len(next(iter(inputs.values())))
        outs = []
        for i in range(0, n, batch_size):
            chunk = {k: v[i : i + batch_size] for k, v in inputs.items()}
            outs.append(self.to_numpy(self.forward(self.to_device(chunk))))
        return np.concatenate(outs, axis=0) if outs else np.zeros((0,))

    def fit_epoch(self, inputs: Batch, targets: np.ndarray, batch_size: int, order: np.ndarray) -> float:
        """One epoch of ``train_step`` over ``order`` (a permutation); returns the mean loss."""
        losses = []
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            xb = self.to_device({k: v[idx] for k, v in inputs.items()})
            yb = self.to_device(targets[idx])
            losses.append(self.train_step(xb, yb))
        self.synchronize()
        return float(np.mean([float(self.to_numpy(v)) for v in losses])) if losses else float("nan")


class Framework(ABC):
    """A framework plugin. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    """Registry name used in suites (``torch``, ``jax``...)."""
    label: ClassVar[str] = ""
    """Human name for reports."""
    modules: ClassVar[tuple[str, ...]] = ()
    """Import names that must be findable for the framework to be installed."""
    distribution: ClassVar[str | None] = None
    """Distribution whose version is reported (``torch``, ``tensorflow``...)."""
    distributions: ClassVar[tuple[str, ...]] = ()
    """Every distribution the environment record lists for this framework (their versions enter
    each run's fingerprint, next to dlbench's own dependencies); empty: ``(distribution,)``."""
    kind: ClassVar[str] = "neural"
    """``neural`` compiles the spec; ``classic`` fits a traditional model for the task."""
    variants: ClassVar[tuple[str, ...]] = ("eager", "compiled")
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    device_kinds: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    """Kinds of device it can run on (``cuda`` covers ``cuda:N``). With ``variants`` and
    ``precisions`` the parent checks a suite against it at load, without importing the framework;
    :meth:`devices` says which of them this machine has, in the cell's process."""
    params: ClassVar[dict[str, Param]] = {}
    """Framework-specific suite parameters (e.g. Keras ``backend``)."""
    trains: ClassVar[bool] = True
    """False for inference runtimes (ONNX Runtime, OpenVINO): no train step, no input gradients.
    Speed cells in train mode skip; accuracy and robustness cells run weights that the framework
    named by the cell's ``trained_by`` parameter trained (:func:`dlbench.scenarios.accuracy.
    train_or_load`); parity compares outputs and the loss; gradient attacks skip."""

    def availability(self) -> Availability:
        """Whether the framework is installed, without importing it."""
        for mod in self.modules:
            if importlib.util.find_spec(mod) is None:
                return Availability(False, None, f"{mod!r} is not installed: pip install 'dlbench[{self.name}]'")
        version = None
        if self.distribution:
            try:
                version = importlib.metadata.version(self.distribution)
            except importlib.metadata.PackageNotFoundError:
                version = None
        return Availability(True, version)

    def preload(self, threads: int | None, params: Mapping[str, Any]) -> None:
        """Import the library in a fork server, the process whose forks run this framework's
        speed cells (:mod:`dlbench.run.forkserver`): first what must precede the import (the
        environment, thread limits a runtime fixes when it is imported), then the import. Start
        no thread, touch no device, seed nothing, build nothing: each cell's process still calls
        :meth:`setup`, and its first call must be the first of its process. A preload that leaves
        a second thread running makes the server decline (forking it would be unsafe): that
        group's cells are then spawned afresh. Default: import :attr:`modules`."""
        for module in self.modules:
            importlib.import_module(module)

    def setup(self, threads: int | None, seed: int, params: Mapping[str, Any]) -> None:
        """Called once in the cell's process before anything else: threads, seeds, environment."""

    @abstractmethod
    def devices(self) -> list[str]:
        """Devices this framework can see (imports the framework): ``cpu``, ``cuda``, ``cuda:1``."""

    @abstractmethod
    def build(self, spec: ModelSpec, weights: Mapping[str, np.ndarray], options: BuildOptions) -> Model:
        """Compile ``spec`` with ``weights`` into a native model; raise UnsupportedError to skip."""

    def build_native(self, native: Any, spec: ModelSpec, options: BuildOptions) -> Model:
        """Wrap a model written in this framework's own API (the object
        :class:`dlbench.task.NativeModel` ``make()`` returned) as a :class:`Model`; ``spec`` is
        the task's model for its interface only (input names, shapes, dtypes; the loss is in
        ``options.train``). Weights are the native model's own, under its own names. Default:
        this framework runs no native models."""
        raise UnsupportedError(f"{self.name} runs no native models (Framework.build_native): "
                               "give the task a spec, or a native model for a framework that does")

    def build_classic(self, estimator: Any, options: BuildOptions) -> Model:
        """``kind = "classic"`` frameworks wrap the task's classic estimator (see Task.classic_model)."""
        raise UnsupportedError(f"{self.name} is not a classic-ML framework")

    def version(self) -> str | None:
        return self.availability().version

    def unsupported(self, device: str, params: Mapping[str, Any]) -> str | None:
        """Why this framework cannot run a cell on ``device`` with ``params`` (``variant``,
        ``precision``, its own ``params``), from what it declares alone (``device_kinds``,
        ``variants``, ``precisions``; nothing is imported), or None when it may. The parent checks
        suites with it at load and :meth:`check` in the cell; override it (calling super) for
        limits that depend on a parameter (Keras: ``graph`` needs the tensorflow backend)."""
        kind = device.split(":", 1)[0]
        if kind not in self.device_kinds:
            return f"{self.name} has no device {device!r}: choose one of {', '.join(self.device_kinds)}"
        for what, offered in (("variant", self.variants), ("precision", self.precisions)):
            value = params.get(what)
            if value is not None and value not in offered:
                return f"{self.name} has no {what} {value!r}: choose one of {', '.join(offered)}"
        return None

    def check(self, options: BuildOptions) -> None:
        """Raise UnsupportedError for devices, variants or precisions this framework does not offer."""
        reason = self.unsupported(options.device, {**options.extra, "variant": options.variant,
                                                   "precision": options.precision})
        if reason:
            raise UnsupportedError(reason)

    def data_parallel_throughput(self, spec: ModelSpec, weights: Mapping[str, np.ndarray],
                                 options: BuildOptions, run: DataParallelRun) -> list[float]:
        """Optional: training throughput of ``run.workers`` data-parallel replicas.

        Uses the framework's native mechanism (PyTorch DDP, JAX sharding over devices,
        TensorFlow MirroredStrategy...): every replica starts from ``weights``, steps on its
        shard of ``run.inputs`` and gradients are averaged across replicas every step. Returns
        global throughput (samples/s, all replicas together), one value per timed window.
        Implementations isolate what must be set before the framework starts (device counts,
        process groups) in processes of their own. Raise UnsupportedError where not offered.
        """
        raise UnsupportedError(f"{self.name} does not implement data-parallel training "
                               "(Framework.data_parallel_throughput): choose another framework")
