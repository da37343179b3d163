"""The contract a task plugin fulfils: data, preprocessing, model spec, loss and metrics.

Preprocessing happens once, in NumPy, and is identical for every framework. The train split's
order is fixed here; the accuracy scenario shuffles it with the cell's seed, the same way for
every framework.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from dlbench.errors import UnsupportedError
from dlbench.framework import Batch, TrainConfig
from dlbench.params import Param
from dlbench.spec import ModelSpec


@dataclass
class Dataset:
    """Preprocessed train/test arrays. Inputs are keyed by the spec's input-node names."""

    x_train: dict[str, np.ndarray]
    y_train: np.ndarray
    x_test: dict[str, np.ndarray]
    y_test: np.ndarray
    num_classes: int | None = None
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    def subset(self, fraction: float, seed: int) -> Dataset:
        """A seeded, class-agnostic fraction of the training split (test split unchanged)."""
        n = max(1, int(round(self.n_train * fraction)))
        idx = np.sort(np.random.default_rng(seed).permutation(self.n_train)[:n])
        return Dataset({k: v[idx] for k, v in self.x_train.items()}, self.y_train[idx],
                       self.x_test, self.y_test, self.num_classes, self.name, dict(self.meta))


@dataclass(frozen=True)
class PerturbationDomain:
    """Where and how far attacks may move inputs (used by robustness scenarios).

    ``space`` is ``input`` (perturb float inputs within ``[clip_min, clip_max]``) or ``embedding``
    (perturb the outputs of the named embedding nodes, budgets relative to their norm).
    ``unit`` says how suites express epsilon: ``pixel/255``, ``dB``, ``relative-norm``.
    """

    space: str = "input"
    inputs: tuple[str, ...] = ()
    clip_min: float | None = 0.0
    clip_max: float | None = 1.0
    unit: str = "pixel/255"
    embedding_nodes: tuple[str, ...] = ()
    scale: float = 1.0
    """Input units per epsilon unit: 1/255 for pixel/255 on [0, 1] images, 1/80 for dB on speech
    features scaled from an 80 dB range; 1 for relative-norm budgets."""
    shared_rows: bool = False
    """Embedding space: perturb each table row once, shared by every example that looks it up
    (adversarial personalised ranking: one delta per user and per item across all their
    candidate pairs), instead of each example's lookups independently."""


@dataclass(frozen=True)
class Corruption:
    """One corruption a task declares (:meth:`Task.corruptions`), at graded levels (1 = mildest).

    ``values[i - 1]`` is the parameter of level ``i``, in ``unit`` (``sigma``, ``dB SNR``,
    ``fraction of words``); ``split`` says what it corrupts: ``test`` the evaluation inputs,
    ``train`` the training data (the robustness scenario then retrains and scores the clean test
    split). :meth:`Task.corrupt` applies it.
    """

    name: str
    values: tuple[float, ...]
    unit: str
    split: str = "test"

    @property
    def levels(self) -> range:
        return range(1, len(self.values) + 1)

    def value(self, level: int) -> float:
        if not 1 <= int(level) <= len(self.values):
            raise UnsupportedError(
                f"corruption {self.name!r} has levels 1-{len(self.values)}, not {level}"
            )
        return self.values[int(level) - 1]

    def seed(self, seed: int, level: int) -> list[int]:
        """The random-generator seed of one level: the same for every framework."""
        return [int(seed), zlib.crc32(self.name.encode()), int(level)]


@dataclass(frozen=True)
class NativeModel:
    """A model written in one framework's own API (bring-your-own-model): it runs only on the
    framework named ``framework``, through the same scenarios as the spec (speed, accuracy,
    robustness, scalability), never in parity (there is no spec to compile elsewhere).

    ``make()`` builds the native object (a ``torch.nn.Module`` for ``torch``) in the cell's
    process, after the framework's setup (threads, seed), so its own initialiser is seeded; import
    the framework inside it, never at plugin load. The task's :meth:`Task.model_spec` still gives
    the model's interface: input names, shapes and dtypes (synthetic batches, devices), the output
    shape the task scores, and the loss. The native model takes the inputs as keyword arguments by
    input name and returns what the spec's output would (logits). Its weights are its own
    (for torch, the state_dict), stored as trained-weight artifacts under their own names.
    ``name`` names it in cell details, model digests and artifacts.
    """

    name: str
    framework: str
    make: Callable[[], Any]


def native_skip(task: Task, params: Mapping[str, Any], framework: str) -> str | None:
    """Why a cell on ``framework`` cannot run this configuration's native model (parent-side,
    nothing imported), or None where there is none or it is this framework's."""
    native = task.native_model(params)
    if native is None or native.framework == framework:
        return None
    return (f"task {task.name!r} runs native {native.framework} model {native.name!r}: it runs "
            f"only on {native.framework}; choose framework {native.framework}")


def find_corruption(corruptions: Iterable[Corruption], name: str, task: str = "") -> Corruption:
    """The corruption called ``name``; an UnsupportedError listing the valid names otherwise."""
    cs = tuple(corruptions)
    for c in cs:
        if c.name == name:
            return c
    names = ", ".join(c.name for c in cs) or "(none)"
    where = f"{task} " if task else ""
    raise UnsupportedError(f"unknown {where}corruption {name!r}: choose one of {names}")


