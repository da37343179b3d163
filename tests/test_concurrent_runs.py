"""Runs are isolated in one store: logs per run, a fresh store created by many processes at
once, WAL and busy timeouts for SQLite (issue 13)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from dlbench.store.database import Store

TWO = """
name: {name}
matrix:
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {{epochs: [1, 2, 3]}}
"""


def _run(tmp_path, plugin_dir, name: str, db) -> subprocess.Popen[str]:
    suite = tmp_path / f"{name}.yaml"
    suite.write_text(TWO.format(name=name))
    env = {**os.environ, "BLOBS_MARK": name}
    return subprocess.Popen([sys.executable, "-m", "dlbench", "--plugins-dir", str(plugin_dir), "run",
                             str(suite), "--store", f"sqlite:///{db}", "--output-dir", str(tmp_path / f"out-{name}"),
                             "--report", "json"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_concurrent_runs_keep_their_own_logs(tmp_path, plugin_dir):
    db = tmp_path / "shared" / "r.db"
    procs = {name: _run(tmp_path, plugin_dir, name, db) for name in ("alpha", "beta")}
    for name, p in procs.items():
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, (name, out, err)
    st = Store(f"sqlite:///{db}")
    tails = 0
    for name in procs:
        run_id = st.latest_run_id(name)
        for r in st.results(run_id, combine=False):
            if r.cell.scenario == "canary":
                continue
            tails += 1
            assert f"mark {name} {r.cell.params['epochs']}" in r.log_tail, (name, r.log_tail)
            other = "beta" if name == "alpha" else "alpha"
            assert f"mark {other}" not in r.log_tail
            log = r.details["log_file"]
            assert os.path.dirname(log) == str(db.parent / "logs" / str(run_id))
    assert tails == 6
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


CREATE = """
import sys, time
from dlbench.store.database import Store
t = float(sys.argv[2])
while time.time() < t:
    time.sleep(0.001)
st = Store("sqlite:///" + sys.argv[1])
st.finish_run(st.start_run("s", {}, None, {}))
"""


def test_many_processes_create_one_fresh_store_at_once(tmp_path):
    import time

    db = tmp_path / "fresh" / "r.db"
    start = time.time() + 3.0  # every process has imported dlbench by then (roughly: a race either way)
    procs = [subprocess.Popen([sys.executable, "-c", CREATE, str(db), str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(12)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "already exists" not in err
    assert len(Store(f"sqlite:///{db}").runs()) == 12


def test_sqlite_connections_wait_for_locks():
    st = Store("sqlite:///:memory:")
    with st.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
