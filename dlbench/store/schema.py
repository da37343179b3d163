"""The store's schema version: Alembic revisions in :mod:`dlbench.store.migrations`, applied
programmatically when a store is opened.

- a fresh database gets every revision (the tables, then the key-format mark);
- a store of this dlbench at an older revision, or one from before the schema had a version
  (dlbench's tables, no ``alembic_version``), is migrated, a SQLite file after a backup copy
  (``<file>.bak-<revision>-<time>``); every migration runs in one transaction, so on PostgreSQL
  (transactional DDL) one that fails half-way leaves the store as it was
  (tests/test_store_migrations_pg.py);
- a store at a revision this dlbench does not know (a newer dlbench wrote it) is refused;
- a foreign database (a table of dlbench's names without dlbench's columns) is refused before
  anything is written.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config

from dlbench.errors import StoreError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD = "0002"
"""The newest revision in ``migrations/versions`` (a test checks it is Alembic's head): a store
already there opens without importing Alembic, which costs every read-only command 0.3 s."""

# the columns each table had at the baseline revision (what a store of dlbench holds at least)
BASELINE_COLUMNS = {
    "runs": {"id", "suite", "started_at", "finished_at", "status", "git_commit", "environment", "config"},
    "cells": {"id", "run_id", "key", "scenario", "task", "framework", "device", "params", "cell", "status",
              "error", "log_tail", "metrics", "series", "details", "environment", "started_at", "duration"},
    "measurements": {"id", "cell_id", "name", "unit", "higher_is_better", "n", "median", "mean", "std", "min",
                     "max", "p90", "p99", "iqr", "ci_low", "ci_high", "samples", "meta"},
    "models": {"id", "cell_id", "spec_digest", "parameter_count", "flops_per_example", "initial_digest",
               "trained_digest", "artifact"},
    "dlbench_meta": {"name", "value"},
}


def _config() -> Config:
    from alembic.config import Config  # only to migrate: see HEAD

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    """The newest revision this dlbench knows, as Alembic reads it from the scripts."""
    from alembic.script import ScriptDirectory

    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as c:
        return MigrationContext.configure(c).get_current_revision()


def check_foreign(engine: Engine, where: str) -> set[str]:
    """dlbench's tables present in the database; StoreError when one lacks dlbench's columns."""
    insp = inspect(engine)
    have = set(insp.get_table_names())
    for table, cols in BASELINE_COLUMNS.items():
        if table in have:
            found = {c["name"] for c in insp.get_columns(table)}
            missing = sorted(cols - found)
            if missing:
                raise StoreError(f"{where} is not a dlbench results store: its table {table!r} lacks the "
                                 f"columns {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                                 "(nothing was written; give dlbench a store of its own with --store)")
    return have & set(BASELINE_COLUMNS)


def at_head(engine: Engine) -> bool:
    """The store holds exactly :data:`HEAD` in ``alembic_version`` (read without Alembic)."""
    if not inspect(engine).has_table("alembic_version"):
        return False
    with engine.connect() as c:
        return [r[0] for r in c.execute(text("SELECT version_num FROM alembic_version"))] == [HEAD]


def upgrade(engine: Engine, where: str, sqlite_file: Path | None) -> None:
    """Bring the store to :func:`head` (see the module docstring); a no-op at head."""
    if at_head(engine):
        return
    from alembic import command
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    target = script.get_current_head()
    assert target is not None
    rev = current(engine)
    if rev == target:
        return
    if rev is not None:
        try:
            script.get_revision(rev)
        except Exception:  # noqa: BLE001 - alembic raises its own errors for an unknown revision
            raise StoreError(f"{where} has schema revision {rev!r}, newer than this dlbench knows "
                             f"(newest: {target!r}): upgrade dlbench to use it") from None
    tables = check_foreign(engine, where)
    if (rev is not None or tables) and sqlite_file is not None and sqlite_file.exists():
        backup = sqlite_file.with_name(f"{sqlite_file.name}.bak-{rev or 'unversioned'}-{int(time.time())}")
        shutil.copy2(sqlite_file, backup)
    cfg = _config()
    with engine.begin() as c:
        cfg.attributes["connection"] = c
        command.upgrade(cfg, target)
