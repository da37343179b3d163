"""Run cells in the current process: fast, for debugging; no isolation and no timeout."""

from __future__ import annotations

import contextlib
import io

from dlbench.cell import Cell
from dlbench.launch.base import Launcher, tail
from dlbench.result import Result
from dlbench.worker import execute


class InlineLauncher(Launcher):
    name = "inline"

    def run(self, cell: Cell) -> Result:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            result = execute(self.config.payload(cell))
        result.log_tail = tail(buf.getvalue())
        return result
