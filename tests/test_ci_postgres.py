"""``.ci/start-postgres.sh``: every call its own folder and free port; a server is stopped and its
folder removed once its owner exits; a folder the script did not make is never touched."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "start-postgres.sh"
pytestmark = pytest.mark.skipif(not (shutil.which("pg_ctl") or glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")),
                                reason="needs PostgreSQL installed (pg_ctl)")


def test_two_jobs_get_two_private_servers_stopped_with_their_owner(tmp_path: Path) -> None:
    psycopg = pytest.importorskip("psycopg")
    owner = subprocess.Popen(["sleep", "600"])
    foreign = tmp_path / "foreign"  # e.g. another job's server folder: never stopped or removed
    foreign.mkdir()
    (foreign / "postmaster.pid").write_text("1\n")
    urls: list[str] = []
    folders: list[Path] = []
    try:
        starts = [subprocess.Popen(["bash", str(SCRIPT), "--owner", str(owner.pid)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for _ in range(2)]  # at once
        outs = [p.communicate(timeout=300) for p in starts]
        assert [p.returncode for p in starts] == [0, 0], outs
        urls = [out.strip() for out, _ in outs]
        assert all(len(u.splitlines()) == 1 and u.startswith("postgresql+psycopg://dlbench@127.0.0.1:") for u in urls)
        assert urls[0] != urls[1]  # a port each
        folders = [Path(err.split("postgres: ", 1)[1].split(",", 1)[0]) for _, err in outs]
        assert folders[0] != folders[1] and all(f.is_dir() for f in folders)
        for url in urls:
            with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
                assert conn.execute("select 1").fetchone() == (1,)
        refused = subprocess.run(["bash", str(SCRIPT), "--stop", str(foreign)], capture_output=True, text=True)
        assert refused.returncode != 0 and "left alone" in refused.stderr
        assert (foreign / "postmaster.pid").is_file()
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 180  # the watchdogs poll every second; the machine may be busy
    while any(f.exists() for f in folders) and time.monotonic() < deadline:
        time.sleep(1)
    assert not any(f.exists() for f in folders)  # stopped and removed once the owner is gone
    for url in urls:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=5)
    assert os.path.isdir(foreign)
