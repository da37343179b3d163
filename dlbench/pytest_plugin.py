"""pytest plugin: time a function with dlbench's device-synchronised adaptive sampler.

```python
def test_matmul(dlbench_benchmark):
    x = torch.randn(512, 512, device="cuda")
    y = dlbench_benchmark(lambda: x @ x, sync=torch.cuda.synchronize)
    assert y.shape == (512, 512)                    # the function's result, as pytest-benchmark
    assert dlbench_benchmark.stats.n >= 5           # the timing: dlbench_benchmark.measurement
```

The fixture times the first call apart, warms up, then samples windows of iterations closed by
``sync()`` until the 95% CI of the median is within ``target_ci`` (see
:mod:`dlbench.measure.sampler`), and returns what the function returned (its last call).
``dlbench_benchmark.extra_info`` (a dict) goes into the export's ``extra_info``.

At the end of the session a table like pytest-benchmark's is printed (Name, Min, Max, Mean,
StdDev, Median, IQR, OPS, Rounds, scaled to one time unit, plus the 95% CI of the median; OPS is
dlbench's throughput, :func:`dlbench.store.pytest_benchmark.ops_per_second`). Options:

* ``--dlbench-store URL``: store every timed test as a cell of a run (suite ``pytest``);
* ``--dlbench-json FILE``: write the run in pytest-benchmark's JSON format;
* ``--dlbench-autosave``: write it to ``STORAGE/<machine>/NNNN_<commit>_<time>.json``
  (``--dlbench-storage``, default ``.benchmarks``, pytest-benchmark's layout, so
  ``pytest-benchmark list/compare`` read it);
* ``--dlbench-compare [NUM|FILE]``: compare with the newest autosaved dlbench run, the one
  numbered NUM, or a JSON file (pytest-benchmark's or a dlbench export) with
  :func:`dlbench.analysis.compare.compare_runs`;
* ``--dlbench-compare-fail median:5%``: exit non-zero when a test is a ``regression`` by
  dlbench's verdict (significant, and the 95% CI of the median ratio says slower by more than
  5%); a noisy difference is ``inconclusive``, not a failure. Implies ``--dlbench-compare``;
* ``--dlbench-max-time S``: caps sampling per test.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dlbench.cell import Cell
from dlbench.errors import DlbenchError
from dlbench.measure.sampler import Budget, sample
from dlbench.result import Measurement, Result, Stats
from dlbench.store.pytest_benchmark import PYTEST_TASK

if TYPE_CHECKING:
    from dlbench.analysis.compare import Comparison

_STATE_KEY = pytest.StashKey["_Session"]()
_COLUMNS = ("min", "max", "mean", "stddev", "median", "iqr", "ops", "rounds")
_LABELS = {"min": "Min", "max": "Max", "mean": "Mean", "stddev": "StdDev", "median": "Median",
           "iqr": "IQR", "rounds": "Rounds"}
_CI_LABEL = "95% CI (median)"
_NUMBER = "{0:,.4f}"


@dataclass
class _Session:
    results: list[Result] = field(default_factory=list)
    baseline: Path | None = None
    base_results: list[Result] = field(default_factory=list)
    fail_pct: float | None = None
    benchmarks: list[dict[str, Any]] = field(default_factory=list)
    comparison: Comparison | None = None
    names: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def parse_compare_fail(text: str) -> float:
    """``median:5%`` -> 5.0. dlbench decides on the median (its 95% CI), so only that field and
    a percentage are accepted; pytest-benchmark's other forms get a message saying so."""
    m = re.fullmatch(r"\s*(\w+)\s*:\s*([0-9]*\.?[0-9]+)\s*(%?)\s*", text)
    if m is None or m.group(1) != "median" or not m.group(3):
        raise argparse.ArgumentTypeError(
            f"{text!r}: dlbench decides a regression from the 95% CI of the median ratio, so give "
            "median:N% (e.g. median:5%)")
    return float(m.group(2))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dlbench", "dlbench benchmarking")
    group.addoption("--dlbench-store", default=None, help="store timed tests in this dlbench store URL")
    group.addoption("--dlbench-json", default=None, help="write timed tests as pytest-benchmark JSON")
    group.addoption("--dlbench-max-time", type=float, default=2.0, help="seconds of sampling per test")
    group.addoption("--dlbench-autosave", action="store_true", default=False,
                    help="save the run as STORAGE/<machine>/NNNN_<commit>_<time>.json "
                         "(pytest-benchmark JSON)")
    group.addoption("--dlbench-storage", default=".benchmarks", metavar="DIR",
                    help="folder of autosaved runs (default: .benchmarks, pytest-benchmark's)")
    group.addoption("--dlbench-compare", nargs="?", const="latest", default=None, metavar="NUM|FILE",
                    help="compare with the newest autosaved run, run NUM, or a JSON file")
    group.addoption("--dlbench-compare-fail", type=parse_compare_fail, default=None, metavar="median:N%",
                    help="exit non-zero when a test is slower by more than N%% by dlbench's verdict "
                         "(the 95%% CI of the median ratio, not a point difference)")