class Task(ABC):
    """A task plugin. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    domain: ClassVar[str]
    """What kind of data (e.g. ``vision``, ``speech``): shown in listings; the core never branches
    on it (a task brings its own corruptions and perturbation domain)."""
    description: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    """Task parameters a suite may set (dataset, model, activation...)."""
    metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    """Metric names :meth:`evaluate` returns; the first is the headline metric."""
    higher_is_better: ClassVar[dict[str, bool]] = {}
    """Direction per metric (default: higher is better)."""

    # -- data ------------------------------------------------------------------------------------
    def datasets(self, params: Mapping[str, Any]) -> list[str]:
        """Registry names of the datasets this configuration needs (empty: none to download)."""
        return []

    @abstractmethod
    def load(self, params: Mapping[str, Any]) -> Dataset:
        """Load and preprocess the data (raise DatasetError with the fix when it is missing)."""

    # -- model -----------------------------------------------------------------------------------
    @abstractmethod
    def model_spec(self, params: Mapping[str, Any], dataset: Dataset | None = None) -> ModelSpec:
        """The neutral model for this configuration (``dataset`` may size vocabularies)."""

    def native_model(self, params: Mapping[str, Any]) -> NativeModel | None:
        """A model in one framework's own API for this configuration (see :class:`NativeModel`),
        or None (default): the spec runs on every framework. Called in the parent too, so it must
        be cheap and import no framework (``NativeModel.make`` does that, in the cell)."""
        return None

    def train_config(self, params: Mapping[str, Any]) -> TrainConfig:
        """Loss and optimizer for this task."""
        return TrainConfig()

    def default_epochs(self, params: Mapping[str, Any]) -> int:
        return 5

    def default_batch_size(self, params: Mapping[str, Any]) -> int:
        """Training batch size when the suite sets none (large datasets want larger batches)."""
        return 32

    def headline(self, params: Mapping[str, Any]) -> str:
        """The metric leaderboards rank by and time-to-accuracy watches."""
        return self.metrics[0]

    def is_better(self, metric: str, a: float, b: float) -> bool:
        """Whether value ``a`` of ``metric`` is at least as good as ``b``."""
        return a >= b if self.higher_is_better.get(metric, True) else a <= b

    def target(self, params: Mapping[str, Any]) -> float | None:
        """Headline-metric value that defines time-to-accuracy (None: not reported)."""
        return None

    # -- speed -----------------------------------------------------------------------------------
    def synthetic_batch(self, spec: ModelSpec, batch_size: int, rng: np.random.Generator,
                        params: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Random inputs and targets of the model's shapes, so speed cells need no download."""
        shapes = spec.shapes()
        xs: dict[str, np.ndarray] = {}
        for name, node in spec.inputs.items():
            shape = (batch_size, *shapes[name])
            if node.attrs["dtype"] == "int32":
                high = _int_input_range(spec, name)
                xs[name] = rng.integers(0, high, size=shape, dtype=np.int32)
            else:
                xs[name] = rng.random(shape, dtype=np.float32)
        out_dim = shapes[spec.output][-1]
        loss = self.train_config(params).loss
        if loss == "cross_entropy":
            y = rng.integers(0, out_dim, size=batch_size).astype(np.int64)
        elif loss == "binary_cross_entropy":
            y = rng.integers(0, 2, size=batch_size).astype(np.float32)
        else:
            y = rng.normal(size=batch_size).astype(np.float32)
        return xs, y

    # -- evaluation ------------------------------------------------------------------------------
    @abstractmethod
    def evaluate(self, y_true: np.ndarray, outputs: np.ndarray, params: Mapping[str, Any]) -> dict[str, float]:
        """Metrics from model outputs (logits or predictions) on the test split."""

    def per_example(self, y_true: np.ndarray, outputs: np.ndarray, params: Mapping[str, Any]) -> np.ndarray | None:
        """Per-example score on the test split (1/0 correctness for classifiers) for paired tests
        and confidence intervals; None where the task has no natural per-example score."""
        loss = self.train_config(params).loss
        if loss == "cross_entropy":
            return (np.argmax(outputs, axis=-1) == y_true).astype(np.float64)
        if loss == "binary_cross_entropy":
            return ((outputs.reshape(-1) > 0) == (y_true.reshape(-1) > 0.5)).astype(np.float64)
        return None

    def classic_model(self, params: Mapping[str, Any]) -> Any:
        """A traditional-ML estimator for the baseline framework: ``fit(X: Batch, y)`` and
        ``predict(X: Batch) -> outputs`` in the same format as the neural model's output."""
        return None

    def perturbation(self, params: Mapping[str, Any]) -> PerturbationDomain:
        return PerturbationDomain()

    def corruptions(self, params: Mapping[str, Any]) -> tuple[Corruption, ...]:
        """The corruptions this task defines, with their graded levels (default: none; the
        robustness scenario then records that the task declares none)."""
        return ()

    def corrupt(self, x: Batch, y: np.ndarray, corruption: str, level: int,
                rng: np.random.Generator, dataset: Dataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Apply corruption ``corruption`` (one of :meth:`corruptions`) at integer ``level``
        (1 = mildest) to examples ``x, y`` of the split the corruption names (test inputs, or
        the training data), using what only the task knows (input names, feature scale,
        vocabulary; ``dataset`` is the loaded dataset, with its ``meta``). ``rng`` is seeded per
        corruption and level, the same for every framework. Returns new ``(x, y)``."""
        raise UnsupportedError(f"task {self.name!r} implements no corruptions (Task.corrupt)")

    def describe(self, params: Mapping[str, Any]) -> str:
        return self.description


def _int_input_range(spec: ModelSpec, input_name: str) -> int:
    """Upper bound for random ids: the smallest table an Embedding or EmbeddingBag reads this
    input with."""
    highs = [n.attrs["input_dim"] for n in spec.nodes
             if n.op in ("Embedding", "EmbeddingBag") and n.inputs[0] == input_name]
    return min(highs) if highs else 2
