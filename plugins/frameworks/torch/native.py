"""A task's own ``nn.Module`` (:class:`dlbench.api.NativeModel`) as a :class:`~.model.TorchModel`.

The module is called with the task's inputs as keyword arguments by input name
(``module(image=x)``), through :class:`KeywordInputs`, so the variants, precisions, loss,
optimizer and gradients are :class:`~.model.TorchModel`'s, exactly as for the spec. Its weights
are its own ``state_dict`` (floating-point tensors, float32 on the host): that is what trained
weights are stored and reloaded as. It has no Embedding nodes to attack in embedding space.
Imports torch only inside its methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dlbench.api import BuildOptions, DlbenchError, ModelSpec, UnsupportedError

from .model import TorchModel


def keyword_inputs(native: Any) -> Any:
    """``native`` behind a module that takes the mapping of inputs TorchModel passes."""
    from torch import nn

    if not isinstance(native, nn.Module):
        raise DlbenchError(f"a native torch model must be a torch.nn.Module, not "
                           f"{type(native).__name__}: return an nn.Module from NativeModel.make")

    class KeywordInputs(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, inputs: Mapping[str, Any]) -> Any:
            return self.inner(**inputs)

    return KeywordInputs(native)


class NativeTorchModel(TorchModel):
    """A task's own ``nn.Module`` on one device (see the module docstring)."""

    def __init__(self, spec: ModelSpec, native: Any, options: BuildOptions, device: Any) -> None:
        self.native = native
        super().__init__(spec, keyword_inputs(native), options, device)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().to("cpu").float().numpy()
                for k, v in self.native.state_dict().items() if v.is_floating_point()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        import torch

        own = self.native.state_dict()
        floats = {k for k, v in own.items() if v.is_floating_point()}
        missing, extra = sorted(floats - set(weights)), sorted(set(weights) - floats)
        if missing or extra:
            raise DlbenchError(f"weights do not fit native model {type(self.native).__name__}: "
                               f"missing {', '.join(missing) or 'none'}; unexpected "
                               f"{', '.join(extra) or 'none'} (train it again)")
        with torch.no_grad():
            for k in floats:
                value = torch.as_tensor(np.asarray(weights[k]))
                if tuple(value.shape) != tuple(own[k].shape):
                    raise DlbenchError(f"weight {k} of native model {type(self.native).__name__} "
                                       f"has shape {tuple(value.shape)}, the model "
                                       f"{tuple(own[k].shape)} (train it again)")
                own[k].copy_(value.to(own[k].dtype))
        self._make_optimizer()

    def parameter_count(self) -> int:
        return int(sum(p.numel() for p in self.native.parameters() if p.requires_grad))

    def embed(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise UnsupportedError(f"native model {type(self.native).__name__} exposes no Embedding "
                               "nodes: attack it in input space")
