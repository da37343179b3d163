"""Schema versions on PostgreSQL, as on SQLite (tests/test_store_errors.py): a fresh store is at
the newest revision, an older one is migrated, a newer and a foreign one are refused before
anything is written. PostgreSQL has transactional DDL, so a migration that fails half-way is
rolled back whole: the store is left as it was (SQLite's file backup is not needed there).

Each test gets a database of its own on the server of ``DLBENCH_TEST_POSTGRES_URL`` (set by
``.ci/start-postgres.sh`` in CI); without it these tests skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from dlbench.cell import Cell
from dlbench.errors import StoreError
from dlbench.result import Result
from dlbench.store import schema
from dlbench.store.database import Store

BASE = os.environ.get("DLBENCH_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not BASE, reason="no PostgreSQL server (set DLBENCH_TEST_POSTGRES_URL)")


@pytest.fixture
def pg_url() -> Iterator[str]:
    assert BASE is not None
    name = f"dlbench_mig_{uuid.uuid4().hex[:12]}"
    admin = create_engine(BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(BASE).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _result() -> Result:
    return Result(Cell("robustness", "vision", "torch", "cpu", {"epsilons": [0, 16]}))


def _dump(url: str) -> dict[str, list[tuple[object, ...]]]:
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            return {t: [tuple(r) for r in c.execute(text(f'SELECT * FROM "{t}" ORDER BY 1'))]
                    for t in sorted(inspect(eng).get_table_names())}
    finally:
        eng.dispose()


def test_a_fresh_store_is_at_the_newest_revision(pg_url):
    st = Store(pg_url)
    assert schema.current(st.engine) == schema.head()
    st.engine.dispose()


def test_an_older_store_is_migrated_keeping_its_results(pg_url):
    st = Store(pg_url)
    rid = st.start_run("old", {}, None, {})
    st.add_result(rid, _result())
    with st.engine.begin() as c:  # a store of revision 0001: keys in the old format, no mark
        c.execute(text("UPDATE cells SET key = replace(key, 'epsilons=0,16', 'epsilons=0x16')"))
        c.execute(text("DELETE FROM dlbench_meta WHERE name = 'key_format'"))
        c.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    st.engine.dispose()
    st = Store(pg_url)
    assert schema.current(st.engine) == schema.head()
    (r,) = st.results(rid)
    assert r.cell.key == _result().cell.key and "epsilons=0,16" in r.cell.key
    st.engine.dispose()


def test_a_failing_migration_leaves_the_store_as_it_was(pg_url, monkeypatch):
    st = Store(pg_url)
    st.add_result(st.start_run("old", {}, None, {}), _result())
    with st.engine.begin() as c:
        c.execute(text("UPDATE cells SET key = replace(key, 'epsilons=0,16', 'epsilons=0x16')"))
        c.execute(text("DELETE FROM dlbench_meta WHERE name = 'key_format'"))
        c.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    st.engine.dispose()
    before = _dump(pg_url)

    real = Cell.from_dict

    def half_way(d):  # the migration rewrites a key, then fails
        real(d)
        raise RuntimeError("planted failure in the middle of a migration")

    monkeypatch.setattr(Cell, "from_dict", staticmethod(half_way))
    with pytest.raises(Exception, match="planted failure"):
        Store(pg_url)
    assert _dump(pg_url) == before


def test_a_newer_store_is_refused(pg_url):
    st = Store(pg_url)
    with st.engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    st.engine.dispose()
    before = _dump(pg_url)
    with pytest.raises(StoreError, match=r"schema revision '9999_future', newer than this dlbench knows"):
        Store(pg_url)
    assert _dump(pg_url) == before


def test_a_foreign_database_is_refused_before_anything_is_written(pg_url):
    eng = create_engine(pg_url)
    with eng.begin() as c:
        c.execute(text("CREATE TABLE runs (id SERIAL PRIMARY KEY, name TEXT)"))
        c.execute(text("INSERT INTO runs (name) VALUES ('theirs')"))
    eng.dispose()
    before = _dump(pg_url)
    with pytest.raises(StoreError, match=r"not a dlbench results store: its table 'runs' lacks the columns"):
        Store(pg_url)
    assert _dump(pg_url) == before and set(before) == {"runs"}
