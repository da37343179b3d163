"""The store refuses rather than corrupts: schema versions (Alembic), older stores migrated with a
backup, newer and foreign databases refused before anything is written; store errors while a run
writes are one line (StoreError, exit 2) and leave the run ``interrupted``, its results kept,
for ``--resume`` to continue.

Disk full is simulated by making the store's writes raise ``sqlite3.OperationalError("database
or disk is full")`` wrapped as SQLAlchemy raises it; read-only by opening the SQLite file with
``?mode=ro`` (tests run as root, whom chmod does not stop)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import OperationalError

from dlbench.cli.main import main
from dlbench.errors import StoreError
from dlbench.plugins import PluginConfig, get_plugins
from dlbench.result import Result
from dlbench.store import schema
from dlbench.store.database import Store
from tests.recording import recorded_session

PLUGINS = Path(__file__).resolve().parent / "fixtures" / "gate_plugins"


def _dump(path: Path) -> list[str]:
    """Every table and row (the file header's journal mode aside: connections switch it to WAL)."""
    with sqlite3.connect(path) as c:
        return list(c.iterdump())


def _tables(path: Path) -> set[str]:
    return set(inspect(create_engine(f"sqlite:///{path}")).get_table_names())


def test_a_fresh_store_is_at_the_newest_revision(tmp_path):
    st = Store(f"sqlite:///{tmp_path / 'r.db'}")
    assert schema.current(st.engine) == schema.head()
    assert not list(tmp_path.glob("r.db.bak-*"))  # nothing to back up


def test_the_revision_a_store_opens_at_without_alembic_is_alembics_head(tmp_path):
    assert schema.head() == schema.HEAD  # a new migration must move HEAD too
    st = Store(f"sqlite:///{tmp_path / 'r.db'}")
    assert schema.at_head(st.engine)
    with st.engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    assert not schema.at_head(st.engine)
    Store(f"sqlite:///{tmp_path / 'r.db'}")  # migrated again from 0001
    assert schema.at_head(st.engine) and schema.current(st.engine) == schema.HEAD


def test_a_foreign_database_is_refused_before_anything_is_written(tmp_path, capsys):
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO runs (name) VALUES ('theirs')")
    before = _dump(db)
    with pytest.raises(StoreError, match=r"not a dlbench results store: its table 'runs' lacks the columns"):
        Store(f"sqlite:///{db}")
    assert _tables(db) == {"runs"} and _dump(db) == before
    assert main(["history", "--store", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a dlbench results store" in err and "SELECT" not in err
    assert _tables(db) == {"runs"}


def test_a_newer_store_is_refused_in_one_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    st = Store(url)
    with st.engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    st.engine.dispose()
    with pytest.raises(StoreError, match=r"schema revision '9999_future', newer than this dlbench knows.*upgrade dlbench"):
        Store(url)
    assert main(["history", "--store", url]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_an_older_store_is_migrated_after_a_backup(tmp_path):
    db = tmp_path / "r.db"
    st = Store(f"sqlite:///{db}")
    rid = st.start_run("old", {}, None, {})
    st.add_result(rid, Result(_cells(tmp_path)[0]))
    with st.engine.begin() as c:  # the table set of a store written before the schema had a version
        c.execute(text("DROP TABLE alembic_version"))
        c.execute(text("DROP TABLE dlbench_meta"))
    st.engine.dispose()
    st = Store(f"sqlite:///{db}")
    assert schema.current(st.engine) == schema.head()
    (backup,) = tmp_path.glob("r.db.bak-unversioned-*")
    assert _tables(backup) == {"runs", "cells", "measurements", "models"}
    assert [r.status for r in st.results(rid)] == ["ok"]


def test_a_damaged_store_missing_a_column_is_refused_unchanged(tmp_path):
    db = tmp_path / "r.db"
    Store(f"sqlite:///{db}").engine.dispose()
    with sqlite3.connect(db) as c:
        c.execute("ALTER TABLE cells DROP COLUMN log_tail")
        c.execute("DROP TABLE alembic_version")
    before = _dump(db)
    with pytest.raises(StoreError, match=r"table 'cells' lacks the columns log_tail"):
        Store(f"sqlite:///{db}")
    assert _dump(db) == before


def test_a_read_only_store_reads_and_refuses_writes_in_one_line(tmp_path):
    db = tmp_path / "r.db"
    rw = Store(f"sqlite:///{db}")
    rid = rw.start_run("q", {}, None, {})
    rw.engine.dispose()
    ro = Store(f"sqlite:///file:{db}?mode=ro&uri=true")
    assert ro.run_info(rid).suite == "q"
    with pytest.raises(StoreError, match=r"cannot write the new run to results store .*: attempt to write a readonly database$"):
        ro.start_run("q", {}, None, {})


# -- a run whose store fails while it writes ----------------------------------------------------

SUITE = """
name: sweep
matrix:
  - scenario: scalability
    tasks: [labelled]
    frameworks: [steadyfw]
    params: {axis: batch_size, values: [[8, 16], [4, 8], [2, 4]]}
"""


def _session(tmp_path, store, log, resume=None):
    return recorded_session(tmp_path, SUITE, store, log, resume)


def _cells(tmp_path):
    return _session(tmp_path, None, []).suite.plan(get_plugins(PluginConfig(plugins_dirs=(str(PLUGINS),))))[0]


def test_disk_full_interrupts_the_run_keeping_its_results_and_resume_continues(tmp_path, monkeypatch):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    real = Store.add_result
    calls = []

    def full(self, run_id, r):
        calls.append(r.cell.key)
        if len(calls) == 2:
            with self._writing(f"the result of {r.cell.key}"):
                raise OperationalError("INSERT INTO cells ...", {}, sqlite3.OperationalError("database or disk is full"))
        return real(self, run_id, r)

    monkeypatch.setattr(Store, "add_result", full)
    log: list[str] = []
    s = _session(tmp_path, store, log)
    with pytest.raises(StoreError) as exc:
        s.run()
    msg = str(exc.value)
    assert msg.endswith(": database or disk is full") and "\n" not in msg and "INSERT" not in msg
    assert store.run_info(s.run_id).status == "interrupted"
    assert len(store.results(s.run_id)) == 1
    monkeypatch.setattr(Store, "add_result", real)

    log.clear()
    _session(tmp_path, store, log, resume=s.run_id).run()
    assert len(log) == 2  # the two cells not stored
    assert store.run_info(s.run_id).status == "finished" and len(store.results(s.run_id)) == 3


def test_an_output_dir_that_cannot_be_written_is_one_line_exit_2(tmp_path, capsys):
    """A read-only --output-dir, simulated by a file where the folder should be (root ignores
    chmod): the filesystem error is one line, exit 2, no traceback."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    st = Store(url)
    rid = st.start_run("q", {}, None, {})
    st.finish_run(rid)
    blocker = tmp_path / "out"
    blocker.write_text("a file, not a folder")
    code = main(["report", str(rid), "--store", url, "--output-dir", str(blocker / "sub"), "--format", "json"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: cannot write"), err


def test_a_locked_store_is_one_line(tmp_path, monkeypatch):
    """Another process holding the write lock past the busy timeout: one StoreError line."""
    db = tmp_path / "r.db"
    st = Store(f"sqlite:///{db}")
    holder = sqlite3.connect(db, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        quick = Store.__new__(Store)
        quick.url = st.url
        quick.engine = create_engine(f"sqlite:///{db}", connect_args={"timeout": 0.1})
        with pytest.raises(StoreError, match=r"cannot write the new run .*: database is locked$"):
            quick.start_run("q", {}, None, {})
    finally:
        holder.rollback()
        holder.close()
