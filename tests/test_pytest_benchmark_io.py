"""pytest-benchmark JSON export/import, checked against pytest-benchmark itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlbench.analysis.compare import compare_runs
from dlbench.cell import Cell
from dlbench.errors import DlbenchError
from dlbench.report.base import RunInfo
from dlbench.result import Measurement, Result
from dlbench.store.pytest_benchmark import (
    export_pytest_benchmark,
    import_pytest_benchmark,
    ops_per_second,
    pytest_benchmark_stats,
)

pb_stats = pytest.importorskip("pytest_benchmark.stats")


def run_results(rng: np.random.Generator, scale: float = 1.0) -> list[Result]:
    cell = Cell("speed", "vision", "torch", "cpu", {"batch_size": 64, "mode": "infer"})
    thr = Measurement("throughput", "samples/s", (6400 * scale * np.exp(
        rng.normal(0, 0.05, 25))).tolist(), meta={"iterations": 10})
    lat = Measurement("latency", "ms", (2.0 / scale * np.exp(rng.normal(0, 0.05, 40))).tolist(),
                      higher_is_better=False)
    acc = Measurement("test_correct", "0/1", [1.0, 0.0, 1.0])
    failed = Result(Cell("speed", "nlp", "jax"), status="failed", error="boom")
    return [Result(cell, measurements=[thr, lat, acc], duration=3.0), failed]


def info(run_id: int) -> RunInfo:
    env = {"python": "3.11.7", "implementation": "CPython", "platform": "Linux-6.1-x86_64",
           "machine": "x86_64", "cpu": "AMD EPYC", "cpu_count": 2, "versions": {"numpy": "2"}}
    return RunInfo(run_id, "ci", 1_767_225_600.0 + run_id, git_commit=f"abc{run_id}",
                   environment=env)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 13, 50])
def test_stats_equal_pytest_benchmarks_own(n):
    data = list(np.random.default_rng(n).lognormal(0, 0.5, n))
    ref = pb_stats.Stats()
    for v in data:
        ref.update(v)
    ours = pytest_benchmark_stats(data)
    assert ours == ref.as_dict()  # the same formulas, the same floats


def test_export_schema_and_units():
    d = export_pytest_benchmark(info(1), run_results(np.random.default_rng(0)))
    assert set(d) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert d["commit_info"]["id"] == "abc1"
    assert d["machine_info"]["processor"] == "AMD EPYC"
    assert d["machine_info"]["system"] == "Linux" and d["machine_info"]["cpu"]["count"] == 2
    names = [b["name"] for b in d["benchmarks"]]
    assert names == ["throughput[speed/vision/torch[cpu,bs=64,infer]]",
                     "latency[speed/vision/torch[cpu,bs=64,infer]]"]  # no 0/1, no failed cell
    thr, lat = d["benchmarks"]
    assert thr["stats"]["iterations"] == 10 and thr["extra_info"]["unit"] == "s per sample"
    assert thr["stats"]["median"] == pytest.approx(1 / np.median(run_results(
        np.random.default_rng(0))[0].measurements[0].samples))
    assert lat["stats"]["data"][0] == pytest.approx(
        run_results(np.random.default_rng(0))[0].measurements[1].samples[0] / 1000)
    json.dumps(d, allow_nan=False)


@pytest.mark.skipif(shutil.which("pytest-benchmark", path=str(Path(sys.executable).parent))
                    is None, reason="pytest-benchmark CLI not installed")
def test_pytest_benchmark_compare_reads_the_export(tmp_path):
    rng = np.random.default_rng(1)
    for i, scale in ((1, 1.0), (2, 0.8)):
        doc = export_pytest_benchmark(info(i), run_results(rng, scale))
        (tmp_path / f"000{i}_run.json").write_text(json.dumps(doc))
    exe = str(Path(sys.executable).parent / "pytest-benchmark")
    out = subprocess.run([exe, "compare", str(tmp_path / "0001_run.json"),
                          str(tmp_path / "0002_run.json"), "--columns=min,median,max,rounds"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "Failed to load" not in text
    assert "0001_run" in text and "0002_run" in text
    assert "throughput[speed/vision/torch[cpu,bs=64,infer]]" in text
    assert "latency[speed/vision/torch[cpu,bs=64,infer]]" in text


def test_import_a_real_pytest_benchmark_file(tmp_path):
    (tmp_path / "test_sums.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('n', [10, 1000])\n"
        "def test_sum(benchmark, n):\n"
        "    benchmark(sum, range(n))\n")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_sums.py",
         "--benchmark-json=bench.json", "--benchmark-max-time=0.005",
         "--benchmark-min-rounds=5", "-o", "addopts="],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads((tmp_path / "bench.json").read_text())
    results = import_pytest_benchmark(doc)
    assert len(results) == 2
    for r, b in zip(results, doc["benchmarks"], strict=True):
        assert (r.cell.scenario, r.cell.task, r.cell.framework) == ("speed", "pytest-benchmark",
                                                                   "python")
        m = r.measurement("time")
        assert m.unit == "s" and not m.higher_is_better
        assert m.samples == b["stats"]["data"] and len(m.samples) == b["stats"]["rounds"]
        assert m.stats.median == pytest.approx(b["stats"]["median"])
        assert b["fullname"] in r.cell.key
    # summing 1000 numbers is slower than summing 10: the comparison must say so
    small, big = results
    big_as_head = Result(small.cell, measurements=big.measurements)
    row = compare_runs([small], [big_as_head]).rows[0]
    assert row.verdict == "regression"


def test_import_without_raw_data_and_round_trip():
    doc = export_pytest_benchmark(info(1), run_results(np.random.default_rng(2)))
    (back,) = import_pytest_benchmark(doc)  # throughput and latency of one cell: one result
    assert [len(m.samples) for m in back.measurements] == [25, 40]
    for b in doc["benchmarks"]:
        del b["stats"]["data"]
    (summary_only,) = import_pytest_benchmark(doc)
    orig = run_results(np.random.default_rng(2))[0]
    for name in ("throughput", "latency"):
        m, o = summary_only.measurement(name), orig.measurement(name)
        assert m.samples == [] and m.stats.n == o.stats.n and m.unit == o.unit
        assert m.stats.median == pytest.approx(o.stats.median, rel=1e-9)  # back in its own unit
        assert (m.stats.min, m.stats.max) == pytest.approx((o.stats.min, o.stats.max), rel=1e-9)
    rows = compare_runs([summary_only], [summary_only]).rows
    assert {r.verdict for r in rows} == {"inconclusive"}
    with pytest.raises(Exception, match="pytest-benchmark"):
        import_pytest_benchmark({"results": []})


def test_round_trip_keeps_the_dlbench_key_and_measurements():
    results = run_results(np.random.default_rng(3))
    results[0].measurements[1].flag("contended")
    doc = json.loads(json.dumps(export_pytest_benchmark(info(1), results)))
    assert {b["extra_info"]["dlbench_key"] for b in doc["benchmarks"]} == {results[0].cell.key}
    (back,) = import_pytest_benchmark(doc)
    orig = results[0]
    assert back.cell.key == orig.cell.key and back.cell == orig.cell
    for name in ("throughput", "latency"):
        m, o = back.measurement(name), orig.measurement(name)
        assert (m.unit, m.higher_is_better, m.flags) == (o.unit, o.higher_is_better, o.flags)
        assert m.samples == pytest.approx(o.samples, rel=1e-12)
    assert back.measurement("test_correct") is None  # 0/1 is not a time: never exported
    # compare matches the re-imported cell with the original: same rows, same verdicts
    timed = ("throughput", "latency")
    direct = [(r.key, r.name, r.verdict) for r in compare_runs(results, results).rows if r.name in timed]
    via = [(r.key, r.name, r.verdict) for r in compare_runs(results, [back]).rows if r.name in timed]
    assert direct == via and len(direct) == 2
    # a file pytest-benchmark itself wrote (no dlbench cell) stays a pytest-benchmark cell
    for b in doc["benchmarks"]:
        del b["extra_info"]["cell"]
    plain = import_pytest_benchmark(doc)
    assert [r.cell.task for r in plain] == ["pytest-benchmark"] * 2
    doc["benchmarks"][0]["extra_info"]["cell"] = {"scenario": "speed"}
    with pytest.raises(DlbenchError, match=r"benchmark 1 .*extra_info.cell is not a dlbench cell"):
        import_pytest_benchmark(doc)


def test_ops_is_dlbenchs_throughput():
    results = run_results(np.random.default_rng(4))
    thr, lat = results[0].measurements[:2]
    d = export_pytest_benchmark(info(1), results)
    b_thr, b_lat = d["benchmarks"]
    # throughput: the figure dlbench reports (median samples/s), not pytest-benchmark's 1 / mean
    assert b_thr["stats"]["ops"] == thr.stats.median == ops_per_second(thr)
    assert b_thr["stats"]["ops"] != pytest.approx(1 / b_thr["stats"]["mean"], rel=1e-6)
    # a time: the median of the per-sample rates (latency in ms -> calls/s)
    assert b_lat["stats"]["ops"] == pytest.approx(float(np.median(1000 / np.array(lat.samples))))
    assert ops_per_second(Measurement("test_correct", "0/1", [1.0])) != ops_per_second(thr)  # nan


def test_importing_the_same_pytest_benchmark_file_twice_is_refused(tmp_path, capsys):
    from dlbench.cli.main import main
    from dlbench.store.database import Store

    url = f"sqlite:///{tmp_path / 'r.db'}"
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(export_pytest_benchmark(info(1), run_results(np.random.default_rng(5)))))
    assert main(["import", str(path), "--store", url]) == 0
    capsys.readouterr()
    assert main(["import", str(path), "--store", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already in the store as run 1" in err, err
    assert len(Store(url).runs()) == 1
