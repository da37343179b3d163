"""ONNX Runtime: the spec exported to ONNX (:func:`dlbench.api.to_onnx_bytes`) in an
``InferenceSession`` (see :mod:`dlbench.builtin.frameworks._inference` for what a runtime offers).

Devices: ``cpu`` (CPUExecutionProvider) and ``cuda`` where the installed build has the
CUDAExecutionProvider. Variants are the session's graph optimisation levels: ``all`` (the
default), ``extended``, ``basic`` and ``disabled``. Precisions: ``fp32``, and ``int8``, dynamic
quantisation (``onnxruntime.quantization.quantize_dynamic``: int8 weights of MatMul and Conv,
activations quantised per call), gated by nothing in parity (reported, as bf16 is elsewhere).
Threads: the cell's ``threads`` become ``intra_op_num_threads`` (one inter-op thread).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dlbench.api import Availability, BuildOptions, Param, UnsupportedError, hookimpl

from .._inference import Compiler, InferenceFramework

LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC",
          "disabled": "ORT_DISABLE_ALL"}
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def quantize_int8(data: bytes) -> bytes:
    """Dynamic int8 quantisation of an ONNX model (weights int8, activations per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="dlbench-ort-") as tmp:
        src, dst = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        src.write_bytes(data)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        return dst.read_bytes()


class OnnxRuntimeFramework(InferenceFramework):
    name = "onnxruntime"
    label = "ONNX Runtime"
    modules = ("onnxruntime", "onnx")
    distribution = "onnxruntime"
    distributions = ("onnxruntime", "onnx")
    variants = tuple(LEVELS)
    precisions = ("fp32", "int8")
    device_kinds = ("cpu", "cuda")
    params: ClassVar[dict[str, Param]] = {
        **InferenceFramework.params,
        # their own defaults; no choices here, so a wildcard block asking for another framework's
        # variant keeps this framework's cell and skips it with the reason (Framework.unsupported)
        "variant": Param("all", "graph optimisation level: all, extended, basic or disabled", type=str),
        "precision": Param("fp32", "fp32, or int8 (dynamic quantisation of MatMul and Conv weights)",
                           type=str),
    }

    def availability(self) -> Availability:
        avail = super().availability()
        if not avail.installed:
            return Availability(False, None, avail.reason.replace("[onnxruntime]", "[onnx]"))
        return avail

    def devices(self) -> list[str]:
        import onnxruntime as ort

        return ["cpu", *(["cuda"] if PROVIDERS["cuda"] in ort.get_available_providers() else [])]

    def compiler(self, options: BuildOptions) -> Compiler:
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import (
            NotImplemented as NotImplementedKernel,
        )

        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[options.variant])
        if self.threads:
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
        kind = options.device.split(":", 1)[0]
        provider: Any = PROVIDERS[kind]
        if kind == "cuda":
            index = int(options.device.split(":", 1)[1]) if ":" in options.device else 0
            provider = (provider, {"device_id": index})

        def compile_onnx(data: bytes) -> Any:
            if options.precision == "int8":
                data = quantize_int8(data)
            try:
                session = ort.InferenceSession(data, so, providers=[provider])
            except NotImplementedKernel as exc:  # e.g. a quantised op with no kernel on this provider
                raise UnsupportedError(f"onnxruntime cannot run this model at {options.precision} "
                                       f"on {options.device}: {str(exc).splitlines()[0]}") from None
            output = session.get_outputs()[0].name

            def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
                return session.run([output], feeds)[0]

            return run

        return compile_onnx


@hookimpl
def dlbench_register_frameworks(register: Any) -> None:
    register(OnnxRuntimeFramework())
