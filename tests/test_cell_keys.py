"""List parameters in cell keys (``epsilons=0,16``, no longer ``epsilons=0x16``), and stores
written with the old key form still matched: comparisons, ``--resume`` and history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import text

from dlbench.analysis.compare import compare_runs
from dlbench.cell import Cell
from dlbench.result import Measurement, Result
from dlbench.store.database import KEY_FORMAT, Store
from tests.recording import recorded_session

PLUGINS = Path(__file__).resolve().parent / "fixtures" / "gate_plugins"


def test_lists_are_comma_separated_and_tuples_read_like_lists():
    c = Cell("robustness", "vision", "torch", params={"attack": "pgd", "epsilons": [0, 8, 16]})
    assert c.key == "robustness/vision/torch[cpu,attack=pgd,epsilons=0,8,16]"
    assert c.with_params(epsilons=(0, 8, 16)).key == c.key  # a JSON round trip makes tuples lists
    assert Cell.from_dict(c.to_dict()).key == c.key
    assert c.with_params(epsilons=[0.5, 1e-3]).key.endswith("epsilons=0.5,0.001]")


def test_list_keys_are_unambiguous():
    base = Cell("scalability", "vision", "torch")
    keys = {base.with_params(values=v).key for v in ([1, 2], "1x2", [[1, 2]], [[1], [2]], [12], [], [[]])}
    assert len(keys) == 7
    assert base.with_params(values=[[1, 2], [4]]).key.endswith("values=[[1,2],[4]]]")
    assert base.with_params(values=[[]]).key.endswith("values=[[]]]")
    assert base.with_params(values=[]).key.endswith("values=[]]")
    assert base.with_params(values={"a": [1, 2]}).key.endswith('values={"a":[1,2]}]')


# -- a store written with the old key form ------------------------------------------------------


def _old_store(url: str, old_keys: dict[str, str]) -> None:
    """Make the store at ``url`` look like one written before the comma form: its keys in the
    ``x`` form, no key-format mark and no schema version (``alembic_version``)."""
    st = Store(url)
    with st.engine.begin() as c:
        for new, old in old_keys.items():
            c.execute(text("UPDATE cells SET key = :old WHERE key = :new"), {"old": old, "new": new})
        c.execute(text("DROP TABLE dlbench_meta"))
        c.execute(text("DROP TABLE alembic_version"))
    with st.engine.connect() as c:
        assert set(old_keys.values()) <= {k for (k,) in c.execute(text("SELECT key FROM cells"))}
    st.engine.dispose()


def _robust(eps: list[int], acc: float) -> Result:
    cell = Cell("robustness", "vision", "torch", "cpu", {"attack": "fgsm", "epsilons": eps})
    rng = np.random.default_rng(0)
    correct = (rng.random(400) < acc).astype(float).tolist()
    return Result(cell, measurements=[Measurement("test_correct", "0/1", correct)], metrics={"accuracy": acc})


def test_old_stored_run_matches_a_new_run_in_compare_and_history(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    st = Store(url)
    old_id = st.start_run("rob", {}, None, {})
    st.add_result(old_id, _robust([0, 16], 0.9))
    st.finish_run(old_id)
    new_key = "robustness/vision/torch[cpu,attack=fgsm,epsilons=0,16]"
    _old_store(url, {new_key: "robustness/vision/torch[cpu,attack=fgsm,epsilons=0x16]"})

    st = Store(url)  # opening rewrites the stored keys, once
    with st.engine.connect() as c:
        assert [k for (k,) in c.execute(text("SELECT key FROM cells"))] == [new_key]
        assert c.execute(text("SELECT value FROM dlbench_meta WHERE name = 'key_format'")).scalar() == KEY_FORMAT
    new_id = st.start_run("rob", {}, None, {})
    st.add_result(new_id, _robust([0, 16], 0.9))
    cmp = compare_runs(st.results(old_id), st.results(new_id))
    assert {r.key for r in cmp.rows} == {new_key}
    assert not {r.verdict for r in cmp.rows} & {"missing", "new"}, [(r.verdict, r.reason) for r in cmp.rows]
    assert {(p["key"], p["run_id"]) for p in st.history("robustness/%")} == {(new_key, old_id), (new_key, new_id)}
    assert st.finished_keys(old_id) == {new_key}


def test_opening_a_current_store_rewrites_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    st = Store(url)
    rid = st.start_run("rob", {}, None, {})
    st.add_result(rid, _robust([0, 16], 0.9))
    with st.engine.begin() as c:  # a key the migration would change, were it to run again
        c.execute(text("UPDATE cells SET key = 'planted'"))
    assert Store(url).finished_keys(rid) == {"planted"}


# -- --resume of a run stored with the old key form ---------------------------------------------

SUITE = """
name: sweep
matrix:
  - scenario: scalability
    tasks: [labelled]
    frameworks: [steadyfw]
    params: {axis: batch_size, values: [[8, 16]]}
"""
NEW = "scalability/labelled/steadyfw[cpu,eager,fp32,axis=batch_size,values=8,16]"
OLD = "scalability/labelled/steadyfw[cpu,eager,fp32,axis=batch_size,values=8x16]"


def _session(tmp_path, store, log, resume=None):
    return recorded_session(tmp_path, SUITE, store, log, resume)


def test_resume_of_an_old_run_skips_its_finished_cell(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    log: list[str] = []
    run_id = _session(tmp_path, Store(url), log).run().run_id
    assert log == [NEW]
    _old_store(url, {NEW: OLD})

    store = Store(url)
    assert store.finished_repeats(run_id) == {NEW: {0}}
    log.clear()
    _session(tmp_path, store, log, resume=run_id).run()
    assert log == []
    assert [r.cell.key for r in store.results(run_id, combine=False)] == [NEW]


def test_resume_replaces_an_old_rows_failed_cell_instead_of_adding_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url)
    run_id = store.start_run("sweep", {}, None, {})
    cell = Cell("scalability", "labelled", "steadyfw", "cpu",
                {"variant": "eager", "precision": "fp32", "axis": "batch_size", "values": [8, 16]})
    store.add_result(run_id, Result(cell, status="crashed", error="killed"))
    _old_store(url, {cell.key: cell.key.replace("8,16", "8x16")})

    store = Store(url)
    store.add_result(run_id, Result(cell))
    assert [(r.cell.key, r.status) for r in store.results(run_id, combine=False)] == [(cell.key, "ok")]
