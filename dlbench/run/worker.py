"""The cell process: ``python -m dlbench.run.worker PAYLOAD.json RESULT.json``.

Loads the same plugins as the parent, lets the framework set threads and environment before it
is imported, runs the scenario and writes the Result as JSON (atomically). Expected failures
become statuses: UnsupportedError and DatasetError skip the cell with their reason; a corrupt
dataset (CorruptDatasetError) and any other exception fail it (with the traceback in the log).
A crash or hang is the parent's to record.

A cell never outlives its runner (:func:`guard`): on Linux the kernel sends it SIGTERM when the
runner dies (``PR_SET_PDEATHSIG``), and a thread polls the parent's pid everywhere; either way the
cell removes its temporary folder and kills its process group. A watchdog thread hard-exits the
cell a little after its own timeout, should nobody be left to enforce it.

``python -m dlbench.run.worker --serve REQUESTS_FD REPLIES_FD FOLDER`` is a warm worker
(:func:`serve`): the same guard, many cells of one group one after another, each logged to its
own file.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from dlbench.cell import Cell
from dlbench.errors import CorruptDatasetError, DatasetError, DlbenchError, UnsupportedError
from dlbench.measure.memory import reset_peak_host_memory
from dlbench.plugins import PluginConfig, get_plugins
from dlbench.result import Result


def execute(payload: dict[str, Any]) -> Result:
    """Run one cell in this process and return its Result (never raises for cell errors)."""
    cell = Cell.from_dict(payload["cell"])
    result = Result(cell, started_at=time.time())
    t0 = time.perf_counter()
    try:  # the imports too: one that fails is this cell's failure, reported as its status
        from dlbench.measure.contention import machine_load
        from dlbench.measure.environment import (
            fingerprint,
            framework_distributions,
            resolve_threads,
        )
        from dlbench.run.context import CellContext

        plugins = get_plugins(PluginConfig.from_dict(payload.get("plugins", {})))
        scenario = plugins.scenarios.get(cell.scenario)
        task = plugins.tasks.get(cell.task)
        framework = plugins.frameworks.get(cell.framework)
        avail = framework.availability()
        if not avail.installed:
            raise UnsupportedError(avail.reason)
        requested = cell.params.get("threads")
        try:
            threads = resolve_threads(int(requested) if requested else None)
        except ValueError as exc:
            raise UnsupportedError(str(exc)) from None
        fw_params = {k: v for k, v in cell.params.items() if k in framework.params}
        framework.setup(threads, int(cell.params.get("seed", 0) or 0), fw_params)
        if framework.kind != "classic":
            devices = framework.devices()
            if cell.device not in devices and not (cell.device == "cuda" and any(d.startswith("cuda") for d in devices)):
                raise UnsupportedError(f"device {cell.device!r} is not visible to {framework.name} "
                                       f"(visible: {', '.join(devices)})")
        elif cell.device != "cpu":
            raise UnsupportedError(f"{framework.name} runs on cpu only, not {cell.device!r}")
        ctx = CellContext(cell, task, framework, plugins, Path(payload["artifacts_dir"]), result,
                          run_cache=Path(payload["run_cache"]) if payload.get("run_cache") else None)
        scenario.run(ctx)
        result.environment = {**fingerprint(framework_distributions(plugins.frameworks)),
                              "framework_version": framework.version(), "framework_kind": framework.kind,
                              "framework_trains": framework.trains,
                              "threads": threads, "load": machine_load()}
    except UnsupportedError as exc:
        result.status, result.error = "skipped", str(exc)
    except CorruptDatasetError as exc:  # bad data is refused: the cell fails
        result.status, result.error = "failed", str(exc)
    except DatasetError as exc:
        result.status, result.error = "skipped", str(exc)
    except DlbenchError as exc:
        result.status, result.error = "failed", str(exc)
        traceback.print_exc()
    except Exception as exc:  # noqa: BLE001 - a failing cell must not stop the suite
        result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    result.duration = time.perf_counter() - t0
    return result


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


PARENT_ENV = "DLBENCH_PARENT_PID"
"""The runner's pid, set by the subprocess launcher (a runner that died before the cell started
is noticed at once)."""
WATCHDOG_GRACE = 30.0
"""Seconds past its timeout after which a cell ends itself (the runner normally kills it first)."""
_PR_SET_PDEATHSIG = 1


def _die(tmp: Path | None, code: int = 137) -> None:
    """Remove the cell's temporary folder, kill its process group (helpers it started) and exit."""
    if tmp is not None and tmp.name.startswith("dlbench-cell-"):
        shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.suppress(OSError):
        if os.getpgid(0) == os.getpid():  # the launcher made the cell a process-group leader
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.killpg(0, signal.SIGKILL)
    os._exit(code)


def guard(timeout: float | None, tmp: Path | None, poll: float = 0.5, parent: int | None = None) -> Watchdog:
    """Tie this process to its runner (or to ``parent``: the fork server whose child it is):
    parent-death signal (Linux), a parent-liveness poll thread, and a watchdog that exits
    ``WATCHDOG_GRACE`` s after ``timeout``."""
    parent = parent or int(os.environ.get(PARENT_ENV) or 0) or os.getppid()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: _die(tmp, 128 + signum))
        signal.signal(signal.SIGHUP, lambda signum, frame: _die(tmp, 128 + signum))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # died before the signal was armed
        _die(tmp)

    def watch_parent() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent:
                _die(tmp)

    threading.Thread(target=watch_parent, name="dlbench-parent-watch", daemon=True).start()
    return Watchdog(timeout)


