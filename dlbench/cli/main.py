"""The command line: ``dlbench run | list | data | report | compare | gate | history | export | import``.

User errors print one line (``error: ...``) and exit non-zero; ``--debug`` shows the traceback.
Each command imports the machinery only it needs (the session, the reporters, the data helpers,
the store and SQLAlchemy) inside itself, so ``dlbench --help`` and ``dlbench list`` start without it
(``tests/test_lean_imports.py`` checks what importing this module loads).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from dlbench.cli.app import State, StoreOpt, app, err, out, parse_run_id
from dlbench.errors import DlbenchError, choices
from dlbench.report.escape import term_markup, term_text
from dlbench.store.urls import DEFAULT_URL

if TYPE_CHECKING:
    from dlbench.plugins import Plugins, Registry

data_app = typer.Typer(no_args_is_help=True, help="Manage datasets: list, fetch, verify.")
app.add_typer(data_app, name="data")


# -- run ---------------------------------------------------------------------------------------
@app.command()
def run(
    suite: Annotated[str, typer.Argument(help="Suite name (suites/NAME.yaml) or path to a YAML file.")],
    store: StoreOpt = DEFAULT_URL,
    output_dir: Annotated[Path, typer.Option(help="Where reports are written.")] = Path("reports"),
    launcher: Annotated[str, typer.Option(help="subprocess (one process per cell), inline, or ray.")] = "subprocess",
    resume: Annotated[str | None, typer.Option(help="Continue run ID (or 'latest'), skipping finished cells.")] = None,
    select: Annotated[str | None, typer.Option(help="Only cells whose key matches this glob.")] = None,
    report: Annotated[str, typer.Option(help="Comma-separated reporters to write.")] = "html,json",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the cells and exit.")] = False,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to run cells on (--launcher ray).")] = None,
    cpus_per_cell: Annotated[float | None, typer.Option(help="Ray CPUs reserved per cell (default: a whole node).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    fresh_processes: Annotated[bool, typer.Option(
        "--fresh-processes", help="Every cell in a new interpreter (default: cells that time no first call, "
                                  "such as accuracy, share a warm worker per framework and device; the "
                                  "others are forked from a process that imported their framework).")] = False,
    parallel_cells: Annotated[int, typer.Option(
        min=1, max=64, help="Run up to N warm cells at once while cores are idle (never beside a speed cell).")] = 1,
    override: Annotated[list[str] | None, typer.Option(
        "-o", "--override", metavar="KEY=VALUE",
        help="Override a suite field, validated like the file and stored with the run (repeatable): "
             "-o budget.max_time=1 -o 'params.batch_size=[1,256]' -o timeout=120 -o matrix.0.params.epochs=2.")] = None,
) -> int:
    """Run a suite; each cell isolated (a fresh process, or a warm worker for cells that time no
    first call); results stored as each cell ends."""
    from dlbench.run import suite as suites
    from dlbench.run.session import LAUNCHERS, RunOptions, Session, selected
    from dlbench.store.database import Store

    plugins = State.plugins()
    s = suites.load(suite, plugins, override or ())
    if launcher not in LAUNCHERS:
        raise DlbenchError(f"unknown launcher {launcher!r}: choose one of {choices(LAUNCHERS)}")
    reporters = tuple(r for r in report.split(",") if r)
    for r in reporters:
        plugins.reporters.get(r, "--report")
    if dry_run:
        for cell in s.cells(plugins):
            if selected(cell.key, select):
                out.print(term_markup(cell.key), highlight=False)
        return 0
    st = Store(store)
    resume_id = None
    if resume is not None:
        resume_id = st.latest_run_id(s.name) if resume == "latest" else parse_run_id(resume, "--resume")
    opts = RunOptions(output_dir, launcher, resume_id, select, reporters, quiet, ray_address, cpus_per_cell,
                      fresh_processes=fresh_processes, parallel_cells=parallel_cells)
    session = Session(s, plugins, opts, st)
    try:
        with _sigterm_interrupts():
            session.run()
    except KeyboardInterrupt:
        err.print(term_markup(f"interrupted: {len(session.results)} results of run {session.run_id} are stored; "
                              f"continue with: dlbench run {suite} --resume {session.run_id}"))
        raise typer.Exit(130) from None
    from dlbench.report.terminal import print_report as print_run
    from dlbench.run.reports import load_run_data

    data = load_run_data(st, session.run_id, plugins=plugins)
    print_run(data, out)
    paths = session.write_reports(data)
    for name, path in paths.items():
        out.print(term_markup(f"{name} report: {path}"), highlight=False)
    rows = st.results(session.run_id, combine=False)  # every process, repeats included
    bad = [r for r in rows if r.status in ("failed", "crashed", "timeout")]
    if bad:
        err.print(f"{len(bad)} of {len(rows)} cell processes did not finish ok (see the report); exit code 1")
        raise typer.Exit(1)
    return 0


# -- list --------------------------------------------------------------------------------------
LIST_WHAT = ("plugins", "frameworks", "tasks", "scenarios", "attacks", "suites", "devices", "reporters",
             "datasets")


@app.command("list")
def list_(what: Annotated[str, typer.Argument(help=f"One of: {', '.join(LIST_WHAT)}.")] = "plugins",
          refresh: Annotated[bool, typer.Option("--refresh", help="Probe devices again (frameworks, devices): "
                                                "the probe is cached until a package or CUDA_VISIBLE_DEVICES... changes.")] = False,
          ) -> int:
    """List plugins, frameworks (version, installed, devices), tasks, suites, devices..."""
    plugins = State.plugins()
    if what not in LIST_WHAT:
        raise DlbenchError(f"unknown list {what!r}: choose one of {choices(LIST_WHAT)}")
    table = Table(title=what)
    if what == "plugins":
        table.add_column("plugin")
        table.add_column("source")
        table.add_column("module")
        table.add_column("registers")
        for info in plugins.infos:
            regs = [f"{kind} {n}" for kind, reg in _registries(plugins) for n in reg.names()
                    if reg.owner(n) == info.name]
            _row(table, info.name, info.source, info.module, ", ".join(regs))
    elif what in ("frameworks", "devices"):
        from dlbench.run.devices import probe

        fws = list(plugins.frameworks)
        installed = [f.name for f in fws if f.availability().installed]
        devs = probe(plugins, installed, refresh=refresh)
        for col in ("framework", "version", "installed", "kind", "variants", "precisions", "devices"):
            table.add_column(col)
        for f in fws:
            a = f.availability()
            d = devs.get(f.name, a.reason)
            _row(table, f.name, a.version or "-", "yes" if a.installed else "no", f.kind,
                 ", ".join(f.variants), ", ".join(f.precisions),
                 ", ".join(d) if isinstance(d, list) else str(d))
    elif what == "tasks":
        for col in ("task", "domain", "metrics", "parameters", "description"):
            table.add_column(col)
        for t in plugins.tasks:
            _row(table, t.name, t.domain, ", ".join(t.metrics),
                 ", ".join(f"{k}={p.default}" for k, p in t.params.items()), t.description)
    elif what == "scenarios":
        for col in ("scenario", "parameters", "description"):
            table.add_column(col)
        for sc in plugins.scenarios:
            _row(table, sc.name, ", ".join(f"{k}={p.default}" for k, p in sc.params.items()), sc.description)
    elif what == "attacks":
        for col in ("attack", "kind", "description"):
            table.add_column(col)
        for atk in plugins.attacks:
            _row(table, atk.name, atk.kind, atk.description)
    elif what == "reporters":
        table.add_column("reporter")
        table.add_column("file")
        for r in plugins.reporters:
            _row(table, r.name, r.extension or "-")
    elif what == "datasets":
        return data_list()
    else:
        from dlbench.run import suite as suites

        table.add_column("suite")
        table.add_column("cells")
        table.add_column("description")
        for name in suites.available():
            try:
                s = suites.load(name, plugins)
                _row(table, name, str(len(s.cells(plugins))), s.model.description)
            except DlbenchError as exc:
                _row(table, name, "-", f"invalid: {exc}")
    out.print(table)
    return 0


def _row(table: Table, *cells: object) -> None:
    """A table row of plugin- or file-given strings: shown as written, never parsed as markup."""
    table.add_row(*(term_markup(str(c)) for c in cells))


def _registries(plugins: Plugins) -> list[tuple[str, Registry[Any]]]:
    return [("framework", plugins.frameworks), ("task", plugins.tasks), ("scenario", plugins.scenarios),
            ("attack", plugins.attacks), ("reporter", plugins.reporters), ("dataset", plugins.datasets)]


# -- data --------------------------------------------------------------------------------------
@data_app.command("list")
def data_list() -> int:
    """Datasets, where they live, and whether they are present and verified."""
    from dlbench.data import registry as data

    plugins = State.plugins()
    table = Table(title=term_markup(f"datasets in {data.data_dir()}"))
    for col in ("dataset", "status", "files", "licence", "description"):
        table.add_column(col)
    for info in plugins.datasets:
        st = data.status(info)
        _row(table, info.name, st.summary, str(len(info.files)), info.licence, info.description)
    out.print(table)
    return 0


@data_app.command("fetch")
def data_fetch(names: Annotated[list[str] | None, typer.Argument(help="Datasets (default: all).")] = None) -> int:
    """Download datasets from upstream into the cache, verifying SHA-256."""
    from dlbench.data import registry as data
    from dlbench.data.download import fetch

    plugins = State.plugins()
    for info in _datasets(plugins, names):
        fetch(info)
        out.print(term_markup(f"{info.name}: ok ({data.data_dir() / info.name})"), highlight=False)
    return 0


@data_app.command("verify")
def data_verify(names: Annotated[list[str] | None, typer.Argument(help="Datasets (default: all).")] = None) -> int:
    """Check every file of the datasets against its SHA-256."""
    from dlbench.data import registry as data

    plugins = State.plugins()
    bad = 0
    for info in _datasets(plugins, names):
        problems = data.verify(info)
        bad += bool(problems)
        out.print(term_markup(f"{info.name}: " + ("ok" if not problems else "; ".join(problems[:5]))), highlight=False)
    if bad:
        raise typer.Exit(1)
    return 0


def _datasets(plugins: Plugins, names: list[str] | None) -> list[Any]:
    return [plugins.datasets.get(n, "dlbench data") for n in names] if names else list(plugins.datasets)


# -- report ------------------------------------------------------------------------------------
@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="Run id, or 'latest'.")] = "latest",
    store: StoreOpt = DEFAULT_URL,
    output_dir: Annotated[Path, typer.Option(help="Where reports are written.")] = Path("reports"),
    format: Annotated[str, typer.Option("--format", help="Comma-separated reporters.")] = "html,json",
    baseline: Annotated[str | None, typer.Option(help="Run id to compare against.")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Print every cell's row (default: the first 60, failures first).")] = False,
) -> int:
    """Rebuild a run's reports from the store (and print its table)."""
    from dlbench.report.terminal import TERMINAL_ROWS
    from dlbench.report.terminal import print_report as print_run
    from dlbench.run.reports import load_run_data, write_reports
    from dlbench.store.database import Store

    plugins = State.plugins()
    st = Store(store, create=False)
    rid = st.latest_run_id() if run_id == "latest" else parse_run_id(run_id, "RUN_ID")
    base = None if baseline is None else parse_run_id(baseline, "--baseline")
    data = load_run_data(st, rid, base, plugins)
    print_run(data, out, limit=None if all_rows else TERMINAL_ROWS)
    names = tuple(f for f in format.split(",") if f)
    for name, path in write_reports(st, rid, plugins, output_dir, names, data=data).items():
        out.print(term_markup(f"{name} report: {path}"), highlight=False)
    return 0


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (``timeout``, a CI runner, ``kill``) and SIGHUP (a closed terminal) end a run as Ctrl-C does: the cell's process
    group is killed, the run is marked interrupted and the results taken so far stay stored."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    hangup = getattr(signal, "SIGHUP", None)  # a closed terminal: like SIGTERM (not on Windows)
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
        previous_hup = signal.signal(hangup, interrupt) if hangup is not None else None
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if hangup is not None:
            signal.signal(hangup, previous_hup)


# -- entry point -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: one-line errors, tracebacks only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, prog_name="dlbench")
    except SystemExit as exc:  # typer/click exit codes, usage errors included
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except DlbenchError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {term_text(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # the filesystem outside the store: a read-only or full --output-dir
        if debug:
            traceback.print_exc()
        where = f" {exc.filename}" if exc.filename else ""
        reason = exc.strerror or str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: cannot write{where}: {reason} (check the folder's permissions and free space)",
              file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: say so on one line, traceback on --debug
        if debug:
            traceback.print_exc()
        print(f"error: internal error {type(exc).__name__}: {exc} (rerun with --debug and report it)",
              file=sys.stderr)
        return 3
    return 0


# compare, gate, ab, history, export and import register after the commands above, so that
# ``dlbench --help`` lists run, list, data and report first (dlbench.cli.ci does not import this module)
from dlbench.cli import ci  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
