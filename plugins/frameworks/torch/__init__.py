"""PyTorch framework plugin: the spec as an ``nn.Module`` (see :mod:`dlbench.builtin.frameworks.torch.modules`),
or a task's own ``nn.Module`` (:mod:`.native`).

Variants: ``eager`` runs the module as is; ``compiled`` wraps it in
``torch.compile(module, dynamic=False)``. Compilation is lazy, so it happens inside the first
``forward``/``train_step`` call (the speed scenario times that call apart). With
``dynamic=False`` every new input shape (a new batch size, the short last batch of an epoch)
compiles one more static graph, once; PyTorch caps that at ``torch._dynamo.config.
cache_size_limit`` graphs (8 by default) and then runs the module eagerly with a warning, so a
changing batch size never recompiles endlessly. Train and eval mode are one graph each.

Precisions: ``fp32`` is IEEE float32 on CUDA too (TF32 matmuls and cuDNN convolutions are switched
off, so every framework computes the same thing); ``bf16`` is mixed precision, the PyTorch idiom: weights and optimizer state
stay float32, the forward pass runs under ``torch.autocast(device_type, torch.bfloat16)`` and the
loss is computed in float32.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Mapping
from typing import Any

import numpy as np

from dlbench.api import (
    BuildOptions,
    Framework,
    ModelSpec,
    UnsupportedError,
    check_weights,
    hookimpl,
)

from . import ddp  # data parallelism; it imports no torch at module level and never this module
from .model import TorchModel  # these two import torch only inside their methods
from .native import NativeTorchModel

__all__ = ["NativeTorchModel", "TorchFramework", "TorchModel"]


class TorchFramework(Framework):
    """PyTorch: eager nn.Module or torch.compile; fp32 or bf16 autocast; CPU and CUDA."""

    name = "torch"
    label = "PyTorch"
    modules = ("torch",)
    distribution = "torch"
    variants = ("eager", "compiled")
    precisions = ("fp32", "bf16")

    def setup(self, threads: int | None, seed: int, params: Mapping[str, Any]) -> None:
        import torch

        if threads:
            torch.set_num_threads(int(threads))
            with contextlib.suppress(RuntimeError):  # only settable before parallel work starts
                torch.set_num_interop_threads(int(threads))
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)

    def devices(self) -> list[str]:
        import torch

        out = ["cpu"]
        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            out += ["cuda" if i == 0 else f"cuda:{i}" for i in range(n)]
        return out

    def _device(self, name: str) -> Any:
        import torch

        if name == "cpu":
            return torch.device("cpu")
        if name.startswith("cuda"):
            if not torch.cuda.is_available():
                raise UnsupportedError(f"torch sees no CUDA device for device {name!r} "
                                       f"(this build is {torch.__version__}): use device cpu")
            index = int(name.split(":", 1)[1]) if ":" in name else 0
            if index >= torch.cuda.device_count():
                raise UnsupportedError(f"torch has no device {name!r}: choose one of "
                                       f"{', '.join(self.devices())}")
            return torch.device("cuda", index)
        raise UnsupportedError(f"torch has no device {name!r}: choose one of "
                               f"{', '.join(self.devices())}")

    def build(self, spec: ModelSpec, weights: Mapping[str, np.ndarray],
              options: BuildOptions) -> TorchModel:
        self.check(options)
        check_weights(spec, weights)
        device = self._device(options.device)
        from .modules import SpecModule, canonical_to_native  # imports torch: only here

        module = SpecModule(spec)
        canonical_to_native(module, weights)
        return TorchModel(spec, module, options, device)

    def build_native(self, native: Any, spec: ModelSpec, options: BuildOptions) -> NativeTorchModel:
        """A task's own ``nn.Module`` (see :class:`dlbench.api.NativeModel`), called with the
        inputs as keyword arguments; its weights are its state_dict."""
        self.check(options)
        return NativeTorchModel(spec, native, options, self._device(options.device))

    def data_parallel_throughput(self, spec: ModelSpec, weights: Mapping[str, np.ndarray],
                                 options: BuildOptions, run: Any) -> list[float]:
        """DistributedDataParallel, gloo on CPU and NCCL on GPUs: see :mod:`dlbench.builtin.frameworks.torch.ddp`."""
        return ddp.data_parallel_throughput(self, spec, weights, options, run)


@hookimpl
def dlbench_register_frameworks(register: Any) -> None:
    register(TorchFramework())