class Watchdog:
    """Hard-exits this process (code 124) ``WATCHDOG_GRACE`` s after an armed cell's timeout; a
    warm worker re-arms it for each cell and disarms it between cells."""

    def __init__(self, timeout: float | None = None) -> None:
        self._cv = threading.Condition()
        self._deadline: float | None = None
        self._timeout = 0.0
        self.arm(timeout)
        threading.Thread(target=self._watch, name="dlbench-watchdog", daemon=True).start()

    def arm(self, timeout: float | None) -> None:
        """Start counting ``timeout`` s from now (None, 0, inf or NaN: no limit)."""
        with self._cv:
            self._timeout = float(timeout or 0.0)
            finite = 0 < self._timeout < float("inf")
            self._deadline = time.monotonic() + self._timeout + WATCHDOG_GRACE if finite else None
            self._cv.notify()

    def disarm(self) -> None:
        self.arm(None)

    def _watch(self) -> None:
        with self._cv:
            while True:
                left = None if self._deadline is None else self._deadline - time.monotonic()
                if left is not None and left <= 0:
                    print(f"dlbench worker: ran {WATCHDOG_GRACE:g} s past its timeout of "
                          f"{self._timeout:g} s, exiting", file=sys.stderr, flush=True)
                    _die(None, 124)
                self._cv.wait(left)


FIRST_CALL_FIGURES = ("first_call", "first_call_s", "compile_time_s", "first_epoch_s")
"""Measurements and metrics that time a process's first call: a warm worker never reports them
for a cell after its first (its caches, thread pools and compiled kernels are no longer cold)."""


WARM_MEMORY_FIGURES = ("peak_host_memory_mb",)
"""Metrics a warm worker moves into ``details["worker"]`` past its first cell: a process's peak
resident memory includes what earlier cells loaded (measured: +460 MB on a speech cell after
vision cells), so it is no cell's own figure. Device memory is reset per cell and stays."""


def serve(requests: int, replies: int, tmp: Path | None) -> int:
    """A warm worker (:mod:`dlbench.run.launch.warm`): runs cells one after another in this
    process until its runner closes ``requests``. Each request is one JSON line naming the
    payload, result and log files; the cell's output (file descriptors 1 and 2, native code's
    too) goes to its own log; ``done`` on ``replies`` says its result is written. The guard is
    the fresh process's: parent-death watch, and the watchdog armed with each cell's timeout."""
    watchdog = guard(None, tmp)
    null = os.open(os.devnull, os.O_WRONLY)
    with os.fdopen(requests, "r") as inbox, os.fdopen(replies, "w") as outbox:
        for n, line in enumerate(inbox):
            job = json.loads(line)
            payload = json.loads(Path(job["payload"]).read_text())
            log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            watchdog.arm(Cell.from_dict(payload["cell"]).timeout)
            reset_peak_host_memory()
            result = execute(payload)
            sys.stdout.flush()
            sys.stderr.flush()
            worker: dict[str, Any] = {"pid": os.getpid(), "cells_before": n, "warm": True}
            if n:
                _drop_first_calls(result)
                # the worker's resident memory holds what its earlier cells left (libraries, data):
                # not this cell's peak, so it is kept as the worker's, not compared as a figure
                worker.update({k: result.metrics.pop(k) for k in WARM_MEMORY_FIGURES if k in result.metrics})
            result.details["worker"] = worker
            write_atomic(Path(job["result"]), result.to_json())
            watchdog.disarm()
            os.dup2(null, 1)
            os.dup2(null, 2)
            outbox.write("done\n")
            outbox.flush()
    return 0


def _drop_first_calls(result: Result) -> None:
    result.measurements = [m for m in result.measurements if m.name not in FIRST_CALL_FIGURES]
    for name in FIRST_CALL_FIGURES:
        result.metrics.pop(name, None)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--serve":  # --serve REQUESTS_FD REPLIES_FD FOLDER
        tmp = Path(args[3]).resolve()
        return serve(int(args[1]), int(args[2]), tmp if tmp.name.startswith("dlbench-cell-") else None)
    run_cell(json.loads(Path(args[0]).read_text()), Path(args[1]), Path(args[0]).resolve().parent)
    return 0


def run_cell(payload: dict[str, Any], out: Path, tmp: Path, parent: int | None = None,
             worker: dict[str, Any] | None = None) -> None:
    """A fresh process's one cell: guarded (``tmp``, the cell's folder, goes if the runner
    dies), run, its Result written to ``out``; ``worker``: more of ``details["worker"]``."""
    guard(Cell.from_dict(payload["cell"]).timeout, tmp if tmp.name.startswith("dlbench-cell-") else None,
          parent=parent)
    result = execute(payload)
    result.details["worker"] = {"pid": os.getpid(), "cells_before": 0, "warm": False, **(worker or {})}
    sys.stdout.flush()
    sys.stderr.flush()
    write_atomic(out, result.to_json())


if __name__ == "__main__":
    sys.exit(main())
