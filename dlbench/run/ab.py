"""A/B runs: one suite on two sides (two Python environments, two versions of the plugins) in
interleaved fresh processes on the same machine at the same time (``dlbench ab``, ``dlbench gate
--ab``).

Each side is a launch configuration (:class:`dlbench.run.launch.base.LaunchConfig`: interpreter and
plugins dirs) and a run of its own in the store, labelled ``<suite>@base`` / ``<suite>@head``
(its ``config["ab"]`` records the side, interpreter and plugins). For each round r = 1..K and
each cell, the cell runs once on each side, A then B, the order alternating every round (AB,
BA, AB ...) so that neither side always goes first. Slow drift of the machine and a neighbour's
burst therefore hit both sides alike, which a stored baseline from another time cannot offer.
The two runs' merged (repeat-combined) results are compared with
:func:`dlbench.analysis.compare.compare_runs`.

Everything is validated before any run is stored: each interpreter exists, is executable and
imports dlbench (``PATH -c "import dlbench, dlbench.run.worker"`` under a timeout, with the
environment its cell processes get: ``PYTHONSAFEPATH=1``, so a dlbench checkout in the current
directory does not stand in for the environment's own); each plugins dir exists; both sides expand the suite to the same cells. Cells
are expanded in this process with each side's plugins; a side with its own interpreter checks
its frameworks' availability in its own cell processes (a missing one is a skipped cell there).
No canary is measured: both sides share the machine at the same time, so there is no drift
between them to estimate.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dlbench.cell import Cell
from dlbench.errors import DlbenchError
from dlbench.plugins import PluginConfig, Plugins, get_plugins
from dlbench.result import Result
from dlbench.run import suite as suites
from dlbench.run.launch.base import Job, LaunchConfig, Launcher
from dlbench.run.session import RunOptions, Session
from dlbench.run.suite import Suite
from dlbench.store.database import Store

SIDES = ("base", "head")
DEFAULT_REPEATS = 3
IMPORT_TIMEOUT = 60.0
SHOW_KEYS = 3
FOREIGN_ENV = {"PYTHONSAFEPATH": "1"}
"""Cell processes of a side's own interpreter import *its* dlbench, never a checkout that happens
to lie in the current directory (Python 3.11+: the current directory is not put on sys.path)."""


@dataclass(frozen=True)
class SideSpec:
    """What the user gave for one side: an interpreter and/or a plugins dir (None: this one's)."""

    name: str
    python: str | None = None
    plugins_dir: str | None = None

    def describe(self) -> str:
        parts = [f"python {self.python}" if self.python else "this python",
                 f"plugins {self.plugins_dir}" if self.plugins_dir else "the same plugins"]
        return f"{self.name} ({', '.join(parts)})"


@dataclass
class Side:
    spec: SideSpec
    plugins: Plugins
    suite: Suite
    launch: LaunchConfig

    @property
    def name(self) -> str:
        return self.spec.name


# ------------------------------------------------------------------------------- validation


def check_python(side: str, path: str, timeout: float = IMPORT_TIMEOUT) -> str:
    """The interpreter's absolute path (symlinks kept: a venv's python is one); one clear line
    when it does not exist, is not executable, or cannot import dlbench."""
    opt = f"--{side}-python"
    p = Path(path).expanduser()
    if not p.exists():
        raise DlbenchError(f"{opt} {path}: no such file (give the path of the {side} environment's "
                           f"Python interpreter, e.g. /path/to/venv/bin/python)")
    if not p.is_file() or not os.access(p, os.X_OK):
        raise DlbenchError(f"{opt} {path}: not an executable file (give the path of the {side} "
                           f"environment's Python interpreter, e.g. /path/to/venv/bin/python)")
    exe = os.path.abspath(p)
    try:  # with the environment its cell processes will get
        proc = subprocess.run([exe, "-c", "import dlbench, dlbench.run.worker"], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              env={**os.environ, **FOREIGN_ENV})
    except subprocess.TimeoutExpired:
        raise DlbenchError(f"{opt} {path}: 'import dlbench' did not finish within {timeout:g} s "
                           f"(check that environment: {exe} -c 'import dlbench')") from None
    except OSError as exc:
        raise DlbenchError(f"{opt} {path}: cannot run it ({exc.strerror or exc}); give the path of "
                           f"a Python interpreter") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
        why = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        raise DlbenchError(f"{opt} {path}: dlbench is not importable in the {side} environment "
                           f"({why}); install it there: {exe} -m pip install dlbench "
                           f"(or pip install -e . from a dlbench checkout)")
    return exe


def check_plugins_dir(side: str, path: str) -> str:
    p = Path(path).expanduser()
    if not p.exists():
        raise DlbenchError(f"--{side}-plugins-dir {path}: no such directory (give a folder of *.py "
                           f"plugin files)")
    if not p.is_dir():
        raise DlbenchError(f"--{side}-plugins-dir {path}: not a directory (give a folder of *.py "
                           f"plugin files)")
    return str(p.resolve())


def check_repeats(repeats: int) -> int:
    try:
        return suites.check_repeats(repeats)
    except ValueError as exc:
        raise DlbenchError(f"--repeats: {exc}") from None


def different_cells(keys: dict[str, list[str]]) -> str | None:
    """The one-line complaint when the sides' suites expand to different cells, else None."""
    (a, ka), (b, kb) = keys.items()
    only_a = [k for k in ka if k not in set(kb)]
    only_b = [k for k in kb if k not in set(ka)]
    if not only_a and not only_b:
        return None

    def first(ks: list[str]) -> str:
        more = f" (+{len(ks) - SHOW_KEYS} more)" if len(ks) > SHOW_KEYS else ""
        return ", ".join(ks[:SHOW_KEYS]) + more if ks else "none"

    return (f"{a} and {b} expand the suite to different cells: only in {a}: {first(only_a)}; "
            f"only in {b}: {first(only_b)} (an A/B compares the same cells on both sides: give both "
            f"sides plugins that register the same names and parameters)")


def prepare_sides(suite_ref: str, specs: Sequence[SideSpec], base_config: PluginConfig,
                  store: Store, select: str | None = None) -> list[Side]:
    """Validate both sides (nothing is stored) and return them ready to run: first every
    interpreter and plugins dir, then each side's plugins and suite, then their cells."""
    checked = []
    for spec in specs:
        python = check_python(spec.name, spec.python) if spec.python else None
        pdir = check_plugins_dir(spec.name, spec.plugins_dir) if spec.plugins_dir else None
        checked.append((spec, python, pdir))
    sides: list[Side] = []
    for spec, python, pdir in checked:
        dirs = (*base_config.plugins_dirs, pdir) if pdir else base_config.plugins_dirs
        pcfg = PluginConfig(dirs, base_config.disabled, base_config.autoload)
        try:
            plugins = get_plugins(pcfg)
            suite = suites.load(suite_ref, plugins)
        except DlbenchError as exc:
            raise DlbenchError(f"{spec.name} side: {exc}") from None
        folder = store.folder
        launch = LaunchConfig(pcfg, folder / "artifacts" / f"ab-{spec.name}", folder / "logs" / f"ab-{spec.name}",
                              env=dict(FOREIGN_ENV) if python else {}, python=python)
        sides.append(Side(spec, plugins, suite, launch))
    keys = {s.name: [c.key for c in _select(s.suite.cells(s.plugins), select)] for s in sides}
    if (msg := different_cells(keys)) is not None:
        raise DlbenchError(msg)
    if not next(iter(keys.values())):
        raise DlbenchError(f"no cell of suite {sides[0].suite.name!r} matches --select {select!r} "
                           f"(list the cells with: dlbench run {suite_ref} --dry-run)")
    return sides


def _select(cells: list[Cell], pattern: str | None) -> list[Cell]:
    import fnmatch

    return [c for c in cells if pattern is None or fnmatch.fnmatchcase(c.key, pattern)]


# ------------------------------------------------------------------------------- running


def interleave(jobs: Sequence[Sequence[Job]]) -> list[tuple[int, Job]]:
    """The launch order: for each round, for each cell, one process per side, the sides' order
    alternating every round (round 0: 0, 1; round 1: 1, 0; ...). ``(side index, job)`` pairs."""
    by = [{(j.cell.key, j.repeat): j for j in js} for js in jobs]
    keys = list(dict.fromkeys(j.cell.key for js in jobs for j in js))
    rounds = max((j.repeat + 1 for js in jobs for j in js), default=0)
    out: list[tuple[int, Job]] = []
    for r in range(rounds):
        order = list(range(len(jobs)))
        if r % 2:
            order.reverse()
        for key in keys:
            out.extend((i, by[i][(key, r)]) for i in order if (key, r) in by[i])
    return out


@dataclass
class ABRun:
    """Two sides of one suite, run interleaved into two stored runs."""

    sides: list[Side]
    store: Store
    repeats: int = DEFAULT_REPEATS
    select: str | None = None
    output_dir: Path = Path("reports")
    quiet: bool = False
    launcher: str = "subprocess"
    run_ids: dict[str, int] = field(default_factory=dict)
    launched: list[tuple[str, str, int]] = field(default_factory=list)
    """(side, cell key, repeat) in launch order."""

    def sessions(self, only: dict[str, list[Cell]] | None = None, label: str = "") -> list[Session]:
        other = {SIDES[0]: SIDES[1], SIDES[1]: SIDES[0]}
        out = []
        for side in self.sides:
            cfg = {"ab": {"side": side.name, "python": side.launch.interpreter(),
                          "plugins_dirs": list(side.launch.plugins_dirs),
                          "versus": f"{side.suite.name}@{other.get(side.name, '')}{label}",
                          "repeats": self.repeats}}
            opts = RunOptions(self.output_dir, self.launcher, select=self.select,
                              reporters=(), quiet=self.quiet, canary=False,
                              label=f"{side.suite.name}@{side.name}{label}", repeats=self.repeats,
                              config=cfg, log_prefix=f"[bold]{side.name}[/] ",
                              fresh_processes=True)  # A/B compares process-level replicates
            out.append(Session(side.suite, side.plugins, opts, self.store,
                               only=None if only is None else only[side.name], launch=side.launch))
        return out

    def run(self, only: list[str] | None = None, label: str = "") -> tuple[list[Result], list[Result]]:
        """Run every cell (or the cells with keys ``only``) on both sides; the merged results of
        (base, head). Run ids are in ``run_ids`` (keyed ``base``/``head`` plus ``label``)."""
        cells = None
        if only is not None:
            wanted = set(only)
            cells = {s.name: [c for c in s.suite.cells(s.plugins) if c.key in wanted] for s in self.sides}
        sessions = self.sessions(cells, label)
        run_interleaved(sessions, [s.name for s in self.sides], self.launched)
        for side, s in zip(self.sides, sessions, strict=True):
            self.run_ids[side.name + label] = s.run_id
        base, head = (self.store.results(s.run_id) for s in sessions)
        return base, head

    def confirm(self, keys: list[str]) -> tuple[list[Result], list[Result]]:
        """The gate's confirmation: the flagged cells again on both sides, interleaved."""
        return self.run(list(keys), label=":confirm")


def run_interleaved(sessions: Sequence[Session], names: Sequence[str],
                    launched: list[tuple[str, str, int]] | None = None) -> None:
    """Start every session's run, then launch their jobs interleaved (:func:`interleave`), each
    result stored in its side's run as it ends; every run is finished (or marked interrupted)."""
    for s in sessions:
        s.start()
    launchers: list[Launcher] = []
    status = "finished"
    try:
        with sessions[0]._progress() as progress:
            for s in sessions:
                s._progress_console = progress.console
            plan = interleave([s.prepare() for s in sessions])
            task = progress.add_task("cells", total=len(plan))
            launchers = [s.make_launcher() for s in sessions]
            for i, job in plan:
                s = sessions[i]
                if s.wanted(job):
                    label = f" ({job.label})" if job.label else ""
                    progress.update(task, description=f"{s.prefix}{job.cell.key}{label}")
                    if launched is not None:
                        launched.append((names[i], job.cell.key, job.repeat))
                    s.record(launchers[i].run_job(job))
                progress.advance(task)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        for launcher in launchers:
            launcher.close()
        for s in sessions:
            s.finish(status)


def specs(base_python: str | None, head_python: str | None, base_plugins_dir: str | None,
          head_plugins_dir: str | None) -> list[SideSpec]:
    return [SideSpec("base", base_python, base_plugins_dir), SideSpec("head", head_python, head_plugins_dir)]


__all__ = ["ABRun", "DEFAULT_REPEATS", "Side", "SideSpec", "check_plugins_dir", "check_python",
           "check_repeats", "different_cells", "interleave", "prepare_sides", "run_interleaved",
           "specs"]
