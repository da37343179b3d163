"""PyTorch framework plugin: the spec as an ``nn.Module`` (see :mod:`dlbench.builtin.frameworks.torch.modules`).

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
    Batch,
    BuildOptions,
    Framework,
    Model,
    ModelSpec,
    UnsupportedError,
    check_weights,
    gradient_inputs,
    hookimpl,
)

from . import ddp  # data parallelism; it imports no torch at module level and never this module


class TorchModel(Model):
    """A spec compiled to an ``nn.Module`` on one device."""

    def __init__(self, spec: ModelSpec, weights: Mapping[str, np.ndarray], options: BuildOptions,
                 device: Any) -> None:
        import torch

        # .modules imports torch: only the plugin's methods load it
        from .modules import SpecModule, canonical_to_native

        self.spec, self.options, self.device = spec, options, device
        self.module = SpecModule(spec)
        canonical_to_native(self.module, weights)
        self.module.to(device)
        if device.type == "cuda" and options.precision == "fp32":  # IEEE fp32, not TF32
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self._fn = (torch.compile(self.module, dynamic=False) if options.variant == "compiled"
                    else self.module)
        self._grad_inputs = gradient_inputs(spec)
        self._embedding_nodes = tuple(n.name for n in spec.nodes if n.op == "Embedding")
        self._make_optimizer()

    # -- helpers -----------------------------------------------------------------------------------
    def _make_optimizer(self) -> None:
        import torch

        tc = self.options.train
        params = list(self.module.parameters())
        self.optimizer: Any
        if tc.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=tc.learning_rate)
        elif tc.optimizer == "momentum":
            self.optimizer = torch.optim.SGD(params, lr=tc.learning_rate, momentum=0.9)
        else:
            self.optimizer = torch.optim.Adam(params, lr=tc.learning_rate, betas=(0.9, 0.999),
                                              eps=1e-7)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.options.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _loss(self, out: Any, targets: Any) -> Any:
        import torch.nn.functional as F

        out = out.float()
        name = self.options.train.loss
        if name == "cross_entropy":
            return F.cross_entropy(out, targets)
        if name == "binary_cross_entropy":
            return F.binary_cross_entropy_with_logits(out.reshape(-1), targets.reshape(-1))
        return F.mse_loss(out.reshape(-1), targets.reshape(-1))

    def _input(self, name: str, arr: np.ndarray) -> Any:
        import torch

        node = self.spec.inputs.get(name)
        if node is None:
            raise UnsupportedError(f"input {name!r} is not in spec {self.spec.name!r}: "
                                   f"give {', '.join(self.spec.inputs)}")
        dtype = torch.long if node.attrs.get("dtype") == "int32" else torch.float32
        return torch.as_tensor(np.asarray(arr)).to(self.device, dtype)

    # -- Model API ---------------------------------------------------------------------------------
    def to_device(self, batch: Batch | np.ndarray) -> Any:
        import torch

        if isinstance(batch, Mapping):
            return {k: self._input(k, v) for k, v in batch.items()}
        dtype = torch.long if self.options.train.loss == "cross_entropy" else torch.float32
        return torch.as_tensor(np.asarray(batch)).to(self.device, dtype)

    def forward(self, native_inputs: Any) -> Any:
        import torch

        self.module.eval()
        with torch.no_grad(), self._autocast():
            return self._fn(native_inputs)

    def train_step(self, native_inputs: Any, native_targets: Any) -> Any:
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = self._fn(native_inputs)
        loss = self._loss(out, native_targets)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def synchronize(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def to_numpy(self, native: Any) -> np.ndarray:
        import torch

        t = native.detach().to("cpu")
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.numpy()

    def get_weights(self) -> dict[str, np.ndarray]:
        from .modules import native_to_canonical

        return native_to_canonical(self.module)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        from .modules import canonical_to_native

        check_weights(self.spec, weights)
        canonical_to_native(self.module, weights)
        self._make_optimizer()

    def loss_and_input_gradient(self, inputs: Batch, targets: np.ndarray
                                ) -> tuple[float, dict[str, np.ndarray]]:
        import torch

        self.module.eval()
        x = self.to_device(inputs)
        floats = [k for k in x if k in self._grad_inputs]
        for k in floats:
            x[k].requires_grad_(True)
        with torch.enable_grad():
            with self._autocast():
                out = self._fn(x)
            loss = self._loss(out, self.to_device(targets))
            grads = torch.autograd.grad(loss, [x[k] for k in floats]) if floats else ()
        grad_arrays = {k: self.to_numpy(g) for k, g in zip(floats, grads, strict=True)}
        return float(loss.detach()), grad_arrays

    def embed(self, inputs: Batch) -> dict[str, np.ndarray]:
        import torch

        if not self._embedding_nodes:
            raise UnsupportedError(f"spec {self.spec.name!r} has no Embedding node")
        self.module.eval()
        with torch.no_grad(), self._autocast():
            _, cap = self.module.run(self.to_device(inputs), self._embedding_nodes)
        return {k: self.to_numpy(v) for k, v in cap.items()}

    def peak_memory_bytes(self) -> int | None:
        import torch

        if self.device.type != "cuda":
            return None
        return int(torch.cuda.max_memory_allocated(self.device))

    def reset_peak_memory(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)


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
        return TorchModel(spec, weights, options, device)

    def data_parallel_throughput(self, spec: ModelSpec, weights: Mapping[str, np.ndarray],
                                 options: BuildOptions, run: Any) -> list[float]:
        """DistributedDataParallel, gloo on CPU and NCCL on GPUs: see :mod:`dlbench.builtin.frameworks.torch.ddp`."""
        return ddp.data_parallel_throughput(self, spec, weights, options, run)


@hookimpl
def dlbench_register_frameworks(register: Any) -> None:
    register(TorchFramework())
