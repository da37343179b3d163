"""Write a stored run's reports to files: load it from the store with the loaded plugins'
scenarios, render it with the registered reporters. Reporters read only :class:`RunData` and never
the store; this is the one place that joins the two (after a run, and for ``dlbench report``)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from dlbench.plugins import Plugins
from dlbench.report.base import RunData
from dlbench.report.filenames import output_file
from dlbench.scenarios.base import Scenario
from dlbench.store.database import Store

HISTORY_RUNS = 50
"""Runs of each cell's history a report draws (this run and the 49 before it)."""


def load_run_data(store: Store, run_id: int, baseline_id: int | None = None,
                  plugins: Plugins | None = None) -> RunData:
    """A stored run (and its baseline) for the reporters, with the loaded ``plugins``' scenarios
    (each names its results' headline and its leaderboard's columns)."""
    data = store.load_run(run_id)
    if baseline_id is not None:
        data.baseline = store.load_run(baseline_id)
    if plugins is not None:
        data.scenarios = scenarios_of(plugins)
        if data.baseline is not None:
            data.baseline.scenarios = data.scenarios
    keys = {r.cell.key for r in data.results}
    if keys:
        for row in store.history(keys=keys, up_to_run=run_id, limit_runs=HISTORY_RUNS):
            data.history.setdefault(row["key"], []).append(row)
    return data


def scenarios_of(plugins: Plugins) -> dict[str, Scenario]:
    """The scenarios ``plugins`` registered, by name (``RunData.scenarios``)."""
    return {s.name: s for s in plugins.scenarios}


def write_reports(store: Store, run_id: int, plugins: Plugins, output_dir: Path,
                  names: Sequence[str] = ("html", "json"), baseline_id: int | None = None,
                  data: RunData | None = None) -> dict[str, Path]:
    """Render each named reporter into ``output_dir/run-<id>/report.<ext>``; the HTML is also
    copied to ``output_dir/<suite>.html`` (the latest report of that suite). Every file name is a
    slug (:mod:`dlbench.report.filenames`): no suite name or extension leaves ``output_dir``.
    ``data``: the run as :func:`load_run_data` gave it, when the caller has it already."""
    data = data or load_run_data(store, run_id, baseline_id, plugins)
    folder = Path(output_dir) / f"run-{int(run_id)}"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in names:
        reporter = plugins.reporters.get(name, "--report")
        if not reporter.extension:
            continue
        path = output_file(folder, "report", reporter.extension)
        path.write_text(reporter.render(data), encoding="utf-8")
        written[name] = path
    if "html" in written:
        latest = output_file(Path(output_dir), data.run.suite, "html")
        shutil.copyfile(written["html"], latest)
        written["latest"] = latest
    return written
