"""CLI commands for CI and history: compare, gate, ab, history, export, import.

Each command imports what only it needs (the analysis modules load SciPy, ``ab`` and ``gate``
the run machinery) inside itself, so the other commands start without it.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from dlbench.cli.app import State, StoreOpt, app, err, out, parse_run_id
from dlbench.errors import DlbenchError
from dlbench.report.escape import term_markup
from dlbench.store.urls import DEFAULT_URL

if TYPE_CHECKING:  # the store imports SQLAlchemy (0.5 s): each command imports it itself
    from dlbench.report.base import RunInfo
    from dlbench.result import Result
    from dlbench.store.database import Store


def load_results(ref: str, store: Store | Callable[[], Store]) -> tuple[RunInfo | None, list[Result]]:
    """A run id (or 'latest') from the store, or an exported JSON file (dlbench or pytest-benchmark).
    ``store`` may be a function opening it, called only for a run id (a file needs no store)."""
    from dlbench.store.database import Store
    from dlbench.store.exchange import import_any

    path = Path(ref)
    if path.suffix == ".json" or path.exists():
        if not path.exists():
            raise DlbenchError(f"results file {ref} does not exist (export one with: dlbench export RUN -o {ref})")
        return import_any(read_json(path))
    rid = None if ref == "latest" else parse_run_id(ref, "run")
    st = store if isinstance(store, Store) else store()
    data = st.load_run(st.latest_run_id() if rid is None else rid)
    return data.run, data.results


def _no_store() -> Store:
    raise AssertionError("a results file is read without a store")


def read_json(path: Path) -> Any:
    """A results file's JSON; any reading or decoding problem is one line naming the file."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise DlbenchError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                           f"re-export it with dlbench export") from None
    except UnicodeDecodeError as exc:
        raise DlbenchError(f"{path} is not UTF-8 text (byte {exc.start}); re-export it with dlbench export") from None
    except RecursionError:
        raise DlbenchError(f"{path} is nested too deeply to be a results file") from None
    except OSError as exc:
        raise DlbenchError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None


