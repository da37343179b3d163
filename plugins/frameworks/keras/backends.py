"""What the Keras plugin must do differently per Keras 3 backend (tensorflow, jax, torch).

Threads and seeds before the backend starts, the devices it sees, tensors on a device, the
loss gradient with respect to the inputs (``tf.GradientTape``, ``jax.value_and_grad`` over
``model.stateless_call``, ``torch.autograd.grad``), device synchronisation and peak memory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from dlbench.api import UnsupportedError

from .._xla import limit_threads

BACKENDS = ("tensorflow", "jax", "torch")


def prepare_import(backend: str, threads: int | None) -> None:
    """What must precede the backend's import: TensorFlow's log level, XLA's thread limit."""
    if backend == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    elif backend == "jax" and threads:
        limit_threads(int(threads))


def configure_backend(backend: str, threads: int | None) -> None:
    """Bound the backend's CPU thread pools (and let TensorFlow grow GPU memory on demand).

    Runs before Keras, and if possible before the backend, is imported: TensorFlow and XLA
    size their pools once, when their runtime starts.
    """
    prepare_import(backend, threads)
    if backend == "tensorflow":
        import tensorflow as tf

        if threads:
            with contextlib.suppress(RuntimeError):  # runtime already running: keep its pools
                tf.config.threading.set_intra_op_parallelism_threads(int(threads))
                tf.config.threading.set_inter_op_parallelism_threads(int(threads))
        for gpu in tf.config.list_physical_devices("GPU"):
            with contextlib.suppress(RuntimeError):
                tf.config.experimental.set_memory_growth(gpu, True)
        return
    if not threads:
        return
    threads = int(threads)
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # only settable before parallel work starts
            torch.set_num_interop_threads(threads)


def ieee_float32(backend: str) -> None:
    """Make float32 mean IEEE float32 on GPUs, as in the PyTorch and JAX plugins.

    JAX multiplies float32 in TF32 on NVIDIA GPUs by default and PyTorch's cuDNN convolutions
    may use TF32; both would put Keras 5e-4 away from the other frameworks (seen on an H200).
    TensorFlow's TF32 switch is turned off the same way. Called for fp32 cells only: the cell's
    process runs one model.
    """
    if backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)


def gpu_count(backend: str) -> int:
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    import jax

    try:
        return len(jax.devices("gpu"))
    except RuntimeError:
        return 0


def keras_device(device: str, available: list[str], backend: str) -> str:
    """Map ``cpu``/``cuda``/``cuda:N`` to the name ``keras.device()`` takes (``cpu:0``, ``gpu:N``)."""
    name = "cuda" if device == "cuda:0" else device
    if name not in available:
        raise UnsupportedError(f"keras[backend={backend}] cannot see device {device!r}: "
                               f"choose one of {', '.join(available)}")
    if name == "cpu":  # torch: "cpu:0" would move each new Parameter off its leaf ("cpu")
        return "cpu" if backend == "torch" else "cpu:0"
    return f"gpu:{name.split(':', 1)[1] if ':' in name else 0}"


def input_gradient(backend: str, model: Any, loss: Callable[[Any, Any], Any],
                   inputs: Mapping[str, Any], targets: Any, wrt: list[str]
                   ) -> tuple[float, dict[str, np.ndarray]]:
    """Mean loss (inference mode) and its gradient with respect to the inputs named in ``wrt``."""
    if backend == "tensorflow":
        import tensorflow as tf

        watched = [inputs[k] for k in wrt]
        with tf.GradientTape() as tape:
            tape.watch(watched)
            value = loss(targets, model(dict(inputs), training=False))
        grads = tape.gradient(value, watched)
        return float(value.numpy()), {k: np.asarray(g.numpy(), np.float32)
                                      for k, g in zip(wrt, grads, strict=True)}
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        frozen = [v.value for v in model.non_trainable_variables]
        rest = {k: v for k, v in inputs.items() if k not in wrt}

        def f(xs: dict[str, Any]) -> Any:
            out, _ = model.stateless_call(trainable, frozen, {**rest, **xs}, training=False)
            return loss(targets, out)

        value, grads = jax.value_and_grad(f)({k: inputs[k] for k in wrt})
        return float(value), {k: np.asarray(grads[k], np.float32) for k in wrt}
    import torch

    xs = {k: (v.detach().clone().requires_grad_(True) if k in wrt else v) for k, v in inputs.items()}
    with torch.enable_grad():
        value = loss(targets, model(xs, training=False))
        grads = torch.autograd.grad(value, [xs[k] for k in wrt]) if wrt else ()
    return float(value.detach().cpu()), {k: g.detach().float().cpu().numpy()
                                         for k, g in zip(wrt, grads, strict=True)}


def synchronize(backend: str, keras_device_name: str) -> None:
    """Wait for queued device work (Keras's ``*_on_batch`` already return host values)."""
    if not keras_device_name.startswith("gpu"):
        return
    if backend == "tensorflow":
        import tensorflow as tf

        sync = getattr(tf.test.experimental, "sync_devices", None)
        if sync is not None:
            sync()
    elif backend == "torch":
        import torch

        torch.cuda.synchronize()
    # jax: every result the plugin hands out is already a host array (nothing left in flight)


def peak_memory(backend: str, keras_device_name: str) -> int | None:
    if not keras_device_name.startswith("gpu"):
        return None
    index = int(keras_device_name.split(":", 1)[1])
    if backend == "tensorflow":
        import tensorflow as tf

        return int(tf.config.experimental.get_memory_info(f"GPU:{index}")["peak"])
    if backend == "torch":
        import torch

        return int(torch.cuda.max_memory_allocated(index))
    import jax

    stats = jax.devices("gpu")[index].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return int(peak) if peak is not None else None


def reset_peak_memory(backend: str, keras_device_name: str) -> None:
    """TensorFlow and PyTorch reset their peak; JAX cannot (its figure is the process peak)."""
    if not keras_device_name.startswith("gpu"):
        return
    index = int(keras_device_name.split(":", 1)[1])
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.reset_memory_stats(f"GPU:{index}")
    elif backend == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats(index)
