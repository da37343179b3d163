"""JAX data parallelism: one jitted training step over a device mesh (GSPMD sharding).

The parameters and optimizer state are replicated (``PartitionSpec()``) and the global batch is
split along its first axis (``PartitionSpec("data")``) over ``workers`` devices; ``jax.jit``
partitions the very same step function the JAX plugin builds (:class:`dlbench.builtin.frameworks.jax.
JaxModel`), and XLA inserts the all-reduce of the gradients. This is JAX's native mechanism
(``jax.sharding``; it replaces ``pmap``). The step is always jitted here (SPMD partitioning
needs a compiled program), whatever the cell's variant.

On CPU the devices are XLA host devices: ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
must be set before JAX is imported, so each measurement runs in a fresh interpreter
(:mod:`dlbench.builtin.frameworks._dp_child`; its entry point is :mod:`.dp_child`, which hands
this module the plugin's framework: this module never imports the plugin's ``__init__``). Each host device gets ``threads_per_worker`` threads (1 by default:
``--xla_cpu_multi_thread_eigen=false``) and the process is pinned to ``workers x threads`` CPUs,
so N workers use N cores. On GPUs the mesh is the first ``workers`` GPUs (NCCL collectives).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from dlbench.api import BuildOptions, DataParallelRun, Framework, ModelSpec, UnsupportedError

from .._dp_child import cpu_budget, run_in_child

HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def data_parallel_throughput(spec: ModelSpec, weights: Mapping[str, np.ndarray],
                             options: BuildOptions, run: DataParallelRun) -> list[float]:
    """Global training throughput (samples/s per window) of ``run.workers`` JAX devices, measured
    in a fresh interpreter (``python -m`` :mod:`.dp_child`)."""
    return run_in_child(f"{__package__}.dp_child", spec, weights, options, run, {})


def measure(framework: Framework, spec: ModelSpec, weights: dict[str, np.ndarray],
            options: BuildOptions, run: DataParallelRun) -> list[float]:
    """In the child, before JAX is imported: set the host device count, then time the step."""
    if options.device == "cpu":
        configure_host_devices(run.workers, run.threads_per_worker)

    from dlbench.api import Budget, sample

    step, sync, _ = sharded_training(framework, spec, weights, options, run)
    sampling = sample(step, sync, Budget.from_dict(dict(run.budget)))
    n = len(run.targets)
    return [n / s for s in sampling.samples]


def configure_host_devices(workers: int, threads_per_worker: int | None) -> None:
    """Before JAX is imported: ``workers`` XLA host devices and no other platform, pinned to
    ``workers x threads`` CPUs (one thread per device turns XLA's multi-threaded Eigen off)."""
    if "jax" in sys.modules:
        raise RuntimeError("host devices must be configured before JAX is imported (a fresh process)")
    per, cpus = cpu_budget(workers, threads_per_worker)
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(HOST_DEVICES_FLAG)]
    flags.append(f"{HOST_DEVICES_FLAG}={workers}")
    if per == 1 and not any("xla_cpu_multi_thread_eigen" in f for f in flags):
        flags.append("--xla_cpu_multi_thread_eigen=false")
    os.environ["XLA_FLAGS"] = " ".join(flags)
    os.environ["JAX_PLATFORMS"] = "cpu"  # a GPU backend would start (and reserve memory) for nothing
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cpus]))


def sharded_training(framework: Framework, spec: ModelSpec, weights: Mapping[str, np.ndarray],
                     options: BuildOptions, run: DataParallelRun,
                     ) -> tuple[Callable[[], Any], Callable[[], None], Any]:
    """``(step, sync, model)``: the jitted training step of ``framework`` (the JAX plugin's) over a
    ``run.workers``-device mesh (parameters replicated, batch split), its synchronisation, and the
    model."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    platform = "cpu" if options.device == "cpu" else "gpu"
    try:
        devices = list(jax.devices(platform))
    except RuntimeError:
        devices = []
    if len(devices) < run.workers:
        raise UnsupportedError(f"workers={run.workers}: jax sees {len(devices)} {platform} device(s) "
                               f"for device {options.device!r}: choose workers <= {len(devices)}")
    model: Any = framework.build(spec, weights, replace(options, variant="compiled"))  # a JaxModel
    mesh = Mesh(np.array(devices[: run.workers]), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec("data"))
    model.params = jax.device_put(model.params, replicated)
    model.state = jax.device_put(model.state, replicated)
    model.opt_state = jax.device_put(model.opt_state, replicated)
    model._key = jax.device_put(model._key, replicated)
    x = jax.device_put(model.to_device(run.inputs), split)
    y = jax.device_put(model.to_device(run.targets), split)
    return (lambda: model.train_step(x, y)), model.synchronize, model
