"""Read-only commands create nothing, and ``--dry-run`` lists exactly the cells a run would run."""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli  # noqa: I001
from report_data import speed

from dlbench.report.base import RunInfo
from dlbench.store.exchange import export_run


def _tree(root: Path) -> list[str]:
    return sorted(str(Path(d, n).relative_to(root)) for d, dirs, files in os.walk(root) for n in dirs + files)


def test_dry_run_honours_select(tmp_path):
    every = run_cli("run", "quick", "--dry-run", cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    keys = every.stdout.split()
    pattern = "speed/*"
    wanted = [k for k in keys if fnmatch.fnmatchcase(k, pattern)]
    assert wanted and len(wanted) < len(keys)  # the pattern picks some cells, not all
    some = run_cli("run", "quick", "--dry-run", "--select", pattern, cwd=tmp_path)
    assert some.returncode == 0, some.stderr
    assert some.stdout.split() == wanted
    none = run_cli("run", "quick", "--dry-run", "--select", "no-such-cell*", cwd=tmp_path)
    assert none.returncode == 0 and none.stdout.split() == []
    assert _tree(tmp_path) == []  # a dry run stores nothing either


READ_ONLY = [("report",), ("report", "3"), ("export",), ("export", "latest", "-o", "x.json"), ("history",),
             ("compare", "1", "2"), ("gate", "quick", "--head", "1", "--baseline", "1")]


@pytest.mark.parametrize(("args", "store"), [(a, None) for a in READ_ONLY]
                         + [(a, "sqlite:///deep/er/r.db") for a in READ_ONLY[::3]])
def test_read_only_commands_on_a_missing_store_create_nothing(tmp_path, args, store):
    cmd = [*args] + ([] if store is None else ["--store", store])
    res = run_cli(*cmd, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    where = "reports/dlbench.db" if store is None else "deep/er/r.db"
    assert len(lines) == 1 and lines[0].startswith(f"error: there is no results store at {where} yet"), lines
    assert "make one with: dlbench run <suite>" in lines[0]
    assert _tree(tmp_path) == []  # no store folder, no store file, no report


def test_compare_of_two_exported_files_needs_no_store(tmp_path):
    rng = np.random.default_rng(0)
    for name, tput in (("base", 100.0), ("head", 101.0)):
        run = RunInfo(1, "s", 0.0, 1.0, None, {}, "finished", {})
        doc = export_run(run, [speed("numpy", "inference", 8, "eager", tput, rng)])
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    res = run_cli("compare", "base.json", "head.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert _tree(tmp_path) == ["base.json", "head.json"]
