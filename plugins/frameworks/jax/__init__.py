"""JAX framework plugin: the spec as a Flax linen module (see :mod:`dlbench.builtin.frameworks.jax.modules`), Optax.

Variants: ``eager`` calls ``module.apply`` and the Optax update without ``jax.jit`` (JAX then
dispatches op by op); ``compiled`` jits the forward pass, the input gradient and the whole
training step (forward, backward and Optax update in one XLA program). Compilation is lazy:
it happens in the first call for each input shape; a new batch size compiles once more and
is cached, so it never recompiles endlessly.

Precisions: ``fp32`` runs matmuls and convolutions at full float32 precision
(``jax.default_matmul_precision("highest")``: no TF32 on GPUs, as the other frameworks); ``bf16``
computes in bfloat16 (Flax ``dtype``) with float32 parameters, optimizer state, softmax and loss.

Threads: XLA sizes its CPU thread pools when JAX is first imported, from the CPUs the process
may run on. :meth:`JaxFramework.setup` therefore (before ``import jax``) restricts the process's
CPU affinity to ``threads`` CPUs (``os.sched_setaffinity``, Linux) and, for one thread, sets
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``. Called after JAX was imported, the affinity
still caps the CPUs used, but the pools keep their size.

Device memory: ``device.memory_stats()["peak_bytes_in_use"]`` where the device reports it (GPUs);
JAX cannot reset that peak, so :meth:`JaxModel.reset_peak_memory` is a no-op and the figure is
the peak since the process started (each cell runs in a fresh process).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    gemm_rate,
    gradient_inputs,
    hookimpl,
)

from .._xla import limit_threads
from . import dp  # data parallelism; it imports no JAX and never this module


def _loss_fn(name: str) -> Any:
    import jax.numpy as jnp
    import optax

    def loss(out: Any, targets: Any) -> Any:
        out = out.astype(jnp.float32)
        if name == "cross_entropy":
            return optax.softmax_cross_entropy_with_integer_labels(out, targets).mean()
        if name == "binary_cross_entropy":
            return optax.sigmoid_binary_cross_entropy(out.reshape(-1), targets.reshape(-1)).mean()
        return jnp.mean((out.reshape(-1) - targets.reshape(-1)) ** 2)

    return loss


def _optimizer(train: Any) -> Any:
    import optax

    if train.optimizer == "sgd":
        return optax.sgd(train.learning_rate)
    if train.optimizer == "momentum":
        return optax.sgd(train.learning_rate, momentum=0.9)
    return optax.adam(train.learning_rate, b1=0.9, b2=0.999, eps=1e-7)


@dataclass(frozen=True)
class _Programs:
    """The Flax modules, the optimizer and the (jitted or eager) functions of one model."""

    module: Any
    embed: Any
    tx: Any
    fwd: Callable[..., Any]
    step: Callable[..., Any]
    input_grad: Callable[..., Any]


_PROGRAMS: dict[tuple[Any, ...], _Programs] = {}
_SHARE = False


def share_compilations(enabled: bool) -> None:
    """Let models built from the same spec and options share their jitted functions (and so
    jax.jit's compilations). Off by default, so a model's first call always includes its
    compilation (the speed scenario times it); the test suite turns it on to compile less."""
    global _SHARE
    _SHARE = enabled
    if not enabled:
        _PROGRAMS.clear()


def _programs(spec: ModelSpec, options: BuildOptions, platform: str) -> _Programs:
    if not _SHARE:
        return _make_programs(spec, options, platform)
    key = (spec.digest(), options.precision, options.variant, options.train, platform)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = _make_programs(spec, options, platform)
    return _PROGRAMS[key]


def _make_programs(spec: ModelSpec, options: BuildOptions, platform: str) -> _Programs:
    import jax
    import jax.numpy as jnp
    import optax

    from .modules import SpecModule  # modules imports JAX and Flax: only methods load them

    dtype = jnp.bfloat16 if options.precision == "bf16" else jnp.float32
    module = SpecModule(spec, dtype=dtype)
    embed = SpecModule(spec, dtype=dtype,
                       capture=tuple(n.name for n in spec.nodes if n.op == "Embedding"))
    tx = _optimizer(options.train)
    loss = _loss_fn(options.train.loss)

    def fwd(params: Any, state: Any, inputs: Any) -> Any:
        return module.apply({"params": params, **state}, inputs, train=False)

    def step(params: Any, state: Any, opt_state: Any, inputs: Any, targets: Any, key: Any) -> Any:
        """One training step; ``state`` (the running statistics, ``{}`` without BatchNorm) is
        updated by the forward pass, the parameters by the optimizer."""
        key, sub = jax.random.split(key)

        def objective(p: Any) -> Any:
            out, new_state = module.apply({"params": p, **state}, inputs, train=True,
                                          rngs={"dropout": sub}, mutable=list(state))
            return loss(out, targets), new_state

        (value, new_state), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), dict(new_state), opt_state, value, key

    def input_grad(params: Any, state: Any, diff: Any, rest: Any, targets: Any) -> Any:
        return jax.value_and_grad(lambda d: loss(fwd(params, state, {**rest, **d}), targets))(diff)

    if options.variant == "compiled":
        donate = (0, 1, 2) if platform != "cpu" else ()
        return _Programs(module, embed, tx, jax.jit(fwd), jax.jit(step, donate_argnums=donate),
                         jax.jit(input_grad))
    return _Programs(module, embed, tx, fwd, step, input_grad)


class JaxModel(Model):
    """A spec compiled to a Flax module; parameters and optimizer state live on ``device``."""

    def __init__(self, spec: ModelSpec, weights: Mapping[str, np.ndarray], options: BuildOptions,
                 device: Any) -> None:
        import jax

        self.spec, self.options, self.device = spec, options, device
        programs = _programs(spec, options, device.platform)
        self.module, self._embed_module, self._tx = programs.module, programs.embed, programs.tx
        self._fwd, self._step, self._input_grad = programs.fwd, programs.step, programs.input_grad
        self._embedding_nodes = programs.embed.capture
        self._grad_inputs = gradient_inputs(spec)
        self._key = jax.device_put(jax.random.PRNGKey(options.seed), device)
        self._last: Any = None
        self.params: Any = None
        self.state: Any = {}  # Flax collections other than params: {"batch_stats": ...} or {}
        self.opt_state: Any = None
        self.set_weights(weights)

    # -- Model API ---------------------------------------------------------------------------------
    def to_device(self, batch: Batch | np.ndarray) -> Any:
        import jax

        if isinstance(batch, Mapping):
            out = {}
            for k, v in batch.items():
                node = self.spec.inputs.get(k)
                if node is None:
                    raise UnsupportedError(f"input {k!r} is not in spec {self.spec.name!r}: "
                                           f"give {', '.join(self.spec.inputs)}")
                dtype = np.int32 if node.attrs.get("dtype") == "int32" else np.float32
                out[k] = jax.device_put(np.asarray(v, dtype=dtype), self.device)
            return out
        dtype = np.int32 if self.options.train.loss == "cross_entropy" else np.float32
        return jax.device_put(np.asarray(batch, dtype=dtype), self.device)

    def _precision(self) -> contextlib.AbstractContextManager[Any]:
        import jax

        if self.options.precision == "fp32":
            return jax.default_matmul_precision("highest")
        return contextlib.nullcontext()

    def forward(self, native_inputs: Any) -> Any:
        with self._precision():
            self._last = self._fwd(self.params, self.state, native_inputs)
        return self._last

    def train_step(self, native_inputs: Any, native_targets: Any) -> Any:
        with self._precision():
            self.params, self.state, self.opt_state, loss, self._key = self._step(
                self.params, self.state, self.opt_state, native_inputs, native_targets, self._key)
        self._last = (self.params, loss)
        return loss

    def matmul_flops(self, n: int = 1024) -> float | None:
        """A jitted ``jnp.matmul`` at the cell's precision on the model's device (XLA)."""
        import jax
        import jax.numpy as jnp

        dtype = jnp.bfloat16 if self.options.precision == "bf16" else jnp.float32
        rng = np.random.default_rng(0)
        a, b = (jax.device_put(jnp.asarray(rng.standard_normal((n, n)), dtype), self.device)
                for _ in range(2))
        mm = jax.jit(jnp.matmul)
        return gemm_rate(lambda: mm(a, b), n)

    def synchronize(self) -> None:
        import jax

        if self._last is not None:
            jax.block_until_ready(self._last)

    def to_numpy(self, native: Any) -> np.ndarray:
        import jax

        arr = np.asarray(jax.device_get(native))
        return arr.astype(np.float32) if arr.dtype.kind == "V" or str(arr.dtype) == "bfloat16" else arr

    def get_weights(self) -> dict[str, np.ndarray]:
        from .modules import variables_to_canonical

        return variables_to_canonical(self.spec, {"params": self.params, **self.state})

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        import jax

        from .modules import canonical_to_variables

        check_weights(self.spec, weights)
        variables = jax.device_put(canonical_to_variables(self.spec, weights), self.device)
        self.params = variables.pop("params")
        self.state = variables
        self.opt_state = jax.device_put(self._tx.init(self.params), self.device)

    def loss_and_input_gradient(self, inputs: Batch, targets: np.ndarray
                                ) -> tuple[float, dict[str, np.ndarray]]:
        x = self.to_device(inputs)
        diff = {k: v for k, v in x.items() if k in self._grad_inputs}
        rest = {k: v for k, v in x.items() if k not in diff}
        with self._precision():
            value, grads = self._input_grad(self.params, self.state, diff, rest, self.to_device(targets))
        return float(value), {k: self.to_numpy(g) for k, g in grads.items()}

    def embed(self, inputs: Batch) -> dict[str, np.ndarray]:
        if not self._embedding_nodes:
            raise UnsupportedError(f"spec {self.spec.name!r} has no Embedding node")
        with self._precision():
            _, cap = self._embed_module.apply({"params": self.params, **self.state},
                                              self.to_device(inputs))
        return {k: self.to_numpy(v) for k, v in cap.items()}

    def peak_memory_bytes(self) -> int | None:
        stats = self.device.memory_stats() if hasattr(self.device, "memory_stats") else None
        if not stats or "peak_bytes_in_use" not in stats:
            return None
        return int(stats["peak_bytes_in_use"])


class JaxFramework(Framework):
    """JAX with Flax modules and Optax optimizers; eager or jax.jit; fp32 or bf16; CPU and GPU."""

    name = "jax"
    label = "JAX (Flax)"
    modules = ("jax", "flax", "optax")
    distribution = "jax"
    distributions = ("jax", "jaxlib", "flax", "optax")
    variants = ("eager", "compiled")
    precisions = ("fp32", "bf16")

    def preload(self, threads: int | None, params: Mapping[str, Any]) -> None:
        if threads:  # XLA sizes its pools from what the process may use when JAX is imported
            limit_threads(int(threads))
        super().preload(threads, params)

    def setup(self, threads: int | None, seed: int, params: Mapping[str, Any]) -> None:
        if threads:
            limit_threads(int(threads))
        random.seed(seed)
        np.random.seed(seed % 2**32)

    def _gpus(self) -> list[Any]:
        import jax

        try:
            return list(jax.devices("gpu"))
        except RuntimeError:
            return []

    def devices(self) -> list[str]:
        gpus = self._gpus()
        return ["cpu"] + ["cuda" if i == 0 else f"cuda:{i}" for i in range(len(gpus))]

    def _device(self, name: str) -> Any:
        import jax

        if name == "cpu":
            return jax.devices("cpu")[0]
        if name.startswith("cuda"):
            gpus = self._gpus()
            index = int(name.split(":", 1)[1]) if ":" in name else 0
            if index < len(gpus):
                return gpus[index]
        raise UnsupportedError(f"jax has no device {name!r}: choose one of {', '.join(self.devices())}"
                               " (a GPU needs the jax[cuda12] wheels)")

    def build(self, spec: ModelSpec, weights: Mapping[str, np.ndarray],
              options: BuildOptions) -> JaxModel:
        self.check(options)
        check_weights(spec, weights)
        return JaxModel(spec, weights, options, self._device(options.device))

    def data_parallel_throughput(self, spec: ModelSpec, weights: Mapping[str, np.ndarray],
                                 options: BuildOptions, run: Any) -> list[float]:
        """jit over a device mesh (host devices on CPU): see :mod:`dlbench.builtin.frameworks.jax.dp`."""
        return dp.data_parallel_throughput(spec, weights, options, run)


@hookimpl
def dlbench_register_frameworks(register: Any) -> None:
    register(JaxFramework())
