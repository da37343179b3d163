"""The spec compiled to an ``nn.Module``, as a :class:`~dlbench.api.Model` (imports torch only
inside its methods)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from dlbench.api import (
    Batch,
    BuildOptions,
    Model,
    ModelSpec,
    UnsupportedError,
    check_weights,
    gemm_rate,
    gradient_inputs,
)


class TorchModel(Model):
    """A spec compiled to an ``nn.Module`` on one device."""

    def __init__(self, spec: ModelSpec, module: Any, options: BuildOptions, device: Any) -> None:
        """``module`` takes a mapping of input tensors by name (a SpecModule, or a native model
        behind :class:`~.native.KeywordInputs`)."""
        import torch

        self.spec, self.options, self.device = spec, options, device
        self.module = module
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

    def matmul_flops(self, n: int = 1024) -> float | None:
        """``torch.mm`` at the cell's precision (bf16 operands under bf16) on the model's device."""
        import torch

        dtype = torch.bfloat16 if self.options.precision == "bf16" else torch.float32
        g = torch.Generator().manual_seed(0)
        a, b = (torch.randn(n, n, generator=g).to(self.device, dtype) for _ in range(2))
        with torch.no_grad():
            return gemm_rate(lambda: a @ b, n)

    def peak_memory_bytes(self) -> int | None:
        import torch

        if self.device.type != "cuda":
            return None
        return int(torch.cuda.max_memory_allocated(self.device))

    def reset_peak_memory(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
