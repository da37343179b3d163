"""Environment fingerprint: what a measurement depends on, recorded with every run and cell."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from dlbench.framework import Framework

CORE = "dlbench"
MEASURING_EXTRAS = ("robustness",)
"""dlbench's extras whose packages change measurements (ART and Pillow for the robustness
scenario); the frameworks' packages come from the framework plugins themselves."""
FALLBACK_CORE = ("numpy", "scipy")
"""dlbench's numerical dependencies, when its metadata cannot be read (a source tree)."""
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS", "TF_NUM_INTRAOP_THREADS",
               "KERAS_BACKEND", "CUDA_VISIBLE_DEVICES")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001
        return None


@lru_cache(maxsize=1)
def gpus() -> list[dict[str, str]]:
    """GPUs as nvidia-smi reports them (empty without an NVIDIA driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.strip().splitlines():
        name, mem, driver = (p.strip() for p in line.split(","))
        rows.append({"name": name, "memory": mem, "driver": driver})
    return rows


def git_commit(path: str | os.PathLike[str] = ".") -> str | None:
    """Commit of the working tree at ``path`` (``+dirty`` when it has changes), or None."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def allowed_cpus() -> int:
    """Cores this process may run on (``os.sched_getaffinity``; the CPU count elsewhere)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def resolve_threads(requested: int | None) -> int:
    """A cell's intra-op threads: what the suite asked for, else every core this process may use;
    never more than those cores (a cell asking for more is refused with the fix, by the caller)."""
    cores = allowed_cpus()
    if requested is None:
        return cores
    if requested < 1 or requested > cores:
        raise ValueError(f"threads={requested} but this process may use {cores} "
                         f"core{'s' if cores != 1 else ''} (os.sched_getaffinity): choose 1..{cores}")
    return int(requested)


@lru_cache(maxsize=1)
def core_distributions() -> tuple[str, ...]:
    """dlbench and what it requires (its package metadata: every dependency, and those of the
    :data:`MEASURING_EXTRAS`), in that order."""
    try:
        requires = importlib.metadata.requires(CORE) or []
    except importlib.metadata.PackageNotFoundError:
        return (CORE, *FALLBACK_CORE)
    names = [CORE]
    for req in requires:
        spec, _, marker = req.partition(";")
        extra = re.search(r"extra\s*==\s*[\"']([^\"']+)[\"']", marker)
        if extra is not None and extra.group(1) not in MEASURING_EXTRAS:
            continue
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if name is not None and name.group(1).lower() != CORE:
            names.append(name.group(1).lower())
    return tuple(dict.fromkeys(names))


def framework_distributions(frameworks: Iterable[Framework]) -> list[str]:
    """The distributions the framework plugins declare (:attr:`Framework.distributions`)."""
    out: list[str] = []
    for fw in frameworks:
        out += fw.distributions or ((fw.distribution,) if fw.distribution else ())
    return list(dict.fromkeys(out))


def versions(distributions: Iterable[str] = ()) -> dict[str, str]:
    """Installed versions of dlbench's own dependencies and of ``distributions`` (those the
    loaded framework plugins declare); distributions that are not installed are left out."""
    out = {}
    for dist in dict.fromkeys([*core_distributions(), *distributions]):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def thread_pools() -> list[dict[str, Any]]:
    """The BLAS and OpenMP libraries loaded in this process with their thread counts
    (threadpoolctl, scikit-learn's dependency): which BLAS a figure used and how many threads it
    ran, e.g. ``{"api": "blas", "library": "openblas", "version": "0.3.27", "threads": 2}``."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    pools = []
    for p in threadpool_info():
        pool = {"api": p.get("user_api"), "library": p.get("internal_api"), "version": p.get("version"),
                "threads": p.get("num_threads")}
        if p.get("architecture"):
            pool["architecture"] = p["architecture"]
        if pool not in pools:
            pools.append(pool)
    return pools


def fingerprint(distributions: Iterable[str] = ()) -> dict[str, Any]:
    """Machine, software and thread settings; ``digest`` identifies the combination.
    ``distributions`` are the framework plugins' (:func:`framework_distributions`)."""
    env = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": allowed_cpus(),
        "memory_gb": _memory_gb(),
        "hostname": platform.node(),
        "gpus": gpus(),
        "versions": versions(distributions),
        "env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
        "thread_pools": thread_pools(),
    }
    stable = {k: v for k, v in env.items() if k != "hostname"}
    env["digest"] = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return env
