"""The public plugin API: everything a plugin imports from dlbench, and nothing else.

A plugin (built-in or third-party) writes ``from dlbench.api import hookimpl, Framework, ...``;
the modules behind these names are private and may move. Importing this module is cheap and
imports no framework: the names whose modules pull in SciPy or the built-in reporters' libraries
(:func:`sample`, :class:`Budget`, the built-in scenario, attack and reporter classes) load on
first use.

What is here, by kind (docs/plugins.md has one line on each):

* hooks: :data:`hookimpl`, the hook specifications are in :mod:`dlbench.hookspecs`;
* frameworks: :class:`Framework`, :class:`Model`, :class:`BuildOptions`, :class:`TrainConfig`,
  :data:`Batch`, :class:`DataParallelRun`, :class:`Availability`, :func:`gradient_inputs`,
  :func:`mask_inputs`, :class:`Budget` and :func:`sample` (timed windows for data-parallel
  throughput), :data:`LOSSES`, :data:`OPTIMIZERS`;
* the neutral model spec: :class:`ModelSpec`, :class:`Node`, :class:`SpecBuilder`,
  :func:`check_weights`, :func:`same_padding`, :func:`conv_out`, :func:`conv_pads`, :data:`ACTIVATIONS`,
  :data:`OPS`, and the float64 NumPy reference's :data:`MASK_FILL`;
* tasks: :class:`Task`, :class:`Dataset`, :class:`NativeModel`, :class:`PerturbationDomain`, :class:`Corruption`,
  :func:`find_corruption`;
* datasets: :class:`DatasetInfo`, :class:`FileEntry`, :func:`require`,
  :func:`read_sha256sums`, :func:`files_from_sums`, :func:`derived_dir`,
  :func:`atomic_writer`, and seals of derived files :func:`seal`, :func:`seal_state`;
* scenarios, attacks, reporters: :class:`Scenario`, :class:`Figure`, :class:`Column`,
  :func:`measurement_figure`, :func:`metric_figure`, :class:`Attack`,
  :class:`AttackSettings`, :class:`Reporter`, :class:`RunData`, :class:`RunInfo`, and the
  built-in implementations (``SpeedScenario`` ..., ``BUILTIN_ATTACKS``, ``HtmlReporter`` ...);
* parameters and errors: :class:`Param`, :class:`DlbenchError` and its subclasses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dlbench import hookimpl
from dlbench.data.download import atomic_writer
from dlbench.data.registry import (
    DatasetInfo,
    FileEntry,
    derived_dir,
    files_from_sums,
    read_sha256sums,
    require,
)
from dlbench.data.sealed import seal, seal_state
from dlbench.errors import (
    DatasetError,
    DlbenchError,
    PluginError,
    StoreError,
    SuiteError,
    UnsupportedError,
)
from dlbench.framework import (
    LOSSES,
    OPTIMIZERS,
    Availability,
    Batch,
    BuildOptions,
    DataParallelRun,
    Framework,
    Model,
    TrainConfig,
)
from dlbench.measure.flops import gemm_rate
from dlbench.measure.parity import gradient_inputs, mask_inputs
from dlbench.onnx_export import OPSET as ONNX_OPSET
from dlbench.onnx_export import to_onnx, to_onnx_bytes
from dlbench.onnx_import import ImportedSpec, import_model
from dlbench.params import Param
from dlbench.report.base import Reporter, RunData, RunInfo
from dlbench.result import Measurement, Result
from dlbench.robustness.attacks import Attack, AttackSettings
from dlbench.scenarios.base import Scenario
from dlbench.scenarios.figures import Column, Figure, measurement_figure, metric_figure
from dlbench.spec import (
    ACTIVATIONS,
    OPS,
    STATE_PARAMS,
    ModelSpec,
    Node,
    SpecBuilder,
    check_weights,
    conv_out,
    conv_pads,
    same_padding,
)
from dlbench.spec_numpy import MASK_FILL
from dlbench.task import (
    Corruption,
    Dataset,
    NativeModel,
    PerturbationDomain,
    Task,
    find_corruption,
)

if TYPE_CHECKING:
    from dlbench.measure.sampler import Budget, sample
    from dlbench.report.html import HtmlReporter
    from dlbench.report.json_report import JsonReporter
    from dlbench.report.markdown import MarkdownReporter
    from dlbench.report.terminal import TerminalReporter
    from dlbench.robustness.autoattack import BUILTIN as BUILTIN_ATTACKS
    from dlbench.scenarios.accuracy import AccuracyScenario
    from dlbench.scenarios.fidelity import FidelityScenario
    from dlbench.scenarios.parity import ParityScenario
    from dlbench.scenarios.robustness import RobustnessScenario
    from dlbench.scenarios.scalability import ScalabilityScenario
    from dlbench.scenarios.speed import SpeedScenario

_LAZY: dict[str, tuple[str, str]] = {
    "Budget": ("dlbench.measure.sampler", "Budget"),
    "sample": ("dlbench.measure.sampler", "sample"),
    "SpeedScenario": ("dlbench.scenarios.speed", "SpeedScenario"),
    "AccuracyScenario": ("dlbench.scenarios.accuracy", "AccuracyScenario"),
    "ParityScenario": ("dlbench.scenarios.parity", "ParityScenario"),
    "RobustnessScenario": ("dlbench.scenarios.robustness", "RobustnessScenario"),
    "ScalabilityScenario": ("dlbench.scenarios.scalability", "ScalabilityScenario"),
    "FidelityScenario": ("dlbench.scenarios.fidelity", "FidelityScenario"),
    "BUILTIN_ATTACKS": ("dlbench.robustness.autoattack", "BUILTIN"),
    "TerminalReporter": ("dlbench.report.terminal", "TerminalReporter"),
    "JsonReporter": ("dlbench.report.json_report", "JsonReporter"),
    "MarkdownReporter": ("dlbench.report.markdown", "MarkdownReporter"),
    "HtmlReporter": ("dlbench.report.html", "HtmlReporter"),
}
"""Names loaded on first use (their modules import SciPy, rich or the report templates)."""


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'dlbench.api' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    # hooks
    "hookimpl",
    # frameworks
    "Availability", "Batch", "BuildOptions", "DataParallelRun", "Framework", "LOSSES", "Model",
    "OPTIMIZERS", "TrainConfig", "gradient_inputs", "mask_inputs", "Budget", "sample", "gemm_rate",
    # the neutral model spec
    "ACTIVATIONS", "MASK_FILL", "ModelSpec", "Node", "OPS", "SpecBuilder", "check_weights",
    "conv_out", "conv_pads", "same_padding", "STATE_PARAMS", "ONNX_OPSET", "to_onnx", "to_onnx_bytes",
    "ImportedSpec", "import_model",
    # tasks and datasets
    "Corruption", "Dataset", "NativeModel", "PerturbationDomain", "Task", "find_corruption",
    "DatasetInfo", "FileEntry", "atomic_writer", "derived_dir", "files_from_sums",
    "read_sha256sums", "require", "seal", "seal_state",
    # results, scenarios, attacks, reporters
    "Measurement", "Result", "Scenario", "Figure", "Column", "measurement_figure",
    "metric_figure", "Attack", "AttackSettings", "Reporter", "RunData", "RunInfo",
    # built-in implementations (loaded on first use)
    "SpeedScenario", "AccuracyScenario", "ParityScenario", "RobustnessScenario",
    "ScalabilityScenario", "FidelityScenario", "BUILTIN_ATTACKS", "TerminalReporter",
    "JsonReporter", "MarkdownReporter", "HtmlReporter",
    # parameters and errors
    "Param", "DlbenchError", "DatasetError", "PluginError", "StoreError", "SuiteError",
    "UnsupportedError",
]
