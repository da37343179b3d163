"""The results store: SQLAlchemy schema and queries (SQLite file by default, any URL by --store).

Runs hold the suite, git commit and environment fingerprint; cells hold key, parameters, status,
error, metrics, curves and details; measurements hold summary statistics and raw samples; models
hold parameter count, FLOPs, weight digests and the path of the trained-weights artifact. Each
result is committed as soon as its cell ends.

A cell with ``repeats: k`` has one row per process (``details["repeat"]``); :meth:`Store.results`
merges them into one Result per cell (:func:`dlbench.measure.replicates.combine_results`), which
is what comparisons, reports and the pandas frame read. ``results(run_id, combine=False)`` gives
the row of every process.

``cells.key`` is the cell's key when it was stored; a store from before list parameters were
shown with commas (``epsilons=0,16``, once ``epsilons=0x16``) has its keys rewritten once, when
it is opened (:data:`KEY_FORMAT`, table ``dlbench_meta``), so old and new runs match.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from dlbench.cell import Cell
from dlbench.errors import StoreError
from dlbench.report.base import RunData, RunInfo
from dlbench.result import Measurement, ModelInfo, Result, Stats
from dlbench.store.liveness import mark_orphaned_runs
from dlbench.store.schema import upgrade
from dlbench.store.urls import DEFAULT_DIR, DEFAULT_URL, check_url, redact_url

metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("suite", String(200), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("status", String(20), nullable=False, default="running"),
    Column("git_commit", String(80)),
    Column("environment", JSON),
    Column("config", JSON),
)

cells = Table(
    "cells", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("key", String(400), index=True, nullable=False),
    Column("scenario", String(60)),
    Column("task", String(60)),
    Column("framework", String(60)),
    Column("device", String(20)),
    Column("params", JSON),
    Column("cell", JSON),
    Column("status", String(20), nullable=False),
    Column("error", Text),
    Column("log_tail", Text),
    Column("metrics", JSON),
    Column("series", JSON),
    Column("details", JSON),
    Column("environment", JSON),
    Column("started_at", Float),
    Column("duration", Float),
)

measurements = Table(
    "measurements", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cell_id", Integer, ForeignKey("cells.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("name", String(80), nullable=False),
    Column("unit", String(40)),
    Column("higher_is_better", Integer),
    Column("n", Integer),
    Column("median", Float),
    Column("mean", Float),
    Column("std", Float),
    Column("min", Float),
    Column("max", Float),
    Column("p90", Float),
    Column("p99", Float),
    Column("iqr", Float),
    Column("ci_low", Float),
    Column("ci_high", Float),
    Column("samples", JSON),
    Column("meta", JSON),
)

models = Table(
    "models", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cell_id", Integer, ForeignKey("cells.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("spec_digest", String(40)),
    Column("parameter_count", Integer),
    Column("flops_per_example", Integer),
    Column("initial_digest", String(80)),
    Column("trained_digest", String(80)),
    Column("artifact", String(400)),
)

# Facts about the store itself (``key_format``). Its own MetaData: a read-only store written
# before it existed still opens.
store_meta = Table(
    "dlbench_meta", MetaData(),
    Column("name", String(60), primary_key=True),
    Column("value", String(200)),
)
KEY_FORMAT = "2"
"""How ``cells.key`` renders list parameters: 2 joins items by commas (``epsilons=0,16``); stores
without the mark (format 1) joined them by ``x`` (``epsilons=0x16``) and are rewritten on opening."""

_STAT_FIELDS = ("n", "median", "mean", "std", "min", "max", "p90", "p99", "ci_low", "ci_high", "iqr")  # Stats order


def _clean(v: Any) -> Any:
    """JSON columns: NaN/inf become None (PostgreSQL's JSON rejects them)."""
    import math

    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return _clean(v.item())
    return v


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


class Store:
    """A results database reachable by SQLAlchemy URL."""

    def __init__(self, url: str = DEFAULT_URL, create: bool = True) -> None:
        """``create=False`` (the read-only commands): a SQLite store that does not exist yet is one
        StoreError line saying how to make one, and nothing (no folder, no file) is created."""
        self.url = url
        check_url(url)  # a password SQLAlchemy would cut never reaches a driver or a message
        if not create and (file := _sqlite_file(url)) is not None and not file.is_file():
            raise StoreError(f"there is no results store at {file} yet "
                             f"(make one with: dlbench run <suite> --store {redact_url(url)})")
        try:
            if create and (file := _sqlite_file(url)) is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = _engine(url)
            _create_tables(self.engine, f"results store {redact_url(url)!r}", _sqlite_file(url))
        except (SQLAlchemyError, OSError, ImportError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            reason = reason.replace(url, redact_url(url))  # "could not parse URL '<url>'"
            raise StoreError(f"cannot open results store {redact_url(url)!r}: {reason} "
                             f"(check the --store URL, that the server is up and its driver is installed)") from None
        mark_orphaned_runs(self.engine, runs)

    @property
    def folder(self) -> Path:
        """Where artifacts (trained weights, logs) live beside the database."""
        if self.url.startswith("sqlite:///") and self.url != "sqlite:///:memory:":
            return Path(self.url.removeprefix("sqlite:///")).expanduser().resolve().parent
        return DEFAULT_DIR.resolve()

    # -- writing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Store and filesystem errors while writing (disk full, read-only file, locked database)
        become one StoreError line with the driver's short reason, no SQL."""
        try:
            yield
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot write {what} to results store {redact_url(self.url)!r}: "
                             f"{write_reason(exc)}") from exc

    def start_run(self, suite: str, environment: dict[str, Any], git_commit: str | None,
                  config: dict[str, Any]) -> int:
        with self._writing("the new run"), self.engine.begin() as c:
            res = c.execute(insert(runs).values(suite=suite, started_at=time.time(), status="running",
                                                git_commit=git_commit, environment=_clean(environment),
                                                config=_clean(config)))
            return _new_id(res)

    def finish_run(self, run_id: int, status: str = "finished") -> None:
        with self._writing(f"run {run_id}'s status"), self.engine.begin() as c:
            c.execute(update(runs).where(runs.c.id == run_id).values(finished_at=time.time(), status=status))

    def add_result(self, run_id: int, r: Result) -> int:
        """Store one cell's result in its own transaction (committed when this returns)."""
        # measure.replicates imports SciPy: loaded when the first result is stored
        from dlbench.measure.replicates import repeat_index

        cell = r.cell
        with self._writing(f"the result of {cell.key}"), self.engine.begin() as c:
            # a re-measured cell (resume) replaces the earlier row of the same repeat in this run;
            # the other repeats of the cell are rows of their own
            earlier = c.execute(select(cells.c.id, cells.c.details).where(
                cells.c.run_id == run_id, cells.c.key == cell.key)).all()
            stale = [row[0] for row in earlier if _repeat(row[1]) == repeat_index(r)]
            if stale:
                c.execute(delete(measurements).where(measurements.c.cell_id.in_(stale)))
                c.execute(delete(models).where(models.c.cell_id.in_(stale)))
                c.execute(delete(cells).where(cells.c.id.in_(stale)))
            cid = _new_id(c.execute(insert(cells).values(
                run_id=run_id, key=cell.key, scenario=cell.scenario, task=cell.task,
                framework=cell.framework, device=cell.device, params=_clean(cell.params),
                cell=_clean(cell.to_dict()), status=r.status, error=r.error, log_tail=r.log_tail,
                metrics=_clean(r.metrics), series=_clean(r.series), details=_clean(r.details),
                environment=_clean(r.environment), started_at=r.started_at, duration=r.duration,
            )))
            for m in r.measurements:
                st = m.stats
                stats = {f: _clean(getattr(st, f)) for f in _STAT_FIELDS} if st else {}
                c.execute(insert(measurements).values(cell_id=cid, name=m.name, unit=m.unit,
                                                      higher_is_better=int(m.higher_is_better),
                                                      samples=_clean(m.samples), meta=_clean(m.meta), **stats))
            if r.model:
                c.execute(insert(models).values(cell_id=cid, **vars(r.model)))
        return cid

    # -- reading ---------------------------------------------------------------------------------
    def runs(self, suite: str | None = None, limit: int | None = None) -> list[RunInfo]:
        q = select(runs).order_by(runs.c.id.desc())
        if suite:
            q = q.where(runs.c.suite == suite)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as c:
            return [_run_info(row) for row in c.execute(q).mappings()]

    def run_info(self, run_id: int) -> RunInfo:
        with self.engine.connect() as c:
            row = c.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
        if row is None:
            known = [r.id for r in self.runs(limit=10)]
            raise StoreError(f"no run {run_id} in store {redact_url(self.url)!r} "
                             f"(latest runs: {', '.join(map(str, known)) or 'none'}; see dlbench history)")
        return _run_info(row)

    def latest_run_id(self, suite: str | None = None) -> int:
        found = self.runs(suite, limit=1)
        if not found:
            what = f" of suite {suite!r}" if suite else ""
            raise StoreError(f"no run{what} in store {redact_url(self.url)!r} yet (run: dlbench run <suite>)")
        return found[0].id

    def results(self, run_id: int, combine: bool = True) -> list[Result]:
        """A run's results, one per cell with process repeats merged (``combine=False``: one per
        stored process row, in the order they were stored)."""
        rows = self._rows(run_id)
        if not combine:
            return rows
        from dlbench.measure.replicates import combine_results

        return combine_results(rows)

    def _rows(self, run_id: int) -> list[Result]:
        with self.engine.connect() as c:
            cell_rows = list(c.execute(select(cells).where(cells.c.run_id == run_id).order_by(cells.c.id)).mappings())
            ids = [r["id"] for r in cell_rows]
            ms: dict[int, list[Measurement]] = {i: [] for i in ids}
            mi: dict[int, ModelInfo] = {}
            if ids:
                for m in c.execute(select(measurements).where(measurements.c.cell_id.in_(ids)).order_by(measurements.c.id)).mappings():
                    stats = Stats(int(m["n"]), *(_nan(m[f]) for f in _STAT_FIELDS[1:])) if m["n"] is not None else None
                    ms[m["cell_id"]].append(Measurement(m["name"], m["unit"], [_nan(x) for x in m["samples"] or []],
                                                        stats, bool(m["higher_is_better"]), m["meta"] or {}))
                for m in c.execute(select(models).where(models.c.cell_id.in_(ids))).mappings():
                    mi[m["cell_id"]] = ModelInfo(m["spec_digest"], m["parameter_count"], m["flops_per_example"],
                                                 m["initial_digest"], m["trained_digest"], m["artifact"])
        out = []
        for r in cell_rows:
            metrics = {k: _nan(v) for k, v in (r["metrics"] or {}).items()}
            out.append(Result(Cell.from_dict(r["cell"]), r["status"], ms[r["id"]], metrics, r["series"] or {},
                              r["details"] or {}, mi.get(r["id"]), r["environment"] or {}, r["error"],
                              r["log_tail"] or "", r["started_at"], r["duration"]))
        return out

    def load_run(self, run_id: int) -> RunData:
        return RunData(self.run_info(run_id), self.results(run_id))

    def finished_keys(self, run_id: int) -> set[str]:
        """Keys of cells that ended ``ok`` or ``skipped`` (``--resume`` does not redo them)."""
        with self.engine.connect() as c:
            q = select(cells.c.key).where(cells.c.run_id == run_id, cells.c.status.in_(("ok", "skipped")))
            return {row[0] for row in c.execute(q)}

    def finished_repeats(self, run_id: int) -> dict[str, set[int]]:
        """Per key, the repeats (0-based) that ended ``ok`` or ``skipped``; ``--resume`` runs only
        the others. A cell the parent skipped (not installed, no dataset) has one row without a
        repeat: it counts as repeat 0, and the session skips such a cell's other repeats too."""
        with self.engine.connect() as c:
            q = select(cells.c.key, cells.c.details).where(
                cells.c.run_id == run_id, cells.c.status.in_(("ok", "skipped")))
            out: dict[str, set[int]] = {}
            for key, details in c.execute(q):
                out.setdefault(key, set()).add(_repeat(details))
            return out

    def skipped_keys(self, run_id: int) -> set[str]:
        """Keys with a ``skipped`` row (a skip holds for every repeat of the cell)."""
        with self.engine.connect() as c:
            q = select(cells.c.key).where(cells.c.run_id == run_id, cells.c.status == "skipped")
            return {row[0] for row in c.execute(q)}

    def history(self, key_pattern: str = "%", measurement: str | None = None,
                keys: Collection[str] | None = None, up_to_run: int | None = None,
                limit_runs: int | None = None) -> list[dict[str, Any]]:
        """Per cell and run: the headline median (or metric) with commit and time, oldest first.
        Filtered in SQL: keys matching ``key_pattern`` (and in ``keys`` when given), runs up to
        ``up_to_run``, and of each key's runs only the newest ``limit_runs``."""
        on_cells: list[ColumnElement[bool]] = [cells.c.key.like(key_pattern)]
        if up_to_run is not None:
            on_cells.append(cells.c.run_id <= up_to_run)
        wanted: list[list[str] | None] = [None]
        if keys is not None:
            ks = sorted(set(keys))
            wanted = [ks[i:i + 500] for i in range(0, len(ks), 500)]  # bound parameters per statement
        rows: list[dict[str, Any]] = []
        with self.engine.connect() as c:
            for chunk in wanted:
                cond = on_cells if chunk is None else [*on_cells, cells.c.key.in_(chunk)]
                newest = func.dense_rank().over(partition_by=cells.c.key, order_by=cells.c.run_id.desc())
                q = (select(cells.c.key, cells.c.run_id, cells.c.status, cells.c.metrics, runs.c.git_commit,
                            runs.c.started_at, runs.c.suite, measurements.c.name, measurements.c.median,
                            measurements.c.ci_low, measurements.c.ci_high, cells.c.id.label("cell_id"),
                            newest.label("newest"))
                     .join(runs, runs.c.id == cells.c.run_id)
                     .outerjoin(measurements, measurements.c.cell_id == cells.c.id)
                     .where(*cond))
                if measurement:
                    q = q.where(measurements.c.name == measurement)
                sub = q.subquery()
                outer = select(*[col for col in sub.c if col.name not in ("newest", "cell_id")])
                if limit_runs is not None:
                    outer = outer.where(sub.c.newest <= limit_runs)
                q = outer.order_by(sub.c.run_id, sub.c.cell_id)
                rows.extend(dict(r) for r in c.execute(q).mappings())
        rows.sort(key=lambda r: r["run_id"])
        return self._merge_repeat_points(rows)

    def _merge_repeat_points(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One point per (cell, run, measurement): the rows of a run's process repeats become the
        merged figure (median and between-process CI, as :meth:`results` gives it)."""
        seen: dict[tuple[Any, Any, Any], int] = {}
        for r in rows:
            k = (r["key"], r["run_id"], r["name"])
            seen[k] = seen.get(k, 0) + 1
        repeated = {k for k, n in seen.items() if n > 1}
        if not repeated:
            return rows
        merged: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
        for run_id in sorted({k[1] for k in repeated}):
            for res in self.results(run_id):
                for m in res.measurements:
                    if (res.cell.key, run_id, m.name) in repeated and m.stats is not None:
                        merged[(res.cell.key, run_id, m.name)] = {
                            "status": res.status, "metrics": res.metrics, "median": m.stats.median,
                            "ci_low": m.stats.ci_low, "ci_high": m.stats.ci_high}
        out, done = [], set()
        for r in rows:
            k = (r["key"], r["run_id"], r["name"])
            if k not in repeated:
                out.append(r)
            elif k not in done:
                done.add(k)
                out.append({**r, **merged.get(k, {})})
        return out


BUSY_TIMEOUT_S = 60.0
"""How long an SQLite connection waits for another process's lock before it fails."""


def _engine(url: str) -> Engine:
    """The store's engine; for SQLite, every connection waits up to :data:`BUSY_TIMEOUT_S` for
    locks (``busy_timeout``) and the file uses write-ahead logging (``journal_mode=WAL``), so
    concurrent runs into one store read while another writes."""
    if not url.startswith("sqlite"):
        return create_engine(url, future=True)
    engine = create_engine(url, future=True, connect_args={"timeout": BUSY_TIMEOUT_S})
    memory = url in ("sqlite://", "sqlite:///:memory:")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if not memory:
                with contextlib.suppress(Exception):  # a read-only store keeps its journal mode
                    cur.execute("PRAGMA journal_mode = WAL")
        finally:
            cur.close()

    return engine


def _create_tables(engine: Engine, where: str = "results store", sqlite_file: Path | None = None,
                   attempts: int = 20) -> None:
    """Create or migrate the tables (:func:`dlbench.store.schema.upgrade`: Alembic revisions, in
    one transaction); two processes creating a fresh store at once both succeed (the loser of a
    race sees the tables and retries its check). A read-only store at an older revision opens
    unmigrated: reading its results still works."""
    for attempt in range(attempts):
        try:
            upgrade(engine, where, sqlite_file)
            return
        except (OperationalError, IntegrityError) as exc:  # IntegrityError: two stamped alembic_version
            text = str(exc).lower()
            if "readonly" in text or "read-only" in text:
                return
            if attempt == attempts - 1 or not ("already exists" in text or "locked" in text or "busy" in text
                                               or "unique constraint" in text):
                raise
            time.sleep(0.05 * (attempt + 1))


def write_reason(exc: BaseException) -> str:
    """The short reason of a database or filesystem error: the driver's first line, no SQL."""
    orig = getattr(exc, "orig", None)
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        text = str(orig if orig is not None else exc)
    line = text.splitlines()[0].strip() if text.strip() else type(exc).__name__
    return line.split("[SQL:")[0].strip()[:200]


def _sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (``file:`` URIs included); None for others."""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path.removeprefix("file:")).expanduser()


def _new_id(res: Any) -> int:
    key = res.inserted_primary_key
    assert key is not None
    return int(key[0])


def _repeat(details: Any) -> int:
    try:
        return int((details or {}).get("repeat", 0) or 0)
    except (TypeError, ValueError, AttributeError):
        return 0


def _run_info(row: Any) -> RunInfo:
    return RunInfo(row["id"], row["suite"], row["started_at"], row["finished_at"], row["git_commit"],
                   row["environment"] or {}, row["status"], row["config"] or {})