def machine_id() -> str:
    """pytest-benchmark's storage folder name for this machine (``Linux-CPython-3.11-64bit``)."""
    import platform

    return "-".join((platform.system(), platform.python_implementation(),
                     ".".join(platform.python_version_tuple()[:2]), platform.architecture()[0]))


def _saved_runs(storage: Path) -> list[Path]:
    folder = storage / machine_id()
    return sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.json")) if folder.is_dir() else []


def _is_dlbench_file(path: Path) -> bool:
    import json

    try:
        doc = json.loads(path.read_text())
        return any(isinstance(b.get("extra_info"), dict) and "dlbench_key" in b["extra_info"]
                   for b in doc.get("benchmarks", []))
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def _baseline(config: pytest.Config) -> Path | None:
    """The file ``--dlbench-compare`` names (None when none is stored yet)."""
    choice = config.getoption("--dlbench-compare")
    if choice is None and config.getoption("--dlbench-compare-fail") is None:
        return None
    storage = Path(config.getoption("--dlbench-storage"))
    if choice is None or choice == "latest":
        return next((p for p in reversed(_saved_runs(storage)) if _is_dlbench_file(p)), None)
    if choice.isdigit():
        numbered = [p for p in _saved_runs(storage) if p.name.startswith(f"{int(choice):04d}_")]
        if not numbered:
            raise pytest.UsageError(f"--dlbench-compare {choice}: no run numbered {int(choice):04d} in "
                                    f"{storage / machine_id()} (see the NNNN_ files there)")
        return numbered[0]
    path = Path(choice)
    if not path.is_file():
        raise pytest.UsageError(f"--dlbench-compare {choice}: no such file (give a run number, a JSON "
                                "file, or nothing for the newest autosaved run)")
    return path


