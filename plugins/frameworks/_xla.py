"""XLA's CPU thread pools, shared by the JAX plugin and the Keras plugin's jax backend (a private
helper beside them, as ``_dp_child`` is: neither plugin imports the other)."""

from __future__ import annotations

import os
import sys


def limit_threads(threads: int) -> None:
    """Bound XLA's CPU pools. XLA sizes them from the CPUs the
    process may use when JAX is imported: pin the process to ``threads`` CPUs, and with one
    thread also turn off Eigen's multi-threading before the import."""
    if "jax" not in sys.modules and threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(cpus[: max(1, threads)]))
