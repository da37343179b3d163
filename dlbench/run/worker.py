"""The cell process: ``python -m dlbench.run.worker PAYLOAD.json RESULT.json``.

Loads the same plugins as the parent, lets the framework set threads and environment before it
is imported, runs the scenario and writes the Result as JSON (atomically). Expected failures
become statuses: UnsupportedError and DatasetError skip the cell with their reason, any other
exception fails it with the traceback in the log. A crash or hang is the parent's to record.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from dlbench.cell import Cell
from dlbench.errors import DatasetError, DlbenchError, UnsupportedError
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
        ctx = CellContext(cell, task, framework, plugins, Path(payload["artifacts_dir"]), result)
        scenario.run(ctx)
        result.environment = {**fingerprint(framework_distributions(plugins.frameworks)),
                              "framework_version": framework.version(),
                              "threads": threads, "load": machine_load()}
    except UnsupportedError as exc:
        result.status, result.error = "skipped", str(exc)
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    payload = json.loads(Path(args[0]).read_text())
    result = execute(payload)
    sys.stdout.flush()
    sys.stderr.flush()
    write_atomic(Path(args[1]), result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
