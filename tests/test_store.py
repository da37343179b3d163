from __future__ import annotations

import math
import os

import pytest

from dlbench.cell import Cell
from dlbench.errors import StoreError
from dlbench.result import Measurement, ModelInfo, Result
from dlbench.store.database import Store

URLS = ["sqlite"]
if os.environ.get("DLBENCH_TEST_POSTGRES_URL"):
    URLS.append("postgres")


@pytest.fixture(params=URLS)
def store(request, tmp_path):
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'db' / 'r.db'}")
    st = Store(os.environ["DLBENCH_TEST_POSTGRES_URL"])
    from dlbench.store.database import metadata

    metadata.drop_all(st.engine)
    metadata.create_all(st.engine)
    return st


def make_result(key_bs: int = 8, status: str = "ok") -> Result:
    cell = Cell("speed", "vision", "torch", "cpu", {"batch_size": key_bs, "variant": "eager"}, shown=("batch_size",))
    return Result(cell, status, [Measurement("throughput", "samples/s", [10.0, 11.0, 12.0, 10.5, 11.5, 10.8])],
                  {"accuracy": 0.5, "time_to_target_s": float("nan")}, {"curve": [{"epoch": 1, "x": 1.0}]},
                  {"note": "<b>"}, ModelInfo("s", 100, 200, "i", "t", "weights/a.npz"), {"python": "3"},
                  None if status == "ok" else "boom", "log", 1.0, 2.0)


def test_round_trip_keeps_samples_stats_and_model(store):
    rid = store.start_run("quick", {"cpu": "x"}, "abc123", {"cells": 1})
    r = make_result()
    store.add_result(rid, r)
    store.finish_run(rid)
    data = store.load_run(rid)
    assert data.run.suite == "quick" and data.run.git_commit == "abc123" and data.run.status == "finished"
    (back,) = data.results
    assert back.cell.key == r.cell.key and back.measurements[0].samples == r.measurements[0].samples
    assert back.measurements[0].stats.median == pytest.approx(r.measurements[0].stats.median)
    assert math.isnan(back.metrics["time_to_target_s"]) and back.metrics["accuracy"] == 0.5
    assert back.model == r.model and back.series == r.series and back.details == r.details


def test_each_result_is_committed_and_resume_knows_finished_cells(store):
    rid = store.start_run("quick", {}, None, {})
    store.add_result(rid, make_result(8))
    store.add_result(rid, make_result(16, status="crashed"))
    # a second connection sees both without the run being finished
    other = Store(store.url)
    assert len(other.results(rid)) == 2
    assert other.finished_keys(rid) == {make_result(8).cell.key}
    store.add_result(rid, make_result(16))  # re-measured cell replaces the crashed one
    assert {r.status for r in other.results(rid)} == {"ok"}


def test_pandas_api(store):
    from dlbench.results import load

    rid = store.start_run("quick", {}, None, {})
    store.add_result(rid, make_result())
    df = load(store, suite="quick")
    row = df[(df.kind == "measurement") & (df.metric == "throughput")].iloc[0]
    assert row.framework == "torch" and row.batch_size == 8 and row.value == pytest.approx(10.9)
    assert set(df[df.kind == "metric"].metric) >= {"accuracy"}


def test_unreachable_store_is_one_clear_line(tmp_path):
    with pytest.raises(StoreError, match=r"cannot open results store 'postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/x'.*check the --store URL"):
        Store("postgresql+psycopg://u:secret@127.0.0.1:1/x")
    with pytest.raises(StoreError, match="no run 42"):
        Store(f"sqlite:///{tmp_path / 'a.db'}").run_info(42)


def test_history_is_filtered_by_key_run_and_recency_in_sql(store):
    ids = []
    for _ in range(4):
        rid = store.start_run("quick", {}, None, {})
        for bs in (8, 16, 32):
            store.add_result(rid, make_result(bs))
        ids.append(rid)
    key8, key16 = make_result(8).cell.key, make_result(16).cell.key
    assert {(p["key"], p["run_id"]) for p in store.history(measurement="throughput")} == {
        (make_result(bs).cell.key, r) for bs in (8, 16, 32) for r in ids}
    points = store.history(measurement="throughput", keys=[key8, key16], up_to_run=ids[2], limit_runs=2)
    assert sorted((p["key"], p["run_id"]) for p in points) == sorted(
        (k, r) for k in (key8, key16) for r in ids[1:3])
    assert [p["run_id"] for p in points] == sorted(p["run_id"] for p in points)  # oldest first
    assert store.history(keys=[]) == []
