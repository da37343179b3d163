"""Ray launcher: cells spread over the machines of a Ray cluster, still one process per cell.

Each cell becomes a Ray task that runs the subprocess launcher on whichever node Ray picks, so a
cell keeps its isolation, timeout and log tail; CUDA cells ask Ray for a GPU. The driver stores
each result as it arrives. ``--ray-address`` joins a running cluster (``auto``, ``ray://host:10001``);
without one Ray starts a local cluster. ``cpus_per_cell`` (default: all CPUs of a node, so timings are
not disturbed by neighbours) sets how many cells share a machine.

A node's processes were started with the cluster's environment, not the driver's, so every task
carries the driver's dlbench environment in its ``runtime_env`` (:func:`driver_env`: the
``DLBENCH_*`` variables, the data folder made absolute), and the plugin folders travel as
absolute paths: a cell sees the datasets, plugins and settings the driver checked.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dlbench.cell import Cell
from dlbench.data.registry import DATA_DIR_ENV
from dlbench.errors import DlbenchError
from dlbench.result import Result
from dlbench.run.launch.base import Job, LaunchConfig, Launcher, as_job
from dlbench.run.launch.subprocess import SubprocessLauncher

NOT_SHIPPED = frozenset({"DLBENCH_PARENT_PID"})
"""Per-process variables the launcher on the node sets itself."""


def driver_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The driver's dlbench environment for the cells on the cluster: every ``DLBENCH_*``
    variable (but :data:`NOT_SHIPPED`), ``DLBENCH_DATA_DIR`` as an absolute path."""
    environ = dict(os.environ if environ is None else environ)
    env = {k: v for k, v in environ.items() if k.startswith("DLBENCH_") and k not in NOT_SHIPPED}
    if env.get(DATA_DIR_ENV):
        env[DATA_DIR_ENV] = str(Path(env[DATA_DIR_ENV]).expanduser().resolve())
    return env


def _absolute_plugins(config: LaunchConfig) -> LaunchConfig:
    dirs = tuple(str(Path(d).expanduser().resolve()) for d in config.plugins.plugins_dirs)
    return dataclasses.replace(config, plugins=dataclasses.replace(config.plugins, plugins_dirs=dirs))


def _run_on_node(config: LaunchConfig, job_dict: dict[str, Any]) -> str:
    return SubprocessLauncher(config).run_job(Job.from_dict(job_dict)).to_json()


class RayLauncher(Launcher):
    name = "ray"

    def __init__(self, config: LaunchConfig, address: str | None = None, cpus_per_cell: float | None = None) -> None:
        super().__init__(_absolute_plugins(config))
        self.env = driver_env()
        try:
            import ray
        except ImportError:
            raise DlbenchError("the ray launcher needs Ray: pip install 'dlbench[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            kw: dict[str, Any] = {"address": address} if address else {"num_cpus": os.cpu_count()}
            ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True, **kw)
        self.cpus = cpus_per_cell or max(1.0, float(ray.cluster_resources().get("CPU", 1.0)) /
                                         max(1, len(ray.nodes())))
        self._remote = ray.remote(_run_on_node)

    def _submit(self, job: Job) -> Any:
        gpus = 1 if job.cell.device.startswith("cuda") else 0
        return self._remote.options(num_cpus=self.cpus, num_gpus=gpus, max_retries=0,
                                    runtime_env={"env_vars": self.env}).remote(self.config, job.to_dict())

    def execute(self, job: Job) -> Result:
        return next(self.run_many([job]))

    def run_job(self, job: Job) -> Result:
        return self.execute(job)  # tagged on the node, or below when the task is lost

    def run_many(self, jobs: Iterable[Job | Cell]) -> Iterator[Result]:
        """Every job is submitted at once (in the session's interleaved order); results come back
        as they end, each tagged with its repeat."""
        pending = {self._submit(j): j for j in map(as_job, jobs)}
        while pending:
            done, _ = self.ray.wait(list(pending), num_returns=1)
            ref = done[0]
            job = pending.pop(ref)
            try:
                yield Result.from_json(self.ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - a lost node fails its cell, not the run
                yield job.tag(Result(job.cell, status="crashed",
                                     error=f"Ray task failed: {type(exc).__name__}: {exc}"))

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()
