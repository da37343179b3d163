"""Everything a scenario needs inside the cell's process: the cell, its plugins, data and model."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from dlbench.cell import Cell
from dlbench.data.registry import require
from dlbench.data.sealed import seal, seal_path, seal_state
from dlbench.errors import DlbenchError, UnsupportedError
from dlbench.framework import BuildOptions, Framework, Model
from dlbench.plugins import Plugins
from dlbench.result import ModelInfo, Result
from dlbench.spec import ModelSpec, weights_digest
from dlbench.task import Dataset, NativeModel, Task, native_skip

FRAMEWORK_LEVEL = ("variant", "precision")


@dataclass
class CellContext:
    """One cell being measured. Scenarios read from it and fill ``result``."""

    cell: Cell
    task: Task
    framework: Framework
    plugins: Plugins
    artifacts_dir: Path
    result: Result
    notes: list[str] = field(default_factory=list)
    run_cache: Path | None = None
    """The run's shared folder for :meth:`once_per_run` (None: nothing is shared)."""
    native_info: ModelInfo | None = field(default=None, init=False, repr=False)
    """Set when the task's native model is first built (see :meth:`model_info`)."""

    # -- parameters ------------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        return self.cell.params

    @property
    def seed(self) -> int:
        return int(self.params.get("seed", 0) or 0)

    def log(self, msg: str) -> None:
        print(f"[dlbench] {msg}", flush=True)

    # -- data and model --------------------------------------------------------------------------
    @cached_property
    def dataset(self) -> Dataset:
        for name in self.task.datasets(self.params):
            require(self.plugins.datasets.get(name, f"task {self.task.name!r}"))
        dataset = self.task.load(self.params)
        split = {"split": dataset.meta.get("split"), "train": dataset.n_train, "test": dataset.n_test}
        if "duplicates_removed" in dataset.meta:
            split["duplicates_removed"] = int(dataset.meta["duplicates_removed"])
            self.log(f"{dataset.name}: {split['duplicates_removed']} exact duplicates removed "
                     f"before the split ({dataset.n_train} train, {dataset.n_test} test)")
        self.result.details["dataset"] = split
        return dataset

    @cached_property
    def native(self) -> NativeModel | None:
        """The task's own model for this cell (:meth:`Task.native_model`), or None: the spec."""
        return self.task.native_model(self.params)

    def spec(self, dataset: Dataset | None = None) -> ModelSpec:
        return self.task.model_spec(self.params, dataset)

    def build_options(self, **overrides: Any) -> BuildOptions:
        train = self.task.train_config(self.params)
        lr = self.params.get("learning_rate")
        if lr:
            train = type(train)(train.loss, train.optimizer, float(lr))
        extra = {k: v for k, v in self.params.items() if k in self.framework.params}
        kw: dict[str, Any] = dict(device=self.cell.device, variant=self.params.get("variant", "eager"),
                                  precision=self.params.get("precision", "fp32"), train=train,
                                  seed=self.seed, extra=extra)
        kw.update(overrides)
        return BuildOptions(**kw)

    def build(self, spec: ModelSpec | None, weights: Mapping[str, np.ndarray] | None,
              framework: Framework | None = None, **overrides: Any) -> Model:
        """Build this cell's model: the neural spec, or the task's classic estimator."""
        fw = framework or self.framework
        options = self.build_options(**overrides)
        fw.check(options)
        if fw.kind == "classic":
            estimator = self.task.classic_model(self.params)
            if estimator is None:
                raise UnsupportedError(f"task {self.task.name!r} has no classic baseline for {fw.name}")
            return fw.build_classic(estimator, options)
        assert spec is not None and weights is not None
        if self.native is None:
            return fw.build(spec, weights, options)
        return self._build_native(fw, spec, weights, options)

    def _build_native(self, fw: Framework, spec: ModelSpec, weights: Mapping[str, np.ndarray],
                      options: BuildOptions) -> Model:
        """The task's native model. It initialises itself (seeded by the framework's setup), so
        weights in the spec's canonical layout (a scenario's initial weights) are not its own and
        are left alone; its own weights (reloaded trained ones) are loaded. Its output shape is
        checked against the spec's on two synthetic examples, before anything is timed."""
        native = self.native
        assert native is not None
        reason = native_skip(self.task, self.params, fw.name)
        if reason:
            raise UnsupportedError(reason)
        model = fw.build_native(native.make(), spec, options)
        own = model.get_weights()
        if self.native_info is None:  # the first build: the weights it initialised itself with
            self.native_info = ModelInfo(f"native:{native.framework}:{native.name}",
                                         model.parameter_count(), 0, weights_digest(own))
        if set(weights) == set(own):
            model.set_weights(weights)
        # checked on an eager copy where the variant compiles: a forward call here would compile
        # the cell's model before the speed scenario times its first call
        eager = options.variant == "eager" or "eager" not in fw.variants
        probe = model if eager else fw.build_native(
            native.make(), spec, replace(options, variant="eager"))
        xs, _ = self.task.synthetic_batch(spec, 2, np.random.default_rng(self.seed), self.params)
        shape = tuple(np.shape(probe.to_numpy(probe.forward(probe.to_device(xs)))))
        want = (2, *spec.shapes()[spec.output])
        if shape != want:
            raise DlbenchError(f"native model {native.name!r} returned outputs of shape {shape} "
                               f"for 2 examples; task {self.task.name!r} scores {want}: make its "
                               "last layer match the task's output")
        return model

    def model_info(self, spec: ModelSpec | None, initial: Mapping[str, np.ndarray] | None) -> ModelInfo:
        """What the store keeps of the cell's model: the spec's digest, parameters, FLOPs and
        initial weights; a native model's own parameters and initial weights (no FLOPs: it has
        no spec to count them from) once it is built."""
        if self.native_info is not None:
            return replace(self.native_info)
        if spec is None or initial is None:
            return ModelInfo("", 0, 0, "")
        return ModelInfo(spec.digest(), spec.parameter_count(), spec.flops_per_example(),
                         weights_digest(initial))

    # -- what a run measures once ---------------------------------------------------------------
    def once_per_run(self, what: Mapping[str, Any], compute: Callable[[], dict[str, np.ndarray]]
                     ) -> tuple[dict[str, np.ndarray], str | None]:
        """``compute()``'s arrays, measured by the first cell of this run that asks for ``what``
        (a mapping of everything the value depends on) and reused by the later ones, in any
        process: an ``.npz`` in the run's cache, written atomically. Returns the arrays and the
        key of the cell that measured them (None: this one). Without a run cache (a cell run on
        its own) every call computes."""
        if self.run_cache is None:
            return compute(), None
        blob = json.dumps(dict(what), sort_keys=True, default=str)
        path = self.run_cache / f"{hashlib.sha256(blob.encode()).hexdigest()[:24]}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                if bytes(z["__what__"]).decode() == blob:
                    return ({k: z[k] for k in z.files if not k.startswith("__")},
                            bytes(z["__by__"]).decode())
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            pass  # none yet, or one that cannot be read: measured (again) and written anew
        arrays = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        stored = {**arrays, "__what__": np.frombuffer(blob.encode(), np.uint8),
                  "__by__": np.frombuffer(self.cell.key.encode(), np.uint8)}
        np.savez(tmp, **stored)  # type: ignore[arg-type]
        os.replace(tmp, path)
        return arrays, None

    # -- trained-weight artifacts ----------------------------------------------------------------
    def training_key(self, spec: ModelSpec | None, **training: Any) -> str:
        """Digest of everything that determines trained weights (reused across cells and runs)."""
        task_params = {k: v for k, v in self.params.items() if k in self.task.params}
        fw_params = {k: v for k, v in self.params.items() if k in FRAMEWORK_LEVEL or k in self.framework.params}
        blob = json.dumps({"task": self.task.name, "task_params": task_params,
                           "framework": self.framework.name, "fw_params": fw_params,
                           "spec": spec.digest() if spec else None, "seed": self.seed,
                           "native": self.native.name if self.native else None,
                           "training": training}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def artifact_path(self, key: str) -> Path:
        return self.artifacts_dir / "weights" / f"{key}.npz"

    def save_weights(self, key: str, weights: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> str:
        """Write trained weights as ``.npz`` (atomically; no pickle) and return the relative path."""
        path = self.artifact_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        arrays["__meta__"] = np.frombuffer(json.dumps(dict(meta), default=str).encode(), np.uint8)
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
        seal(path)  # its SHA-256 beside it (<key>.npz.sha256), checked when it is reused
        return str(path.relative_to(self.artifacts_dir))

    def load_weights(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The stored trained weights of ``key`` and their metadata; None when there are none to
        trust (no artifact, or one written without a seal: they are trained again). Weights that
        no longer match their seal are refused: a DlbenchError line naming the file."""
        path = self.artifact_path(key)
        state = seal_state(path)
        if state in ("missing", "unsealed"):
            return None
        if state == "mismatch":
            raise DlbenchError(f"trained weights {path} no longer match their digest "
                               f"({seal_path(path).name}): the file changed after it was written; "
                               f"delete both to train again")
        with np.load(path, allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files if k != "__meta__"}
            meta = json.loads(bytes(z["__meta__"]).decode()) if "__meta__" in z.files else {}
        return weights, meta
