"""Run a data-parallel measurement in a fresh Python process of its own.

Some frameworks fix their device layout when they start: JAX reads
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` at import, TensorFlow's logical CPU
devices must be configured before its runtime starts, and neither can change it afterwards. The
cell's process has already imported the framework (to list devices), so each data-parallel point
runs in a child interpreter: :func:`run_in_child` writes the job (spec as JSON, weights and the
batch as ``.npz``, no pickle) to a temporary folder, runs ``python -m MODULE FOLDER`` with the
environment the framework needs, and reads back the samples. The child's output goes to the
cell's log; it belongs to the cell's process group, so the cell's timeout kills it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dlbench.api import (
    BuildOptions,
    DataParallelRun,
    DlbenchError,
    ModelSpec,
    TrainConfig,
    UnsupportedError,
)

Measure = Callable[[ModelSpec, dict[str, np.ndarray], BuildOptions, DataParallelRun], list[float]]


def run_in_child(module: str, spec: ModelSpec, weights: Mapping[str, np.ndarray],
                 options: BuildOptions, run: DataParallelRun, env: Mapping[str, str]) -> list[float]:
    """Measure in ``python -m module`` with ``env`` added; returns its throughput samples."""
    with tempfile.TemporaryDirectory(prefix="dlbench-dp-") as tmp:
        folder = Path(tmp)
        write_job(folder, spec, weights, options, run)
        sys.stdout.flush()
        sys.stderr.flush()
        proc = subprocess.run([sys.executable, "-m", module, str(folder)],
                              env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, check=False)
        out = folder / "result.json"
        if not out.exists():
            raise DlbenchError(f"data-parallel child {module} (workers={run.workers}) exited with "
                               f"code {proc.returncode} before reporting (see the cell log)")
        res = json.loads(out.read_text())
    if res.get("unsupported"):
        raise UnsupportedError(res["unsupported"])
    if res.get("error"):
        raise DlbenchError(f"data-parallel child {module} (workers={run.workers}): {res['error']}")
    return [float(s) for s in res["samples"]]


def write_job(folder: Path, spec: ModelSpec, weights: Mapping[str, np.ndarray],
              options: BuildOptions, run: DataParallelRun) -> None:
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in weights.items()}
    np.savez(folder / "weights.npz", **arrays)
    batch: dict[str, Any] = {k: np.asarray(v) for k, v in run.inputs.items()}
    np.savez(folder / "batch.npz", __targets__=np.asarray(run.targets), **batch)
    job = {"spec": spec.to_dict(), "options": asdict(options),
           "run": {"workers": run.workers, "batch_size": run.batch_size,
                   "budget": dict(run.budget), "threads_per_worker": run.threads_per_worker}}
    (folder / "job.json").write_text(json.dumps(job, default=str))


def read_job(folder: Path) -> tuple[ModelSpec, dict[str, np.ndarray], BuildOptions, DataParallelRun]:
    job = json.loads((folder / "job.json").read_text())
    spec = ModelSpec.from_dict(job["spec"])
    with np.load(folder / "weights.npz", allow_pickle=False) as z:
        weights = {k: z[k] for k in z.files}
    with np.load(folder / "batch.npz", allow_pickle=False) as z:
        targets = z["__targets__"]
        inputs = {k: z[k] for k in z.files if k != "__targets__"}
    o = dict(job["options"])
    options = BuildOptions(**{**o, "train": TrainConfig(**o["train"])})
    r = job["run"]
    run = DataParallelRun(int(r["workers"]), int(r["batch_size"]), inputs, targets,
                          dict(r["budget"]), r.get("threads_per_worker"))
    return spec, weights, options, run


def child_main(measure: Measure, argv: list[str] | None = None) -> int:
    """Entry point of a child: read the job, measure, write ``result.json`` (never raises)."""
    folder = Path((sys.argv[1:] if argv is None else argv)[0])
    res: dict[str, Any]
    try:
        spec, weights, options, run = read_job(folder)
        res = {"samples": measure(spec, weights, options, run)}
    except UnsupportedError as exc:
        res = {"unsupported": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the cell's error
        traceback.print_exc()
        res = {"error": f"{type(exc).__name__}: {exc}"}
    tmp = folder / "result.json.tmp"
    tmp.write_text(json.dumps(res))
    os.replace(tmp, folder / "result.json")
    return 0


def cpu_budget(workers: int, threads_per_worker: int | None) -> tuple[int, int]:
    """(threads per worker, CPUs to use) on CPU: 1 thread per worker by default, capped by the
    CPUs this process may use."""
    per = max(1, int(threads_per_worker or 1))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return per, min(cpus, workers * per)
