"""A long-lived process the launcher talks to through two pipes: a JSON request per line in, a
reply per line out. Warm workers (:mod:`~dlbench.run.launch.warm`) and fork servers
(:mod:`~dlbench.run.launch.forked`) are both one."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from dlbench.run.launch.subprocess import kill_group

S = TypeVar("S", bound="Served")


@dataclass(eq=False)
class Served:
    proc: subprocess.Popen[bytes]
    requests: IO[str]
    replies: int
    folder: Path
    """Its own temporary folder (``dlbench-cell-<runner pid>-*``), removed when it stops."""
    _buffer: bytes = field(default=b"")

    def send(self, request: dict[str, str]) -> bool:
        try:
            self.requests.write(json.dumps(request) + "\n")
            self.requests.flush()
        except (BrokenPipeError, ValueError, OSError):
            return False
        return True

    def reply(self, timeout: float) -> str | None:
        """Its next reply line; ``""`` once it exited or closed its replies; None past
        ``timeout`` s (0, inf or NaN: no limit)."""
        deadline = time.monotonic() + timeout if 0 < timeout < float("inf") else None
        while b"\n" not in self._buffer:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            ready, _, _ = select.select([self.replies], [], [], 0.5 if left is None else min(left, 0.5))
            if ready:
                chunk = os.read(self.replies, 4096)
                if not chunk:
                    return ""
                self._buffer += chunk
            elif self.proc.poll() is not None:
                return ""
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace")

    def stop(self, kill: bool = False) -> int | None:
        """End it (closing its requests ends it; ``kill``, or one that lingers: SIGKILL to its
        process group), remove its folder; its exit code."""
        with contextlib.suppress(OSError, ValueError):
            self.requests.close()
        if not kill:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill = True
        if kill:
            kill_group(self.proc)
        with contextlib.suppress(OSError):
            os.close(self.replies)
        shutil.rmtree(self.folder, ignore_errors=True)
        return self.proc.returncode


def stop_all(idle: MutableMapping[str, S], lock: threading.Lock) -> None:
    """Stop every process in ``idle`` (oldest first), each outside ``lock``."""
    while True:
        with lock:
            if not idle:
                return
            oldest = next(iter(idle))
            process = idle.pop(oldest)
        process.stop()


def start(command: list[str], extra: list[str], env: dict[str, str], log_path: Path, folder: Path) -> tuple[
        subprocess.Popen[bytes], IO[str], int]:
    """Start ``command REQUESTS_FD REPLIES_FD *extra`` in its own session, what it prints while
    starting appended to ``log_path``; its process, the requests to write and the replies' fd."""
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    try:
        with open(log_path, "a") as log:
            proc = subprocess.Popen([*command, str(req_r), str(rep_w), *extra], stdout=log,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    pass_fds=(req_r, rep_w))
    except BaseException:
        for fd in (req_r, req_w, rep_r, rep_w):
            os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    os.close(req_r)
    os.close(rep_w)
    return proc, os.fdopen(req_w, "w"), rep_r