def pytest_configure(config: pytest.Config) -> None:
    state = _Session(fail_pct=config.getoption("--dlbench-compare-fail"))
    state.baseline = _baseline(config)  # chosen (and read) before this session saves its own run
    if state.fail_pct is not None and state.baseline is None:
        storage = Path(config.getoption("--dlbench-storage")) / machine_id()
        raise pytest.UsageError(f"--dlbench-compare-fail needs a run to compare with and {storage} holds "
                                "no dlbench run: run once with --dlbench-autosave first")
    if state.baseline is not None:
        import json

        from dlbench.store.exchange import import_any

        try:
            state.base_results = import_any(json.loads(state.baseline.read_text()))[1]
        except (OSError, ValueError, DlbenchError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise pytest.UsageError(f"--dlbench-compare: cannot read {state.baseline}: {first}") from None
    config.stash[_STATE_KEY] = state


class Benchmark:
    """The fixture's callable: ``benchmark(fn, *args, sync=..., **kwargs) -> fn's result``; the
    timing is in :attr:`measurement` (and :attr:`stats`) afterwards."""

    def __init__(self, node: pytest.Item, max_time: float, sink: list[Result]) -> None:
        self.node = node
        self.max_time = max_time
        self.sink = sink
        self.measurement: Measurement | None = None
        self.extra_info: dict[str, Any] = {}

    @property
    def stats(self) -> Stats | None:
        """The timing's summary (seconds per call) once the function has been timed."""
        return self.measurement.stats if self.measurement is not None else None

    def __call__(self, fn: Callable[..., Any], *args: Any, sync: Callable[[], None] | None = None,
                 target_ci: float = 0.02, max_time: float | None = None, **kwargs: Any) -> Any:
        if self.measurement is not None:
            raise DlbenchError("dlbench_benchmark was already used in this test: time one function "
                               "per test (parametrize the test for more)")
        budget = Budget(max_time=max_time or self.max_time, target_ci=target_ci, warmup_time=0.2,
                        min_window=0.01)
        value: Any = None

        def step() -> Any:
            nonlocal value
            value = fn(*args, **kwargs)
            return value

        started = time.time()
        sampling = sample(step, sync or (lambda: None), budget)
        m = sampling.measurement("time", "s", sampling.samples, False, first_call_s=sampling.first_call)
        self.measurement = m
        cell = Cell("speed", PYTEST_TASK, "python", "cpu", {"test": self.node.nodeid}, shown=("test",))
        self.sink.append(Result(cell, "ok", [m], metrics={"first_call_s": sampling.first_call},
                                details={"name": self.node.name, "fullname": self.node.nodeid,
                                         "extra_info": self.extra_info},
                                started_at=started, duration=time.time() - started))
        return value


@pytest.fixture
def dlbench_benchmark(request: pytest.FixtureRequest) -> Benchmark:
    """Time a callable with dlbench's sampler (first call apart, synchronised windows); returns
    the callable's result."""
    cfg = request.config
    return Benchmark(request.node, cfg.getoption("--dlbench-max-time"), cfg.stash[_STATE_KEY].results)


def _autosave_path(storage: Path, commit: str | None) -> Path:
    folder = storage / machine_id()
    folder.mkdir(parents=True, exist_ok=True)
    runs = _saved_runs(storage)
    number = int(runs[-1].name[:4]) + 1 if runs else 1
    sha = (commit or "unversioned").split("+", 1)[0]
    tag = "_".join([sha, time.strftime("%Y%m%d_%H%M%S", time.gmtime())]
                   + (["uncommitted-changes"] if commit and commit.endswith("+dirty") else []))
    return folder / f"{number:04d}_{tag}.json"


def pytest_sessionfinish(session: pytest.Session) -> None:
    cfg = session.config
    state = cfg.stash.get(_STATE_KEY, None)
    if state is None or not state.results:
        return
    results = state.results
    # pytest loads this plugin in every session of every project: the store, the environment and
    # the exports load only when a dlbench_benchmark test has run
    import json

    from dlbench.measure.environment import fingerprint, git_commit
    from dlbench.report.base import RunInfo
    from dlbench.store.pytest_benchmark import export_pytest_benchmark

    env = fingerprint()
    commit = git_commit()
    for r in results:
        r.environment = env
    url = cfg.getoption("--dlbench-store")
    if url:
        from dlbench.store.database import Store

        st = Store(url)
        rid = st.start_run("pytest", env, commit, {"source": "pytest plugin"})
        for r in results:
            st.add_result(rid, r)
        st.finish_run(rid)
    info = RunInfo(0, "pytest", results[0].started_at or time.time(), time.time(), commit, env)
    doc = export_pytest_benchmark(info, results)
    by_key = {b["extra_info"]["dlbench_key"]: b for b in doc["benchmarks"]}
    for r in results:
        b = by_key.get(r.cell.key)
        m = r.measurement("time")
        if b is not None and m is not None and m.stats is not None:
            state.benchmarks.append({**b["stats"], "name": b["name"], "group": b["group"],
                                     "ci_low": m.stats.ci_low, "ci_high": m.stats.ci_high})
    text = json.dumps(doc, indent=1, allow_nan=False)
    path = cfg.getoption("--dlbench-json")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    if cfg.getoption("--dlbench-autosave"):
        saved = _autosave_path(Path(cfg.getoption("--dlbench-storage")), commit)
        saved.write_text(text)
        state.notes.append(f"dlbench: saved benchmark data in {saved}")
    if state.baseline is not None:
        _compare(state, results)
        assert state.comparison is not None
        if state.fail_pct is not None and state.comparison.keys_with("regression") \
                and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif cfg.getoption("--dlbench-compare") is not None:
        state.notes.append("dlbench: nothing to compare with: no dlbench run saved in "
                           f"{Path(cfg.getoption('--dlbench-storage')) / machine_id()} yet")


def _compare(state: _Session, results: list[Result]) -> None:
    from dlbench.analysis.compare import Thresholds, compare_runs

    th = Thresholds() if state.fail_pct is None else Thresholds(min_effect=state.fail_pct / 100)
    state.comparison = compare_runs(state.base_results, results, th)
    if not {r.cell.key for r in state.base_results} & {r.cell.key for r in results}:
        state.notes.append(f"dlbench: no test of this session is in {state.baseline} (a file "
                           "pytest-benchmark wrote names other cells): every test is new")
    for r in [*state.base_results, *results]:
        name = r.details.get("name")
        state.names[r.cell.key] = name if isinstance(name, str) and name else r.cell.key


def _time_unit(value: float) -> tuple[str, float]:
    """pytest-benchmark's time scaling (utils.time_unit)."""
    if value < 1e-6:
        return "n", 1e9
    if value < 1e-3:
        return "u", 1e6
    if value < 1:
        return "m", 1e3
    return "", 1.0


def _ops_unit(value: float) -> tuple[str, float]:
    """pytest-benchmark's operations scaling (utils.operations_unit)."""
    if value > 1e6:
        return "M", 1e-6
    if value > 1e3:
        return "K", 1e-3
    return "", 1.0


def _scale(best: float, value: float, width: int) -> str:
    """pytest-benchmark's ``(1.0)`` / ``(2.35)`` ratio to the best, padded to ``width``."""
    if not width:
        return ""
    if value == best:
        return " (1.0)".ljust(width)
    ratio = abs(value / best) if best else math.inf
    if ratio > 1000:
        return (" (inf)" if math.isinf(ratio) else " (>1000.0)").ljust(width)
    return f" ({ratio:.2f})".ljust(width)


def table_lines(benchmarks: list[dict[str, Any]]) -> list[tuple[str, dict[str, bool]]]:
    """pytest-benchmark's terminal table of one group (sorted by Min; one time unit chosen from
    the best Min, the OPS unit from the worst OPS) plus the 95% CI of the median, as (text,
    markup) pieces; a piece ending in a newline ends a line."""
    rows = sorted(benchmarks, key=lambda b: b["min"])
    solo = len(rows) == 1
    best = {p: (max if p == "ops" else min)(b[p] for b in rows) for p in _COLUMNS if p != "rounds"}
    worst = {p: (min if p == "ops" else max)(b[p] for b in rows) for p in _COLUMNS if p != "rounds"}
    unit, adj = _time_unit(best["min"])
    ops_unit, ops_adj = _ops_unit(worst["ops"])
    labels = {**_LABELS, "name": f"Name (time in {unit}s)",
              "ops": f"OPS ({ops_unit}ops/s)" if ops_unit else "OPS", "ci": _CI_LABEL}

    def ci(b: dict[str, Any]) -> str:
        lo, hi = b.get("ci_low", math.nan), b.get("ci_high", math.nan)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return "-"
        return f"[{_NUMBER.format(lo * adj)} – {_NUMBER.format(hi * adj)}]"

    def factor(p: str) -> float:
        return ops_adj if p == "ops" else adj

    widths = {"name": 3 + max(len(labels["name"]), *(len(b["name"]) for b in rows)),
              "rounds": 2 + max(len(labels["rounds"]), *(len(str(b["rounds"])) for b in rows)),
              "ci": 2 + max(len(labels["ci"]), *(len(ci(b)) for b in rows))}
    for p in _COLUMNS:
        if p not in widths:
            widths[p] = 2 + max(len(labels[p]), *(len(_NUMBER.format(b[p] * factor(p))) for b in rows))
    pad = 0 if solo else 10
    header = labels["name"].ljust(widths["name"]) + "".join(
        labels[p].rjust(widths[p]) + ("" if p == "rounds" else " " * pad) for p in _COLUMNS
    ) + labels["ci"].rjust(widths["ci"])
    group = rows[0].get("group")
    title = f" benchmark{'' if group is None else f' {group!r}'}: {len(rows)} tests "
    plain: dict[str, bool] = {}
    out: list[tuple[str, dict[str, bool]]] = [
        (title.center(len(header), "-") + "\n", {"yellow": True}), (header + "\n", plain),
        ("-" * len(header) + "\n", {"yellow": True})]
    for b in rows:
        out.append((b["name"].ljust(widths["name"]), plain))
        for p in _COLUMNS:
            if p == "rounds":
                out.append((f"{b[p]:>{widths[p]}}", plain))
                continue
            text = f"{b[p] * factor(p):>{widths[p]},.4f}" + _scale(best[p], b[p], pad)
            out.append((text, {"green": not solo and b[p] == best[p],
                               "red": not solo and b[p] == worst[p], "bold": True}))
        out.append((ci(b).rjust(widths["ci"]) + "\n", plain))
    out.append(("-" * len(header) + "\n", {"yellow": True}))
    return out


def comparison_lines(comparison: Comparison, names: dict[str, str], baseline: Path,
                     fail_pct: float | None) -> list[str]:
    """One line per compared test: base and head medians, the head/base ratio with its 95% CI and
    dlbench's verdict; then the regressions when ``--dlbench-compare-fail`` is set."""
    from dlbench.report.common import fmt_ci

    rows = [r for r in comparison.rows if r.kind in ("speed", "cell")]
    width = max([len(names.get(r.key, r.key)) for r in rows] + [4]) + 3
    band = comparison.thresholds.min_effect
    lines = [f"dlbench comparison with {baseline} (a regression: significant and the 95% CI of the "
             f"median ratio beyond +{band:.0%})",
             f"{'Name'.ljust(width)}{'Base median':>14}{'Head median':>14}{'Head/Base':>11}  "
             f"{'95% CI':<18}Verdict"]
    for r in rows:
        ratio = f"{r.ratio:.3f}" if math.isfinite(r.ratio) else "-"
        base = f"{r.base_median:.4g}" if math.isfinite(r.base_median) else "-"
        head = f"{r.head_median:.4g}" if math.isfinite(r.head_median) else "-"
        lines.append(f"{names.get(r.key, r.key).ljust(width)}{base:>14}{head:>14}{ratio:>11}  "
                     f"{(fmt_ci(r.ci_low, r.ci_high) or '-'):<18}{r.verdict}"
                     + (f" ({', '.join(r.flags)})" if r.flags else ""))
    regressed = [r for r in comparison.gated_rows if r.verdict == "regression"]
    if fail_pct is not None and regressed:
        lines.append("Performance has regressed:")
        lines += [f"\t{names.get(r.key, r.key)} - {r.reason}" for r in regressed]
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    state = terminalreporter.config.stash.get(_STATE_KEY, None)
    if state is None or not state.benchmarks:
        return
    tr = terminalreporter
    tr.ensure_newline()
    tr.write_line("")
    groups: dict[Any, list[dict[str, Any]]] = {}
    for b in state.benchmarks:
        groups.setdefault(b["group"], []).append(b)
    for _, benchmarks in sorted(groups.items(), key=lambda kv: kv[0] or ""):
        for text, markup in table_lines(benchmarks):
            tr.write(text, **markup)
        tr.write_line("")
    tr.write_line("Legend:")
    tr.write_line("  OPS: Operations Per Second, dlbench's throughput: the median of the windows' "
                  "calls per second")
    tr.write_line("  95% CI (median): dlbench's confidence interval of the median (autocorrelation-aware)")
    for note in state.notes:
        tr.write_line(note)
    if state.comparison is not None and state.baseline is not None:
        tr.write_line("")
        for line in comparison_lines(state.comparison, state.names, state.baseline, state.fail_pct):
            tr.write_line(line, red=line.startswith("Performance has regressed"))
