"""Runs whose runner died: a ``running`` run whose runner process (pid and host recorded in the
run's ``config["runner"]`` when it starts) is gone from this host is marked ``interrupted``.

The store does this whenever it is opened (listing, reporting, resuming), so a run killed with
``kill -9`` or by a closed terminal never stays ``running``. A run started on another host, or
without a recorded runner, is left as it is.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError


def runner_info() -> dict[str, Any]:
    """What a run records about its runner process (``config["runner"]``)."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def orphaned(config: Any, host: str | None = None) -> bool:
    """True when ``config`` names a runner on this host whose process is gone."""
    runner = (config or {}).get("runner") if isinstance(config, dict) else None
    if not isinstance(runner, dict):
        return False
    pid = runner.get("pid")
    if runner.get("host") != (host or socket.gethostname()) or not isinstance(pid, int) or pid <= 0:
        return False
    return pid != os.getpid() and not pid_alive(pid)


def mark_orphaned_runs(engine: Engine, runs: Any) -> list[int]:
    """Mark every ``running`` run of ``runs`` (the table) whose runner is gone ``interrupted``;
    a store that cannot be written is left as it is."""
    try:
        with engine.begin() as c:
            rows = c.execute(select(runs.c.id, runs.c.config).where(runs.c.status == "running")).all()
            host = socket.gethostname()
            dead = [rid for rid, config in rows if orphaned(config, host)]
            if dead:
                c.execute(update(runs).where(runs.c.id.in_(dead), runs.c.status == "running")
                          .values(status="interrupted", finished_at=time.time()))
            return dead
    except SQLAlchemyError:
        return []
