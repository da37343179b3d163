"""Parity: from identical weights and inputs, a framework agrees with the reference.

The ``reference`` parameter names it: a framework (outputs, the loss, input gradients and weights
after one training step are compared as relative errors; fp32 gated at 1e-4, bf16 reported, not
gated), ``numpy`` (the float64 forward pass and loss of :mod:`dlbench.spec_numpy`: outputs and
loss), or ``auto`` (the default): the first installed neural framework by name. The reference
framework itself is compared with the NumPy float64 reference. A reference framework's figures
are computed once per run, by the first cell that needs them (:func:`reference_figures`). A model
imported from the user's ONNX file (:class:`~dlbench.onnx_import.ImportedSpec`) is also compared
with ONNX Runtime running the original file (check ``onnx_file``, reference ``onnxruntime:<file>``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dlbench import __version__, spec_numpy
from dlbench.errors import UnsupportedError
from dlbench.framework import TrainConfig
from dlbench.measure import parity
from dlbench.onnx_import import ImportedSpec, run_original
from dlbench.params import Param
from dlbench.result import Result
from dlbench.scenarios.base import Scenario
from dlbench.scenarios.figures import Column, Figure, as_float
from dlbench.spec import weights_digest

if TYPE_CHECKING:
    from dlbench.cell import Cell
    from dlbench.framework import Framework
    from dlbench.run.context import CellContext
    from dlbench.spec import ModelSpec
    from dlbench.task import Task

FP32_TOLERANCE = 1e-4
AUTO = "auto"
NUMPY = "numpy"


class ParityScenario(Scenario):
    name = "parity"
    warm_ok = True  # no first-call or compile time: a warm worker may run it
    description = "same weights, same inputs: same outputs, gradients and updated weights"
    params: ClassVar[dict[str, Param]] = {
        "reference": Param(
            AUTO, "what every framework is compared with: a framework name, numpy (the float64 "
            "NumPy reference: outputs and loss) or auto (the first installed neural framework)",
            type=str),
        "batch_size": Param(8, "examples in the parity batch", type=int, min=1),
    }
    needs_data = False

    def skip_reason(self, cell: Cell, task: Task, framework: Framework) -> str | None:
        if framework.kind == "classic":
            return f"{framework.name} is a classic baseline: it does not run the neural spec"
        native = task.native_model(cell.params)
        if native is not None:
            return (f"task {task.name!r} runs native {native.framework} model {native.name!r}: "
                    "parity compares compilations of the spec, which it has none of "
                    "(speed, accuracy, robustness and scalability run it)")
        return None

    def run(self, ctx: CellContext) -> None:
        p = ctx.params
        spec = ctx.spec().without_dropout()
        weights = spec.init_weights(ctx.seed)
        xs, y = ctx.task.synthetic_batch(spec, int(p.get("batch_size", 8)), np.random.default_rng(ctx.seed), p)
        ctx.result.model = ctx.model_info(spec, weights)
        # plain SGD: adaptive optimizers (Adam) turn float rounding noise in near-zero gradients
        # into full-size updates, which would measure the optimizer, not the framework
        task_train = ctx.task.train_config(p)
        train = TrainConfig(task_train.loss, "sgd", task_train.learning_rate)
        candidate = ctx.build(spec, weights, train=train)
        ref_name = resolve_reference(ctx)
        ctx.result.details["parity_reference"] = ref_name
        rows: list[dict[str, Any]] = []
        if ref_name in (NUMPY, ctx.framework.name):
            tol = FP32_TOLERANCE if p.get("precision", "fp32") == "fp32" else None
            expected = spec_numpy.forward(spec, weights, xs)
            errs = {"outputs": parity.relative_error(candidate.predict(xs), expected)}
            if ref_name == NUMPY:
                got_loss = (candidate.loss_and_input_gradient(xs, y)[0] if ctx.framework.trains
                            else spec_numpy.loss(train.loss, candidate.predict(xs), y))
                errs["loss"] = parity.relative_error(got_loss, spec_numpy.loss(train.loss, expected, y))
            rows.extend({"check": check, "rel_error": err, "tolerance": tol,
                         "passed": None if tol is None else err <= tol, "reference": NUMPY}
                        for check, err in errs.items())
        else:
            ref_fw = ctx.plugins.frameworks.get(ref_name, "parity reference")
            avail = ref_fw.availability()
            if not avail.installed:
                raise UnsupportedError(f"parity reference {ref_name!r} is not installed: {avail.reason}")
            figures = reference_figures(ctx, ref_fw, spec, weights, xs, y, train)
            rows.extend({**asdict(row), "reference": ref_name}
                        for row in parity.compare_with_reference(figures, candidate, xs, y,
                                                                 train=ctx.framework.trains))
        if isinstance(spec, ImportedSpec):
            rows.append(_onnx_file_row(ctx, spec, candidate, xs))
        ctx.result.details["parity"] = rows
        for row in rows:
            ctx.result.metrics[f"rel_error_{row['check']}"] = float(row["rel_error"])
        failed = [r["check"] for r in rows if r["passed"] is False]
        ctx.result.metrics["parity_passed"] = float(not failed)
        if failed:
            ctx.result.status = "failed"
            ctx.result.error = (f"parity failed against {rows[0]['reference']}: " +
                                ", ".join(f"{r['check']} rel. error {r['rel_error']:.2e} > {r['tolerance']:g}"
                                          + (f" (against {r['reference']})" if r["reference"] != rows[0]["reference"]
                                             else "")
                                          for r in rows if r["passed"] is False))

    # -- reports -----------------------------------------------------------------------------------
    def headline(self, result: Result) -> Figure | None:
        """The worst relative error over the checks, passed when every gated check passed."""
        rows = [r for r in result.details.get("parity") or [] if isinstance(r, dict)]
        errs = [e for e in (as_float(r.get("rel_error")) for r in rows) if not math.isnan(e)]
        if not errs:
            return None
        flags = [r.get("passed") for r in rows if r.get("passed") is not None]
        return Figure("max rel_error", max(errs), higher_is_better=False, n=len(rows),
                      passed=all(flags) if flags else None)

    def columns(self, results: Sequence[Result]) -> list[Column]:
        """None: the parity table (one row per check, ``details["parity"]``) shows them."""
        return []


def resolve_reference(ctx: CellContext) -> str:
    """The suite's ``reference``; for ``auto``, the first installed neural framework that trains, by name
    (every cell of a run resolves it alike), or ``numpy`` when none is installed."""
    name = str(ctx.params.get("reference") or AUTO)
    if name != AUTO:
        return name
    for fw in ctx.plugins.frameworks:
        if fw.kind == "neural" and fw.trains and fw.availability().installed:
            return str(fw.name)
    return NUMPY


def reference_figures(ctx: CellContext, ref_fw: Framework, spec: ModelSpec, weights: Mapping[str, np.ndarray],
                      xs: Mapping[str, np.ndarray], y: np.ndarray, train: TrainConfig) -> dict[str, np.ndarray]:
    """The reference framework's side of the cell's comparison (:func:`parity.reference_figures`),
    computed by the first cell of the run that needs it and reused by the later ones
    (:meth:`CellContext.once_per_run`): it depends on the reference, the model, the batch and
    the training step, not on the candidate, and building it (importing the reference, compiling
    it) took seconds of every cell. The reference is built only where they are computed; where
    another cell computed them, ``details["parity_reference_from"]`` names it."""
    trains = ctx.framework.trains
    extra = ctx.build_options().extra
    what = {"what": "parity-reference", "framework": ref_fw.name, "version": ref_fw.version(),
            "spec": spec.digest(), "weights": weights_digest(weights), "batch": batch_digest(xs, y),
            "loss": train.loss, "optimizer": train.optimizer, "learning_rate": train.learning_rate,
            "trains": trains, "device": ctx.cell.device, "threads": ctx.params.get("threads"),
            "seed": ctx.seed, "backend": {k: v for k, v in extra.items() if k in ref_fw.params},
            "dlbench": __version__}

    def compute() -> dict[str, np.ndarray]:
        reference = ctx.build(spec, weights, framework=ref_fw, variant="eager", precision="fp32", train=train)
        return parity.reference_figures(reference, xs, y, train=trains)

    figures, by = ctx.once_per_run(what, compute)
    if by is not None:
        ctx.result.details["parity_reference_from"] = by
    return figures


def batch_digest(xs: Mapping[str, np.ndarray], y: np.ndarray) -> str:
    """sha256 of a batch: each input's name, dtype, shape and bytes (by name), then the targets'."""
    h = hashlib.sha256()
    for name, a in [*sorted(xs.items()), ("__targets__", y)]:
        arr = np.ascontiguousarray(a)
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _onnx_file_row(ctx: CellContext, spec: ImportedSpec, candidate: Any, xs: Any) -> dict[str, Any]:
    """The candidate's outputs against ONNX Runtime on the user's original file."""
    tol = FP32_TOLERANCE if ctx.params.get("precision", "fp32") == "fp32" else None
    try:
        expected = run_original(spec, xs)
    except ImportError:
        raise UnsupportedError("parity of an imported ONNX model needs onnxruntime (the reference "
                               "that runs the original file): pip install onnxruntime") from None
    err = parity.relative_error(candidate.predict(xs), expected)
    return {"check": "onnx_file", "rel_error": err, "tolerance": tol,
            "passed": None if tol is None else err <= tol, "reference": f"onnxruntime:{spec.source}"}
