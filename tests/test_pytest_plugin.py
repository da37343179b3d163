"""The pytest plugin as a pytest-benchmark user drives it: the fixture returns the function's
result, the session ends with pytest-benchmark's table (plus dlbench's CI), runs autosave into a
``.benchmarks`` folder, and ``--dlbench-compare-fail`` fails the session on dlbench's verdict."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlbench.pytest_plugin import machine_id
from dlbench.store.database import Store
from dlbench.store.pytest_benchmark import ops_per_second

pytest_plugins = ["pytester"]

# a trivial function; loose CI target and short budget keep every run well under a second
TINY = """
    import pytest

    calls = {"sync": 0}

    def sync():
        calls["sync"] += 1

    @pytest.mark.parametrize("n", [10, 300])
    def test_sum(dlbench_benchmark, n):
        dlbench_benchmark.extra_info["n"] = n
        assert dlbench_benchmark(sum, range(n), sync=sync, max_time=0.1, target_ci=0.5) == sum(range(n))
        m = dlbench_benchmark.measurement
        assert m.unit == "s" and m.stats.n >= 3 and dlbench_benchmark.stats is m.stats
        assert calls["sync"] >= m.stats.n  # every window ended with a synchronisation
"""
COLUMNS = "min,max,mean,stddev,median,iqr,ops,rounds"
# runs that time something go to a subprocess (an in-process run unloads the NumPy/SciPy modules
# it imported, and NumPy cannot load twice); hypothesis's summary hook would add seconds to each
QUIET = ("-p", "no:hypothesispytest", "-p", "no:cacheprovider")


def run(pytester, *args):
    return pytester.runpytest_subprocess(*QUIET, *args)


@pytest.fixture
def tiny(pytester, monkeypatch):
    # no run-queue probe: a busy machine must not turn the manufactured regression below into a
    # "contended, inconclusive" row (the probe itself is tested in tests/test_contention*.py)
    monkeypatch.setenv("DLBENCH_CONTENTION_SOURCE", "none")
    pytester.makepyfile(test_tiny=TINY)
    return pytester


def _table(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Name (time in "))
    end = next(i for i in range(start + 2, len(lines)) if lines[i].startswith("---"))
    return lines[start:start + 1] + lines[start + 2:end]


def test_fixture_returns_result_table_names_json_and_store(tiny):
    out = tiny.path / "bench.json"
    db = tiny.path / "r.db"
    res = run(tiny, f"--dlbench-json={out}", f"--dlbench-store=sqlite:///{db}")
    res.assert_outcomes(passed=2)  # the asserts on the returned value ran inside
    doc = json.loads(out.read_text())
    names = sorted(b["name"] for b in doc["benchmarks"])
    # the names pytest shows, not time[speed/pytest/python[...]]
    assert names == ["test_sum[10]", "test_sum[300]"]
    assert sorted(b["fullname"] for b in doc["benchmarks"]) == ["test_tiny.py::test_sum[10]",
                                                              "test_tiny.py::test_sum[300]"]
    assert sorted(b["extra_info"]["n"] for b in doc["benchmarks"]) == [10, 300]
    # the terminal table: pytest-benchmark's columns, in its order, then dlbench's CI
    header, *rows = _table(res.stdout.str())
    labels = re.split(r"\s{2,}", header.strip())
    assert labels[0].startswith("Name (time in ") and labels[-1] == "95% CI (median)"
    assert [re.sub(r" \(.*\)", "", x) for x in labels[1:-1]] == [
        "Min", "Max", "Mean", "StdDev", "Median", "IQR", "OPS", "Rounds"]
    assert sorted(r.split()[0] for r in rows) == names
    # OPS of the export is dlbench's throughput of the stored measurement
    st = Store(f"sqlite:///{db}")
    stored = {r.details["name"]: r for r in st.results(st.latest_run_id("pytest"))}
    for b in doc["benchmarks"]:
        r = stored[b["name"]]
        m = r.measurement("time")
        assert b["stats"]["ops"] == pytest.approx(ops_per_second(m), rel=1e-12)
        assert b["stats"]["rounds"] == m.stats.n and b["extra_info"]["dlbench_key"] == r.cell.key
    # dlbench export of the stored run names them the same way
    from dlbench.report.base import RunInfo
    from dlbench.store.pytest_benchmark import export_pytest_benchmark

    again = export_pytest_benchmark(RunInfo(1, "pytest", 0.0), list(stored.values()))
    assert sorted(b["name"] for b in again["benchmarks"]) == names


def test_table_is_pytest_benchmarks_own_plus_the_ci(tiny):
    """pytest-benchmark renders the exported file: its rows (same columns, unit scaling, ratio to
    the best) are our rows without the CI column; the CI brackets the median."""
    out = tiny.path / "bench.json"
    res = run(tiny, f"--dlbench-json={out}")
    res.assert_outcomes(passed=2)
    ours = _table(res.stdout.str())
    theirs = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(out),
                             f"--columns={COLUMNS}"], capture_output=True, text=True, timeout=120)
    assert theirs.returncode == 0, theirs.stderr
    ref = _table(theirs.stdout + theirs.stderr)
    assert len(ours) == len(ref) == 3
    for line, expected in zip(ours, ref, strict=True):
        # their names carry a short name of the source file; the cells are the same text
        name, *cells = re.split(r"\s{2,}", re.sub(r"^(\S+) \(\w+\)", r"\1", expected).strip())
        assert re.split(r"\s{2,}", line.strip())[:-1] == [name, *cells], (line, expected)
    unit_header = ours[0]
    scale = {"ns": 1e9, "us": 1e6, "ms": 1e3, "s": 1.0}[re.search(r"time in (\w+)\)", unit_header)[1]]
    doc = {b["name"]: b for b in json.loads(out.read_text())["benchmarks"]}
    for row in ours[1:]:
        # the CI column; a figure this machine's load flagged carries its warning after it
        lo, hi = (float(v.replace(",", "")) for v in re.search(r"\[(\S+) – (\S+)\]", row).groups())
        median = doc[row.split()[0]]["stats"]["median"] * scale
        assert lo <= median * (1 + 1e-9) and median <= hi * (1 + 1e-9)


def _saved(path: Path) -> list[Path]:
    return sorted((path / ".benchmarks" / machine_id()).glob("*.json"))


def _rescale(path: Path, factor: float) -> None:
    """Make the saved baseline ``factor`` times the time per call (and drop its flags)."""
    doc = json.loads(path.read_text())
    for b in doc["benchmarks"]:
        b["stats"]["data"] = [v * factor for v in b["stats"]["data"]]
        b["extra_info"]["flags"] = []
    path.write_text(json.dumps(doc))


def test_autosave_compare_and_compare_fail(tiny):
    run(tiny, "--dlbench-autosave").assert_outcomes(passed=2)
    # the baseline is chosen before this run saves its own: it compares with run 1 and passes
    res = run(tiny, "--dlbench-autosave", "--dlbench-compare")
    assert res.ret == 0
    first, second = _saved(tiny.path)
    assert first.name.startswith("0001_") and second.name.startswith("0002_")
    assert f"dlbench comparison with {Path('.benchmarks') / machine_id() / first.name}" in res.stdout.str()
    # pytest-benchmark lists them where it keeps its own runs
    listed = subprocess.run([sys.executable, "-m", "pytest_benchmark", "list"],
                            capture_output=True, text=True, cwd=tiny.path, timeout=120)
    assert first.name in listed.stdout and second.name in listed.stdout
    # a baseline 4x faster than anything this machine does: a regression by dlbench's verdict
    _rescale(second, 0.25)
    res = run(tiny, "--dlbench-compare-fail=median:5%")
    res.assert_outcomes(passed=2)
    text = res.stdout.str()
    if res.ret == 0 and re.search(r"test_sum\[\d+\] .* \((base|head) [a-z_]+", text):
        # a flagged figure is never a regression (docs/measurement.md): on a machine this busy
        # the real head run could not give a clean figure, so there is nothing to assert
        pytest.skip(f"the head run's figures were flagged by this machine's load: {text[-400:]}")
    assert res.ret == 1
    assert f"dlbench comparison with {Path('.benchmarks') / machine_id() / second.name}" in text
    # 4x slower than the baseline: a regression wherever the figure is clean (one may be flagged)
    assert re.search(r"test_sum\[\d+\] .* regression", text) and "Performance has regressed:" in text
    assert len(_saved(tiny.path)) == 2  # no autosave asked: nothing written
    # run 1 named, made 4x slower than this machine: improvements pass
    _rescale(first, 4.0)
    res = run(tiny, "--dlbench-compare=1", "--dlbench-compare-fail=median:5%")
    assert res.ret == 0 and "Performance has regressed" not in res.stdout.str()
    text = res.stdout.str()
    if not re.search(r"test_sum\[\d+\] .* improvement", text):  # an improvement wherever clean
        assert re.search(r"test_sum\[\d+\] .* \((base|head) [a-z_]+", text), text[-600:]
        pytest.skip(f"the improvement run's figures were flagged by this machine's load: {text[-400:]}")
    # a file without dlbench cells (pytest-benchmark's own) matches nothing, and says so
    plain = json.loads(first.read_text())
    for b in plain["benchmarks"]:
        del b["extra_info"]["cell"]
    (tiny.path / "plain.json").write_text(json.dumps(plain))
    res = run(tiny, "--dlbench-compare=plain.json")
    assert res.ret == 0 and "no test of this session is in plain.json" in res.stdout.str()


@pytest.mark.parametrize(("args", "message"), [
    (["--dlbench-compare-fail=mean:5%"], "give median:N% (e.g. median:5%)"),
    (["--dlbench-compare-fail=median:0.001"], "give median:N%"),
    (["--dlbench-compare-fail=median:5%"], "run once with --dlbench-autosave first"),
    (["--dlbench-compare=7"], "no run numbered 0007"),
    (["--dlbench-compare=nothing.json"], "no such file"),
])
def test_bad_compare_options_are_one_line_usage_errors(pytester, args, message):
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    res = pytester.runpytest(*QUIET, *args)  # refused before anything is timed: in process
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = [line for line in res.stderr.lines if message in line]
    assert len(err) == 1 and "Traceback" not in res.stderr.str(), res.stderr.str()


def test_fixture_used_twice_in_a_test_says_so(pytester):
    pytester.makepyfile(test_twice="""
        def test_twice(dlbench_benchmark):
            dlbench_benchmark(int, max_time=0.05, target_ci=0.5)
            dlbench_benchmark(int, max_time=0.05, target_ci=0.5)
    """)
    res = run(pytester)
    res.assert_outcomes(failed=1)
    assert "already used in this test" in res.stdout.str()
