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
    # the speed cell's time-like measurements come back as that cell (tests/test_pytest_benchmark_io.py)
    assert run is None and [r.cell.key for r in rs] == [results[0].cell.key]
    assert [m.name for m in rs[0].measurements] == ["throughput", "first_call"]


# -- dlbench import: the whole file validated before anything is written -------------------------


def _doc() -> dict:
    info, results = sample_run()
    return json.loads(json.dumps(export_run(info, results), allow_nan=False))


def _with(path: str, value, delete: bool = False):
    """A copy of the export with the field at ``path`` (dots; ints index lists) set or removed."""
    d = _doc()
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = d
    for p in parents:
        node = node[p]
    if delete:
        del node[last]
    else:
        node[last] = value
    return json.dumps(d)


MALFORMED = {
    "truncated": (lambda: json.dumps(_doc())[:500], "not valid JSON"),
    "not_utf8": (lambda: b"\xff\xfe{" , "not UTF-8"),
    "deep": (lambda: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "top_level_list": (lambda: "[1, 2]", "unrecognised results document"),
    "unknown_version": (lambda: _with("format_version", 99), "upgrade dlbench"),
    "version_string": (lambda: _with("format_version", "1"), "format_version"),
    "missing_results": (lambda: _with("results", None, delete=True), "field results: Field required"),
    "missing_suite": (lambda: _with("run.suite", None, delete=True), "field run.suite: Field required"),
    "results_not_list": (lambda: _with("results", {"a": 1}), "field results"),
    "samples_wrong_type": (lambda: _with("results.0.measurements.0.samples", "fast"), "results[0].measurements[0].samples"),
    "sample_string": (lambda: _with("results.0.measurements.0.samples.3", "1.5"), "results[0].measurements[0].samples[3]"),
    "negative_count": (lambda: _with("results.0.measurements.0.stats.n", -3), "results[0].measurements[0].stats.n"),
    "negative_parameters": (lambda: _with("results.0.model.parameter_count", -1), "results[0].model.parameter_count"),
    "nan_timeout": (lambda: _with("results.0.cell.timeout", "NaN").replace('"NaN"', "NaN"), "results[0].cell.timeout"),
    "nan_started_at": (lambda: _with("run.started_at", "NaN").replace('"NaN"', "NaN"), "run.started_at"),
    "infinite_metric": (lambda: _with("results.1.metrics.accuracy", "Infinity").replace('"Infinity"', "Infinity"), "results[1].metrics.accuracy"),
    "unknown_status": (lambda: _with("results.2.status", "pwned"), "results[2].status"),
    "hostile_framework": (lambda: _with("results.0.cell.framework", "torch\x1b[2J\n<script>"), "results[0].cell.framework"),
    "hostile_suite": (lambda: _with("run.suite", "ci\n\x00../../etc"), "run.suite"),
    "empty_task": (lambda: _with("results.0.cell.task", ""), "results[0].cell.task"),
    "cell_missing": (lambda: _with("results.0.cell", None, delete=True), "results[0].cell: Field required"),
    "unknown_result_key": (lambda: _with("results.0.surprise", 1), "results[0].surprise"),
    "bool_as_count": (lambda: _with("results.0.model.flops_per_example", True), "results[0].model.flops_per_example"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_export_is_one_line_naming_the_field_and_writes_nothing(case, tmp_path, capsys):
    from dlbench.cli.main import main
    from dlbench.store.database import Store

    make, expected = MALFORMED[case]
    body = make()
    path = tmp_path / f"{case}.json"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["import", str(path), "--store", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "internal error" not in err, err
    assert expected in err, err
    assert "\x1b" not in err and "\x00" not in err
    assert not (tmp_path / "r.db").exists()  # validated before the store opens: nothing created
    assert Store(url).runs() == []


def test_importing_the_same_run_twice_is_refused(tmp_path, capsys):
    from dlbench.cli.main import main
    from dlbench.store.database import Store

    url = f"sqlite:///{tmp_path / 'r.db'}"
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_doc()))
    assert main(["import", str(path), "--store", url]) == 0
    again = _doc()
    again["exported_at"] = "2027-01-01T00:00:00+00:00"  # the same run exported again later
    (tmp_path / "again.json").write_text(json.dumps(again, indent=2))
    capsys.readouterr()
    assert main(["import", str(tmp_path / "again.json"), "--store", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already in the store as run 1" in err, err
    assert len(Store(url).runs()) == 1
    assert main(["import", str(tmp_path / "run.json"), "--store", url, "--suite", "other"]) == 2
    assert len(Store(url).runs()) == 1
