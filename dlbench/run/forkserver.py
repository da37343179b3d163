"""A fork server: fresh cell processes without the interpreter's start and the imports each time.

``python -m dlbench.run.forkserver REQUESTS_FD REPLIES_FD TEMPLATE.json`` starts, loads the plugins
and lets the template cell's framework :meth:`~dlbench.framework.Framework.preload` its library
(the environment that must precede the import, then the import), and waits. For each request (a
JSON line naming a cell's payload, result, log and folder) it forks: the child is the cell's
process. It runs exactly what ``python -m dlbench.run.worker`` runs (:func:`dlbench.run.worker.
run_cell`: the guard, the framework's setup, the scenario) with its output in the cell's log, and
its first call of a model is its process's first: the server never builds, runs or seeds anything
and never starts a thread. So the cells that time a first call (speed, and every scenario that is
not :attr:`~dlbench.scenarios.base.Scenario.warm_ok`) keep their figures while the seconds that
no figure measures are paid once per group (framework, its process-level settings, device,
threads) instead of once per cell.

The replies are ``pid N`` once the child exists (it is the leader of its own process group, so
the runner can kill it and what it started) and ``exit CODE`` once it ended (the exit code as
:attr:`subprocess.Popen.returncode` gives it: negative for a signal). ``declined REASON`` instead
of ``pid`` says the server cannot fork safely (its preload left a thread running, or failed): the
runner then spawns that group's cells afresh. The server exits when its requests close, and with
its runner (parent-death signal); it removes its folder once it read its template, so a server
killed with its runner leaves none, and each child removes its cell's folder as a spawned cell
does.
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
import traceback
from pathlib import Path
from typing import IO, Any

from dlbench.cell import Cell
from dlbench.errors import DlbenchError
from dlbench.measure.environment import resolve_threads
from dlbench.plugins import PluginConfig, get_plugins
from dlbench.run.pages import Run, populate, resident_pages
from dlbench.run.worker import PARENT_ENV, run_cell

_PR_SET_PDEATHSIG = 1


def preload(template: dict[str, Any]) -> None:
    """What a fresh process of the template's group does before its cell: load the plugins and
    let the framework import its library, with the cell's threads."""
    cell = Cell.from_dict(template["cell"])
    plugins = get_plugins(PluginConfig.from_dict(template.get("plugins", {})))
    framework = plugins.frameworks.get(cell.framework)
    if not framework.availability().installed:
        return  # the cell says so itself
    requested = cell.params.get("threads")
    threads = resolve_threads(int(requested) if requested else None)
    framework.preload(threads, {k: v for k, v in cell.params.items() if k in framework.params})


def threads_running() -> int:
    """Threads of this process, native ones included (``/proc/self/task``; Python's count
    elsewhere)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def fork_safe_threads() -> int:
    """Threads a fork may leave behind safely: the pools of pthreads OpenBLAS builds (NumPy's and
    SciPy's wheels start theirs when imported: one worker fewer than cores), which stop before a
    fork and start anew in the child (their ``pthread_atfork`` handlers)."""
    from threadpoolctl import threadpool_info

    return sum(max(int(info.get("num_threads") or 1) - 1, 0) for info in threadpool_info()
               if info.get("internal_api") == "openblas" and info.get("threading_layer") == "pthreads")


def why_not_fork(template: dict[str, Any]) -> str | None:
    """Preload, then why forking this process would be unsafe (None: it is safe): a thread
    other than the main one and OpenBLAS's pools is running (a fork keeps only the thread that
    forks; a lock another one held stays locked in the child)."""
    try:
        preload(template)
    except (DlbenchError, ValueError, ImportError, OSError) as exc:
        return f"preload failed: {type(exc).__name__}: {exc}"
    extra = threads_running() - 1 - fork_safe_threads()
    if extra > 0:
        return f"{extra} thread{'s' if extra > 1 else ''} beyond OpenBLAS's pools run after the preload"
    return None


def serve(requests: IO[str], replies: IO[str], template: dict[str, Any]) -> int:
    """Fork one child per request, one at a time, until ``requests`` closes."""
    reason = why_not_fork(template)
    sys.stdout.flush()
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # the start-up output went to the first cell's log; nothing after it does
    os.dup2(null, 2)
    pages = resident_pages() if reason is None else []  # what each child maps and owns before its cell
    for line in requests:
        if reason is not None:
            _reply(replies, f"declined {reason}")
            continue
        job = json.loads(line)
        server = os.getpid()
        pid = os.fork()
        if pid == 0:  # the cell's process: never returns
            _child(job, server, (requests, replies), pages)
        with contextlib.suppress(OSError):  # the child does it too: whichever runs first
            os.setpgid(pid, pid)
        _reply(replies, f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        _reply(replies, f"exit {os.waitstatus_to_exitcode(status)}")
    return 0


def _reply(replies: IO[str], text: str) -> None:
    replies.write(text + "\n")
    replies.flush()


def _child(job: dict[str, str], server: int, pipes: tuple[IO[str], IO[str]], pages: list[Run]) -> None:
    code = 1
    try:
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        populated = populate(pages)  # the server's resident pages, mapped and owned as a spawned cell's
        for pipe in pipes:  # the server's, not the cell's: a child must not hold them open
            with contextlib.suppress(OSError):
                os.close(pipe.fileno())
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        payload = json.loads(Path(job["payload"]).read_text())
        run_cell(payload, Path(job["result"]), Path(job["folder"]), parent=server,
                 worker={"forked": True, "server": server, **populated.as_details()})
        code = 0
    except BaseException:  # noqa: BLE001 - whatever happens, the child leaves through os._exit
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)  # never the server's atexit handlers, never its loop


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    requests, replies, path = int(args[0]), int(args[1]), Path(args[2])
    template = json.loads(path.read_text())
    if path.parent.name.startswith("dlbench-cell-"):  # its folder held only the template; a server
        shutil.rmtree(path.parent, ignore_errors=True)  # killed with its runner leaves nothing
    if sys.platform.startswith("linux"):  # dies with its runner; no thread watches for it
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    parent = int(os.environ.get(PARENT_ENV) or 0)
    if parent and os.getppid() != parent:  # the runner died before the signal was armed
        return 1
    with os.fdopen(requests, "r") as inbox, os.fdopen(replies, "w") as outbox:
        return serve(inbox, outbox, template)


if __name__ == "__main__":
    sys.exit(main())
