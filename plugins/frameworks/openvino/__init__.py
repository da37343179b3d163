"""OpenVINO (CPU): the spec exported to ONNX (:func:`dlbench.api.to_onnx_bytes`), read by
``openvino.Core().read_model`` and compiled for ``CPU`` (see
:mod:`dlbench.builtin.frameworks._inference` for what a runtime offers).

Variants are OpenVINO's performance hints: ``latency`` (the default) and ``throughput``.
Precision ``fp32`` sets ``INFERENCE_PRECISION_HINT`` to f32, so a CPU with bf16 units still
computes in float32 as every other framework does. Threads: the cell's ``threads`` become
``INFERENCE_NUM_THREADS``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dlbench.api import BuildOptions, Param, hookimpl

from .._inference import Compiler, InferenceFramework

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


class OpenVinoFramework(InferenceFramework):
    name = "openvino"
    label = "OpenVINO"
    modules = ("openvino", "onnx")
    distribution = "openvino"
    distributions = ("openvino", "onnx")
    variants = tuple(HINTS)
    precisions = ("fp32",)
    device_kinds = ("cpu",)
    params: ClassVar[dict[str, Param]] = {
        **InferenceFramework.params,
        # its own default; no choices here, so a wildcard block asking for another framework's
        # variant keeps this framework's cell and skips it with the reason (Framework.unsupported)
        "variant": Param("latency", "performance hint: latency or throughput", type=str),
    }

    def devices(self) -> list[str]:
        return ["cpu"]

    def compiler(self, options: BuildOptions) -> Compiler:
        import openvino as ov

        core = ov.Core()
        config: dict[str, Any] = {"PERFORMANCE_HINT": HINTS[options.variant],
                                  "INFERENCE_PRECISION_HINT": "f32"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads

        def compile_onnx(data: bytes) -> Any:
            with tempfile.TemporaryDirectory(prefix="dlbench-ov-") as tmp:
                path = Path(tmp) / "model.onnx"
                path.write_bytes(data)
                model = core.read_model(str(path))
            compiled = core.compile_model(model, "CPU", config)
            request = compiled.create_infer_request()
            output = compiled.output(0)

            def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
                return np.array(request.infer(feeds)[output])

            return run

        return compile_onnx


@hookimpl
def dlbench_register_frameworks(register: Any) -> None:
    register(OpenVinoFramework())
