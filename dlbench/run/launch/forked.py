"""Fork servers: fresh processes for the cells that time a first call, without the start-up.

A job with a ``fork`` group (the session gives one to every cell that runs once in a fresh
process: speed cells, and scenarios that are not ``warm_ok``; not repeats, not
``--fresh-processes``) runs in a child that the group's fork server forks
(:mod:`dlbench.run.forkserver`). The server started once, imported dlbench, loaded the plugins and
let the framework preload its library, then never ran a model: the child is a new process whose
first call of a model is its first, as in a spawned one, but it does not pay again for the
interpreter, the imports and the plugins (measured on quick: 1.5 s a torch cell, 3.5 s a
TensorFlow one, 4.5 s a Keras one). A group is the warm workers' (framework, its process-level
settings, device, threads).

A child that crashes, exits or runs past its timeout is recorded exactly as a spawned process
would be (its process group is killed); the server lives on for the group's next cell. A server
that declines (its preload left a thread running, so forking it would be unsafe) or dies before
it forks sends its group's cells back to be spawned afresh. At most :attr:`ForkServers.max_idle`
servers wait (the least recently used goes); an idle server sleeps in a read and uses no CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

from dlbench.result import Result
from dlbench.run.launch import served
from dlbench.run.launch.base import Job
from dlbench.run.launch.served import Served
from dlbench.run.launch.subprocess import SubprocessLauncher, outcome

KILL_GRACE = 10.0
"""Seconds a server has to report its killed child's exit."""


class ForkServers:
    """The fork servers of one launcher, one per group."""

    def __init__(self, launcher: SubprocessLauncher, max_idle: int = 6) -> None:
        self.launcher = launcher
        self.max_idle = max(1, max_idle)
        self.declined: dict[str, str] = {}
        """Groups whose server declined or died before it forked, with why: spawned afresh."""
        self._idle: OrderedDict[str, Served] = OrderedDict()
        self._lock = threading.Lock()

    def execute(self, job: Job, group: str) -> Result | None:
        """Run ``job`` in a child of ``group``'s server; None: the group's cells are to be
        spawned (its server declined, or died before it forked)."""
        if group in self.declined:
            return None
        cell, cfg = job.cell, self.launcher.config
        cfg.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = cfg.logs_dir / f"{job.log_name}.log"
        started = time.time()
        log_path.write_text("")  # this cell's log, new (the server's start-up and the child append)
        with self._lock:
            server = self._idle.pop(group, None)
        server = server or self._start(job, log_path)
        status: str | None = None
        code: int | None = None
        pid = 0
        with tempfile.TemporaryDirectory(prefix=f"dlbench-cell-{os.getpid()}-") as tmp:
            payload, out = Path(tmp) / "payload.json", Path(tmp) / "result.json"
            payload.write_text(json.dumps(cfg.payload(cell)))
            try:
                sent = server.send({"payload": str(payload), "result": str(out), "log": str(log_path),
                                    "folder": tmp})
                first = server.reply(_left(cell.timeout, started)) if sent else ""
                if not first or not first.startswith("pid "):  # declined, died, or hung starting
                    server.stop(kill=True)
                    if first is None:
                        status = "timeout"
                    else:
                        self.declined[group] = (first.removeprefix("declined").strip()
                                                or "its fork server died before it forked")
                        return None
                else:
                    pid = int(first.split()[1])
                    end = server.reply(_left(cell.timeout, started))
                    if end is None:  # past its timeout: the child and what it started go
                        _kill(pid)
                        end = server.reply(KILL_GRACE)
                        status = "timeout"
                    if not end:  # the server died while its child ran (the child dies with it)
                        _kill(pid)
                        server.stop(kill=True)
                    else:
                        code = int(end.split()[1])
                        self._keep(group, server)
            except BaseException:  # Ctrl-C, SIGTERM: the child's process group and the server go
                if pid:
                    _kill(pid)
                server.stop(kill=True)
                raise
            return outcome(cell, out, status, code, started, log_path)

    def close(self) -> None:
        """Stop every server."""
        served.stop_all(self._idle, self._lock)

    def _start(self, job: Job, log_path: Path) -> Served:
        cfg = self.launcher.config
        folder = Path(tempfile.mkdtemp(prefix=f"dlbench-cell-{os.getpid()}-"))
        template = folder / "template.json"
        template.write_text(json.dumps(cfg.payload(job.cell)))
        proc, requests, replies = served.start([cfg.interpreter(), "-m", "dlbench.run.forkserver"],
                                               [str(template)], self.launcher.process_env(job.cell),
                                               log_path, folder)
        return Served(proc, requests, replies, folder)

    def _keep(self, group: str, server: Served) -> None:
        with self._lock:
            retired = [self._idle.pop(group)] if group in self._idle else []
            self._idle[group] = server
            while len(self._idle) > self.max_idle:
                retired.append(self._idle.popitem(last=False)[1])
        for s in retired:
            s.stop()


def _left(timeout: float, started: float) -> float:
    """What is left of a cell's ``timeout`` (counted, as for a spawned process, from its start;
    at least a moment, so an exhausted one still reads a reply already sent)."""
    if not 0 < timeout < float("inf"):
        return 0.0
    return max(timeout - (time.time() - started), 0.01)


def _kill(pid: int) -> None:
    """SIGKILL to the child's process group (it leads one; the server made sure)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
