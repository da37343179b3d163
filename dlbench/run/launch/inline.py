"""Run cells in the current process: fast, for debugging; no isolation and no timeout."""

from __future__ import annotations

import contextlib
import io

from dlbench.result import Result
from dlbench.run.launch.base import Job, Launcher, tail
from dlbench.run.worker import execute


class InlineLauncher(Launcher):
    name = "inline"

    def execute(self, job: Job) -> Result:
        """In this process: the config's ``python`` does not apply (use the subprocess launcher)."""
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            result = execute(self.config.payload(job.cell))
        result.log_tail = tail(buf.getvalue())
        return result
