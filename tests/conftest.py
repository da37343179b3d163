from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
FIXTURE_PLUGINS = Path(__file__).resolve().parent / "fixtures" / "plugins"

# Tests read real datasets from ../shared/data (never downloaded, never committed).
if "DLBENCH_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["DLBENCH_DATA_DIR"] = str(SHARED_DATA)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_browser = pytest.mark.skip(reason="needs chromium (apt install chromium)")
    has_chromium = any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome"))
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)
        if "browser" in item.keywords and not has_chromium:
            item.add_marker(skip_browser)


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``dlbench ARGS`` in a fresh interpreter, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "dlbench", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A temporary folder holding a new framework and a new task, one file each."""
    d = tmp_path / "myplugins"
    d.mkdir()
    for f in FIXTURE_PLUGINS.glob("*.py"):
        shutil.copy(f, d / f.name)
    return d


@pytest.fixture(autouse=True)
def _keep_cpu_affinity():
    """A framework set up in this process for one thread pins it to one CPU (XLA's plugins use
    os.sched_setaffinity); every process a later test starts would inherit that and refuse
    threads=2. Each test gets the CPUs the session started with back."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    yield
    if cpus is not None and os.sched_getaffinity(0) != cpus:
        os.sched_setaffinity(0, cpus)
