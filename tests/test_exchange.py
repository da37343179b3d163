"""dlbench's run exchange format: strict JSON, lossless round trip, version checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dlbench.analysis.compare import compare_runs
from dlbench.cell import Cell
from dlbench.errors import DlbenchError
from dlbench.report.base import RunInfo
from dlbench.result import Measurement, ModelInfo, Result
from dlbench.store.exchange import FORMAT, FORMAT_VERSION, export_run, import_any, import_run
from dlbench.store.pytest_benchmark import export_pytest_benchmark


def sample_run() -> tuple[RunInfo, list[Result]]:
    rng = np.random.default_rng(0)
    env = {"python": "3.11.7", "frameworks": {"torch": "2.13.0"}, "cpu": {"model": "EPYC"}}
    info = RunInfo(7, "ci", 1_767_225_600.5, 1_767_225_700.0, "deadbeef", env, "finished",
                   {"device": "cpu"})
    speed = Result(
        Cell("speed", "vision", "torch", "cpu", {"batch_size": 32, "mode": "train",
                                                  "variant": "compiled"}, 120.0, {"max_time": 5}),
        measurements=[Measurement("throughput", "samples/s", rng.lognormal(7, 0.05, 20).tolist(),
                                  meta={"iterations": 10}),
                      Measurement("first_call", "s", [1.5], higher_is_better=False)],
        metrics={"peak_host_memory_mb": 812.5, "weird": float("nan")},
        model=ModelInfo("abc", 1234, 5678, "init", "trained", "artifacts/x.npz"),
        environment=env, log_tail="ok\n", started_at=1.0, duration=2.5)
    correct = (rng.random(100) < 0.9).astype(float).tolist()
    acc = Result(Cell("accuracy", "vision", "jax"),
                 measurements=[Measurement("test_correct", "0/1", correct)],
                 metrics={"accuracy": float(np.mean(correct))},
                 series={"learning_curve": [{"epoch": 1, "loss": 0.5}]},
                 details={"confusion": [[1, 2], [3, 4]]})
    crashed = Result(Cell("speed", "nlp", "tensorflow"), status="crashed", error="SIGKILL",
                     log_tail="Killed")
    return info, [speed, acc, crashed]


def test_round_trip_is_lossless():
    info, results = sample_run()
    doc = export_run(info, results)
    text = json.dumps(doc, allow_nan=False)  # strict JSON
    assert doc["format"] == FORMAT and doc["format_version"] == FORMAT_VERSION
    info2, results2 = import_run(json.loads(text))
    assert info2 == info
    assert len(results2) == 3
    for a, b in zip(results, results2, strict=True):
        # NaN-aware equality: NaN serialises to the same token on both sides
        assert json.dumps(b.to_dict(), sort_keys=True) == json.dumps(a.to_dict(), sort_keys=True)
    assert results2[0].measurement("throughput").samples == results[0].measurement(
        "throughput").samples
    assert results2[0].cell.key == results[0].cell.key


def test_non_finite_stats_survive_as_nan():
    info, results = sample_run()
    fc = results[0].measurement("first_call")  # one sample: CI of the median is NaN
    assert math.isnan(fc.stats.ci_low)
    doc = json.loads(json.dumps(export_run(info, results), allow_nan=False))
    assert doc["results"][0]["measurements"][1]["stats"]["ci_low"] is None
    _, back = import_run(doc)
    assert math.isnan(back[0].measurement("first_call").stats.ci_low)
    assert isinstance(back[0].measurement("first_call").stats.n, int)


def test_imported_runs_compare_like_the_originals():
    info, results = sample_run()
    _, again = import_run(json.loads(json.dumps(export_run(info, results))))
    direct = [(r.key, r.name, r.verdict) for r in compare_runs(results, results).rows]
    via = [(r.key, r.name, r.verdict) for r in compare_runs(results, again).rows]
    assert direct == via


def test_version_and_format_checks():
    info, results = sample_run()
    doc = export_run(info, results)
    with pytest.raises(DlbenchError, match="upgrade dlbench"):
        import_run({**doc, "format_version": FORMAT_VERSION + 1})
    with pytest.raises(DlbenchError, match="not a dlbench run document"):
        import_run({"format": "other"})
    with pytest.raises(DlbenchError, match="unrecognised"):
        import_any({"hello": 1})


def test_import_any_reads_both_formats():
    info, results = sample_run()
    run, rs = import_any(export_run(info, results))
    assert run is not None and run.id == 7 and len(rs) == 3
    run, rs = import_any(export_pytest_benchmark(info, results))
    assert run is None and [r.cell.task for r in rs] == ["pytest-benchmark"] * 2
