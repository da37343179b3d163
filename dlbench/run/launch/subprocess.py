"""One cell, one process: a fresh interpreter per cell, under a timeout.

Framework thread pools, GPU memory, Keras backends and crashes stay inside the cell's process.
A non-zero exit without a result is ``crashed`` (segfault, out-of-memory kill), running past the
timeout is ``timeout`` (the whole process group is killed); both keep the log tail. The
interpreter is the launch config's ``python`` (the current one by default).

Each cell's temporary folder is ``dlbench-cell-<runner pid>-*``: the worker removes it when its
runner dies, and a new launcher removes those of this user whose runner is gone. Only the last
:data:`~dlbench.run.launch.base.TAIL_BYTES` of a log are read back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from dlbench.cell import Cell
from dlbench.result import Result
from dlbench.run.launch.base import Job, LaunchConfig, Launcher, tail_file
from dlbench.run.worker import PARENT_ENV


class SubprocessLauncher(Launcher):
    name = "subprocess"

    def __init__(self, config: LaunchConfig) -> None:
        super().__init__(config)
        remove_stale_cell_dirs()

    def execute(self, job: Job) -> Result:
        cell = job.cell
        self.config.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.config.logs_dir / f"{job.log_name}.log"
        started = time.time()
        with tempfile.TemporaryDirectory(prefix=f"dlbench-cell-{os.getpid()}-") as tmp:
            payload = Path(tmp) / "payload.json"
            out = Path(tmp) / "result.json"
            payload.write_text(json.dumps(self.config.payload(cell)))
            with open(log_path, "w") as log:
                proc = subprocess.Popen([self.config.interpreter(), "-m", "dlbench.run.worker", str(payload), str(out)],
                                        stdout=log, stderr=subprocess.STDOUT, env=self.process_env(cell),
                                        start_new_session=True)
                try:
                    code = proc.wait(timeout=cell.timeout)
                    status = None
                except subprocess.TimeoutExpired:
                    kill_group(proc)
                    code, status = None, "timeout"
                except BaseException:  # Ctrl-C, SIGTERM: the cell's process group goes with us
                    kill_group(proc)
                    raise
            return outcome(cell, out, status, code, started, log_path)

    def process_env(self, cell: Cell) -> dict[str, str]:
        """The cell process's environment: the runner's, the launch config's, the runner's pid
        (:data:`~dlbench.run.worker.PARENT_ENV`) and the cell's ``threads`` for OpenMP and MKL."""
        env = {**os.environ, **self.config.env, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())}
        threads = cell.params.get("threads")
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        return env


def lost(cell: Cell, status: str | None, code: int | None, started: float) -> Result:
    """The Result of a cell whose process reported none: ``timeout`` (it was killed past its
    timeout) or ``crashed`` (it died with exit ``code``)."""
    result = Result(cell, started_at=started)
    if status == "timeout":
        result.status = "timeout"
        result.error = f"cell ran past its timeout of {cell.timeout:g} s (raise 'timeout' in the suite)"
    else:
        result.status = "crashed"
        result.error = f"cell process died with {_describe(code)} before reporting a result"
    return result


def outcome(cell: Cell, out: Path, status: str | None, code: int | None, started: float, log_path: Path) -> Result:
    """A fresh process's Result: the one it wrote to ``out`` unless ``status`` says it was killed,
    else :func:`lost`; with the launcher's part (:func:`finished`)."""
    log_text = tail_file(log_path)
    if status is None and out.exists():
        result = Result.from_json(out.read_text())
    else:
        result = lost(cell, status, code, started)
    return finished(result, log_text, started, log_path)


def finished(result: Result, log_text: str, started: float, log_path: Path) -> Result:
    """The launcher's part of every Result: the log tail, the wall time, the log file."""
    result.log_tail = log_text
    result.duration = time.time() - started
    result.details.setdefault("log_file", str(log_path))
    return result


def remove_stale_cell_dirs(root: Path | None = None) -> list[Path]:
    """Remove ``dlbench-cell-<pid>-*`` folders of this user whose runner ``pid`` is gone."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    uid = os.getuid() if hasattr(os, "getuid") else None
    with contextlib.suppress(OSError):
        for d in root.glob("dlbench-cell-*-*"):
            pid = d.name.split("-")[2]
            try:
                if not pid.isdigit() or (uid is not None and d.stat().st_uid != uid) or _alive(int(pid)):
                    continue
            except OSError:
                continue
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _describe(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
