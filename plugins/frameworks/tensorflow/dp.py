"""TensorFlow data parallelism: ``tf.distribute.MirroredStrategy``.

The TensorFlow plugin's model (:class:`dlbench.builtin.frameworks.tensorflow.TensorFlowModel`: variables,
loss and optimizer) is built inside the strategy's scope, so every variable is mirrored on each
replica device. A training step runs the replica function with ``strategy.run`` inside one
``tf.function``: forward and backward on the replica's shard, one all-reduce (mean) of all the
gradients through the replica context, then the plugin's optimizer update. The variables are
created with ``aggregation=ONLY_FIRST_REPLICA``: after the all-reduce every replica computes the
same update, so the first replica's value is written to all mirrors. The step is a graph
(``tf.function``) whatever the cell's variant: MirroredStrategy runs eager replica functions
one Python thread each, which measures Python, not the strategy.

On CPU the replicas are logical CPU devices (``tf.config.set_logical_device_configuration``),
which must be configured before TensorFlow's runtime starts, so each measurement runs in a fresh
interpreter (:mod:`dlbench.builtin.frameworks._dp_child`; its entry point is :mod:`.dp_child`, which
hands this module the plugin's framework: this module never imports the plugin's ``__init__``).
Logical CPU devices share one intra-op thread pool, sized
``workers x threads_per_worker`` (the process is pinned to as many CPUs). On GPUs the replicas are
the first ``workers`` GPUs (NCCL all-reduce).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from dlbench.api import BuildOptions, DataParallelRun, Framework, ModelSpec, UnsupportedError

from .._dp_child import cpu_budget, run_in_child


def data_parallel_throughput(spec: ModelSpec, weights: Mapping[str, np.ndarray],
                             options: BuildOptions, run: DataParallelRun) -> list[float]:
    """Global training throughput (samples/s per window) of ``run.workers`` mirrored replicas,
    measured in a fresh interpreter (``python -m`` :mod:`.dp_child`)."""
    return run_in_child(f"{__package__}.dp_child", spec, weights, options, run,
                        {"TF_CPP_MIN_LOG_LEVEL": "2"})


def _devices(tf: Any, options: BuildOptions, run: DataParallelRun) -> list[str]:
    """Configure the replica devices (before the runtime starts) and return their names."""
    if options.device == "cpu":
        per, cpus = cpu_budget(run.workers, run.threads_per_worker)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cpus]))
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(max(2, run.workers))
        tf.config.set_visible_devices([], "GPU")  # CPU replicas: leave any GPU alone
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(run.workers)])
        return [f"/cpu:{i}" for i in range(run.workers)]
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) < run.workers:
        raise UnsupportedError(f"workers={run.workers}: tensorflow sees {len(gpus)} GPU(s): "
                               f"choose workers <= {len(gpus)}")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return [f"/gpu:{i}" for i in range(run.workers)]


def measure(framework: Framework, spec: ModelSpec, weights: dict[str, np.ndarray],
            options: BuildOptions, run: DataParallelRun) -> list[float]:
    """In the child: configure the devices, build under the strategy, time the mirrored step."""
    from dlbench.api import Budget, sample

    step, sync, _ = mirrored_training(framework, spec, weights, options, run)
    sampling = sample(step, sync, Budget.from_dict(dict(run.budget)))
    n = run.batch_size * run.workers
    return [n / s for s in sampling.samples]


def mirrored_training(framework: Framework, spec: ModelSpec, weights: dict[str, np.ndarray],
                      options: BuildOptions, run: DataParallelRun,
                      ) -> tuple[Callable[[], None], Callable[[], None], Any]:
    """``(step, sync, model)``: one mirrored training step on ``run``'s batch, its
    synchronisation, and ``framework``'s (the TensorFlow plugin's) model, whose variables are
    mirrored."""
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(_devices(tf, options, run))

    def first_replica(next_creator: Any, **kwargs: Any) -> Any:
        kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
        return next_creator(**kwargs)

    with strategy.scope(), tf.variable_creator_scope(first_replica):
        model: Any = framework.build(spec, weights, options)  # a TensorFlowModel
    loss = model.loss_fn
    module, optimizer, variables = model.module, model.optimizer, model._vars

    def replica_step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            value = loss(module(x, training=True), y)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for v, g in zip(variables, tape.gradient(value, variables), strict=True)]
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, grads)
        optimizer.apply(grads)
        return value

    @tf.function
    def mirrored_step(x: Any, y: Any) -> Any:
        per_replica = strategy.run(replica_step, args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    bs = run.batch_size
    inputs = {k: _host(v) for k, v in run.inputs.items()}
    targets = _host(run.targets)

    def shard(ctx: Any) -> tuple[dict[str, Any], Any]:
        lo = ctx.replica_id_in_sync_group * bs
        return ({k: tf.constant(v[lo : lo + bs]) for k, v in inputs.items()},
                tf.constant(targets[lo : lo + bs]))

    x, y = strategy.experimental_distribute_values_from_function(shard)
    last: list[Any] = [None]

    def step() -> None:
        last[0] = mirrored_step(x, y)

    def sync() -> None:
        if last[0] is not None:
            last[0].numpy()

    return step, sync, model


def _host(a: Any) -> np.ndarray:
    arr = np.asarray(a)
    return arr.astype(np.int32) if np.issubdtype(arr.dtype, np.integer) else arr.astype(np.float32)
