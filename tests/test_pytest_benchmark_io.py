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
from dlbench.report.base import RunInfo
from dlbench.result import Measurement, Result
from dlbench.store.pytest_benchmark import (
    export_pytest_benchmark,
    import_pytest_benchmark,
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
    back = import_pytest_benchmark(doc)
    assert [len(r.measurement("time").samples) for r in back] == [25, 40]
    for b in doc["benchmarks"]:
        del b["stats"]["data"]
    summary_only = import_pytest_benchmark(doc)
    m = summary_only[1].measurement("time")
    assert m.samples == [] and m.stats.n == 40
    assert m.stats.median == pytest.approx(doc["benchmarks"][1]["stats"]["median"])
    rows = compare_runs(summary_only, summary_only).rows
    assert {r.verdict for r in rows} == {"inconclusive"}
    with pytest.raises(Exception, match="pytest-benchmark"):
        import_pytest_benchmark({"results": []})