def _fmt(v: float, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{(v - 1) * 100:+.1f}%" if pct else f"{v:.4g}"


TERMINAL_ROWS = 40
"""Rows a comparison prints in the terminal (``--all``: every row); the files hold every row."""

_FIRST = {"regression": 0, "failed": 1, "missing": 2, "inconclusive": 3, "improvement": 4}


def comparison_table(rows: list[Any], title: str, limit: int | None = TERMINAL_ROWS) -> Table:
    """The comparison as a terminal table: what needs a look first (regressions, failures,
    missing, inconclusive, improvements, then unchanged), at most ``limit`` rows and a caption
    counting the rest by verdict."""
    rows = sorted(rows, key=lambda r: _FIRST.get(r.verdict, 5))
    shown, rest = (rows, []) if limit is None else (rows[:limit], rows[limit:])
    caption = None
    if rest:
        counts: dict[str, int] = {}
        for r in rest:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
        caption = (f"{len(rest)} more rows not shown ({', '.join(f'{n} {v}' for v, n in counts.items())}): "
                   "--all prints them; --markdown and --json files hold every row")
    t = Table(title=term_markup(title), caption=term_markup(caption) if caption else None)
    for col in ("verdict", "cell", "measure", "base", "head", "change [95% CI]", "q", "reason"):
        t.add_column(col, overflow="fold")
    style = {"regression": "red", "failed": "red", "improvement": "green", "unchanged": "dim",
             "inconclusive": "yellow", "missing": "yellow"}
    for r in shown:
        if r.scale == "ratio":
            change = f"{_fmt(r.ratio, True)} [{_fmt(r.ci_low, True)}, {_fmt(r.ci_high, True)}]"
        elif r.scale == "points":
            change = f"{r.delta * 100:+.2f} pt" if math.isfinite(r.delta) else "-"
        else:
            change = "-"
        t.add_row(f"[{style.get(r.verdict, 'white')}]{term_markup(r.verdict)}[/]", term_markup(r.key), term_markup(r.name),
                  _fmt(r.base_median), _fmt(r.head_median), change, _fmt(r.q_value), term_markup(r.reason))
    return t


AllRows = Annotated[bool, typer.Option("--all", help=f"Print every row (default: the first {TERMINAL_ROWS}, "
                                                  "what needs a look first).")]


@app.command()
def compare(
    base: Annotated[str, typer.Argument(help="Baseline: run id, 'latest', or exported JSON file.")],
    head: Annotated[str, typer.Argument(help="Head: run id, 'latest', or exported JSON file.")],
    store: StoreOpt = DEFAULT_URL,
    markdown: Annotated[Path | None, typer.Option(help="Also write a Markdown summary here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the comparison as JSON.")] = None,
    all_rows: AllRows = False,
) -> None:
    """Compare two runs cell by cell: ratio of medians with 95% CI, Mann-Whitney U, BH-controlled verdicts."""
    from dlbench.analysis.compare import compare_runs
    from dlbench.store.database import Store

    opened = functools.cache(lambda: Store(store, create=False))  # read-only: none is created
    (_, b), (_, h) = load_results(base, opened), load_results(head, opened)
    cmp = compare_runs(b, h)
    for line in cmp.environment:
        err.print(f"[yellow]environment differs: {term_markup(line)}[/]")
    out.print(comparison_table(cmp.rows, f"{base} -> {head}", None if all_rows else TERMINAL_ROWS))
    out.print(term_markup(cmp.summary()), highlight=False)
    if markdown:
        from dlbench.analysis.gate import decide, to_markdown

        markdown.write_text(to_markdown(decide(cmp)))
    if json_out:
        json_out.write_text(json.dumps(cmp.to_dict(), indent=1, default=str))


def gate_config(s: Any) -> Any:
    """A suite's ``gate:`` section as a GateConfig (one line naming the field when it is wrong)."""
    from dlbench.analysis.gate import GateConfig

    try:
        return GateConfig.model_validate(s.model.gate or {})
    except Exception as exc:  # pydantic ValidationError: one line naming the field
        raise DlbenchError(f"{s.where}: field gate: {str(exc).splitlines()[-1].strip()}") from None


BasePython = Annotated[str | None, typer.Option("--base-python", metavar="PATH",
                                                help="A/B: the base side's Python interpreter (default: this one).")]
HeadPython = Annotated[str | None, typer.Option("--head-python", metavar="PATH",
                                                help="A/B: the head side's Python interpreter (default: this one).")]
BasePlugins = Annotated[str | None, typer.Option("--base-plugins-dir", metavar="DIR",
                                                 help="A/B: plugins dir of the base side (added to --plugins-dir).")]
HeadPlugins = Annotated[str | None, typer.Option("--head-plugins-dir", metavar="DIR",
                                                 help="A/B: plugins dir of the head side (added to --plugins-dir).")]
Repeats = Annotated[int, typer.Option(help="A/B: fresh processes per cell and side (overrides the suite's repeats).")]
Select = Annotated[str | None, typer.Option(help="Only cells whose key matches this glob.")]


def _ab_run(suite: str, st: Store, output_dir: Path, repeats: int, select: str | None,
            base_python: str | None, head_python: str | None, base_plugins_dir: str | None,
            head_plugins_dir: str | None) -> Any:
    """Validate both sides (nothing stored yet) and return the ready A/B run."""
    from dlbench.run.ab import ABRun, check_repeats, prepare_sides, specs

    k = check_repeats(repeats)
    sides = prepare_sides(suite, specs(base_python, head_python, base_plugins_dir, head_plugins_dir),
                          State.plugins().config, st, select)
    return ABRun(sides, st, k, select, output_dir)


@app.command()
def ab(
    suite: Annotated[str, typer.Argument(help="Suite to run on both sides (its 'gate:' section sets thresholds).")],
    base_python: BasePython = None,
    head_python: HeadPython = None,
    base_plugins_dir: BasePlugins = None,
    head_plugins_dir: HeadPlugins = None,
    repeats: Repeats = 3,
    select: Select = None,
    store: StoreOpt = DEFAULT_URL,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the comparison as JSON.")] = None,
    all_rows: AllRows = False,
) -> None:
    """A/B: every cell on two sides (interpreters and/or plugins dirs) in interleaved fresh processes
    (rounds AB, BA, AB ...), stored as two runs, compared on their merged repeats.

    Exit codes as dlbench gate: 0 no regression, 1 regression, 2 inconclusive or failure.
    """
    from dlbench.analysis.compare import compare_runs
    from dlbench.analysis.gate import decide
    from dlbench.store.database import Store

    st = Store(store)
    run = _ab_run(suite, st, Path("reports"), repeats, select, base_python, head_python,
                  base_plugins_dir, head_plugins_dir)
    cfg = gate_config(run.sides[-1].suite)
    base, head = run.run()
    cmp = compare_runs(base, head, cfg.to_thresholds())
    decision = decide(cmp, config=cfg)
    for line in cmp.environment:
        err.print(f"[yellow]environment differs: {term_markup(line)}[/]")
    ids = run.run_ids
    out.print(comparison_table(cmp.rows, f"A/B: run {ids['base']} (base) -> run {ids['head']} (head)",
                               None if all_rows else TERMINAL_ROWS))
    out.print(term_markup(cmp.summary()), highlight=False)
    for s in run.sides:
        out.print(term_markup(f"{s.spec.describe()}: run {ids[s.name]}"), highlight=False)
    if json_out:
        json_out.write_text(json.dumps(cmp.to_dict(), indent=1, default=str))
    out.print(term_markup(f"ab: {decision.outcome} — {decision.message} (exit {decision.exit_code})"), highlight=False)
    raise typer.Exit(decision.exit_code)


NO_BASELINE = ("no baseline to compare with: pass --baseline FILE (a run exported on a dedicated quiet "
               "machine: dlbench export RUN -o FILE) or run base and head in this job with A/B mode: "
               "dlbench gate {suite} --ab --base-python PATH --head-python PATH (or --base-plugins-dir "
               "DIR --head-plugins-dir DIR); see docs/ci.md")


@app.command()
def gate(
    suite: Annotated[str, typer.Argument(help="Suite to run (its 'gate:' section sets thresholds).")] = "ci",
    baseline: Annotated[str | None, typer.Option(help="Baseline: exported JSON file or run id.")] = None,
    head: Annotated[str | None, typer.Option(help="Read this run id instead of running the suite.")] = None,
    store: StoreOpt = DEFAULT_URL,
    output_dir: Annotated[Path, typer.Option(help="Where gate.md and gate.xml are written.")] = Path("reports"),
    confirm: Annotated[bool, typer.Option(help="Re-run flagged regressions once to confirm.")] = True,
    ab: Annotated[bool, typer.Option("--ab", help="A/B mode: run base and head interleaved in this job "
                                                  "instead of comparing with a stored baseline.")] = False,
    base_python: BasePython = None,
    head_python: HeadPython = None,
    base_plugins_dir: BasePlugins = None,
    head_plugins_dir: HeadPlugins = None,
    repeats: Repeats = 3,
    select: Select = None,
    all_rows: AllRows = False,
) -> None:
    """Run (or read) the head run, compare with the baseline (or run an A/B of two environments),
    confirm regressions by re-running them.

    Exit codes: 0 pass, 1 confirmed regression, 2 inconclusive or infrastructure failure.
    """
    from dlbench.analysis.compare import compare_runs
    from dlbench.analysis.gate import ConfirmFn, decide, to_junit, to_markdown
    from dlbench.run import suite as suites
    from dlbench.run.session import RunOptions, Session
    from dlbench.store.database import Store

    st = Store(store, create=head is None)  # reading a stored head run creates no store
    ab_mode = ab or any(v is not None for v in (base_python, head_python, base_plugins_dir, head_plugins_dir))
    rerun: ConfirmFn
    if ab_mode:
        if baseline is not None or head is not None:
            raise DlbenchError("--ab runs base and head in this job: drop --baseline and --head "
                               "(or drop --ab and the --base-*/--head-* options to compare with a stored baseline)")
        run = _ab_run(suite, st, output_dir, repeats, select, base_python, head_python,
                      base_plugins_dir, head_plugins_dir)
        cfg = gate_config(run.sides[-1].suite)
        base_results, head_results = run.run()
        title = f"gate A/B: run {run.run_ids['head']} (head) vs run {run.run_ids['base']} (base)"
        rerun = run.confirm
    else:
        plugins = State.plugins()
        s = suites.load(suite, plugins)
        cfg = gate_config(s)
        if baseline is None:
            raise DlbenchError(NO_BASELINE.format(suite=suite))
        _, base_results = load_results(baseline, st)
        if head is None:
            opts = RunOptions(output_dir, reporters=(), select=select)
            head_id = Session(s, plugins, opts, st).run().run_id
        else:
            head_id = parse_run_id(head, "--head")
        head_results = st.results(head_id)
        title = f"gate: run {head_id} vs {baseline}"

        def rerun(keys: list[str]) -> list[Result]:
            """Measure the flagged cells (and the canary) again, in fresh processes, as a new run."""
            from dlbench.run.session import CANARY_KEY

            wanted = set(keys)
            cells = [c for c in s.cells(plugins) if c.key in wanted]
            opts = RunOptions(output_dir, reporters=(), quiet=True, canary=CANARY_KEY in wanted,
                              label=f"{s.name}:confirm")
            return st.results(Session(s, plugins, opts, st, only=cells).run().run_id)

    cmp = compare_runs(base_results, head_results, cfg.to_thresholds())
    decision = decide(cmp, confirm=rerun if confirm else None, config=cfg)
    output_dir.mkdir(parents=True, exist_ok=True)
    md = to_markdown(decision)
    (output_dir / "gate.md").write_text(md)
    (output_dir / "gate.xml").write_text(to_junit(decision))
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as fh:
            fh.write(md)
    out.print(comparison_table([r for r in decision.rows if r.gated], title, None if all_rows else TERMINAL_ROWS))
    out.print(term_markup(f"gate: {decision.outcome} — {decision.message} (exit {decision.exit_code}); "
                          f"{output_dir / 'gate.md'}, {output_dir / 'gate.xml'}"), highlight=False)
    raise typer.Exit(decision.exit_code)


@app.command()
def history(
    select: Annotated[str, typer.Option(help="Cells whose key matches this glob.")] = "*",
    measurement: Annotated[str, typer.Option(help="Measurement to follow.")] = "throughput",
    store: StoreOpt = DEFAULT_URL,
) -> None:
    """Each cell's trend across runs and commits, with the step where a change entered."""
    from dlbench.analysis.history import trend
    from dlbench.store.database import Store

    st = Store(store, create=False)
    rows = st.history(select.replace("*", "%").replace("?", "_"), measurement)
    by_key: dict[str, list[dict[str, Any]]] = {}
    hib: dict[str, bool] = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(r)
    t = Table(title=f"history of {measurement}")
    for col in ("cell", "runs", "first", "last", "change", "trend", "steps (run, commit, change)"):
        t.add_column(col, overflow="fold")
    for key, points in sorted(by_key.items()):
        tr = trend(points, hib.get(key, measurement != "latency"))
        steps = "; ".join(f"run {s.get('run_id')} {str(s.get('git_commit') or '')[:8]} {s['change'] * 100:+.1f}%"
                          for s in tr["steps"])
        t.add_row(term_markup(key), str(tr["n"]), _fmt(tr["first"]), _fmt(tr["last"]),
                  "-" if tr["change"] is None else f"{tr['change'] * 100:+.1f}%",
                  term_markup(str(tr.get("assessment") or tr["direction"])), term_markup(steps) or "-")
    out.print(t)
    if not by_key:
        err.print(term_markup(f"no stored cells match {select!r} with measurement {measurement!r}"))


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(help="Run id or 'latest'.")] = "latest",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File to write (default: stdout).")] = None,
    format: Annotated[str, typer.Option("--format", help="dlbench or pytest-benchmark.")] = "dlbench",
    store: StoreOpt = DEFAULT_URL,
) -> None:
    """Export a run (raw samples and environment) as JSON: dlbench's format or pytest-benchmark's."""
    from dlbench.store.database import Store
    from dlbench.store.exchange import export_run
    from dlbench.store.pytest_benchmark import export_pytest_benchmark

    formats = {"dlbench": export_run, "pytest-benchmark": export_pytest_benchmark}
    if format not in formats:
        raise DlbenchError(f"unknown export format {format!r}: choose one of {', '.join(formats)}")
    st = Store(store, create=False)
    rid = st.latest_run_id() if run_id == "latest" else parse_run_id(run_id, "RUN_ID")
    data = st.load_run(rid)
    text = json.dumps(formats[format](data.run, data.results), indent=1, allow_nan=False)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        out.print(term_markup(f"run {rid} exported to {output}"), highlight=False)
    else:
        print(text)


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="dlbench run export or pytest-benchmark JSON.")],
    suite: Annotated[str | None, typer.Option(help="Suite name to file it under.")] = None,
    store: StoreOpt = DEFAULT_URL,
) -> None:
    """Import an exported run or a pytest-benchmark JSON file into the store as a new run."""
    from dlbench.store.database import Store
    from dlbench.store.exchange import digest

    if not path.is_file():
        raise DlbenchError(f"results file {path} does not exist: give a dlbench export or a pytest-benchmark JSON file")
    info, results = load_results(str(path), _no_store)  # the whole file is validated before the store opens
    mark = digest(read_json(path))
    st = Store(store)
    for earlier in st.runs():
        if earlier.config.get("import_digest") == mark:
            raise DlbenchError(f"{path} is already in the store as run {earlier.id} ({earlier.suite}): "
                               "not imported again")
    name = suite or (info.suite if info and info.suite else path.stem)
    rid = st.start_run(name, info.environment if info else {}, info.git_commit if info else None,
                       {**(info.config if info else {}), "imported_from": str(path), "import_digest": mark})
    for r in results:
        st.add_result(rid, r)
    st.finish_run(rid, "imported")
    out.print(term_markup(f"imported {len(results)} cells from {path} as run {rid} ({name})"), highlight=False)
