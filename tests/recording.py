"""A session whose launcher launches nothing: it records each job's key and returns an ok
Result, for tests of what a session runs and stores (resume, migrations, store errors)."""

from __future__ import annotations

from pathlib import Path

from dlbench.plugins import PluginConfig, get_plugins
from dlbench.result import Result
from dlbench.run import suite as suites
from dlbench.run.launch.base import Job, LaunchConfig, Launcher
from dlbench.run.session import RunOptions, Session
from dlbench.store.database import Store

GATE_PLUGINS = Path(__file__).resolve().parent / "fixtures" / "gate_plugins"


class Recording(Launcher):
    """Launches nothing: records each job's key, returns an ok Result."""

    name = "recording"

    def __init__(self, config: LaunchConfig, log: list[str]) -> None:
        super().__init__(config)
        self.log = log

    def execute(self, job: Job) -> Result:
        self.log.append(job.cell.key)
        return Result(job.cell, metrics={"saturation_batch_size": 16.0})


def recorded_session(tmp_path: Path, suite_text: str, store: Store | None, log: list[str],
                     resume: int | None = None) -> Session:
    """A Session of ``suite_text`` (gate fixture plugins) whose launcher is :class:`Recording`."""
    plugins = get_plugins(PluginConfig(plugins_dirs=(str(GATE_PLUGINS),)))
    path = tmp_path / "sweep.yaml"
    path.write_text(suite_text)
    opts = RunOptions(tmp_path, reporters=(), quiet=True, canary=False, resume=resume)
    s = Session(suites.load(str(path), plugins), plugins, opts, store)  # type: ignore[arg-type]
    s.make_launcher = lambda: Recording(s.launch_config(), log)  # type: ignore[method-assign]
    return s
