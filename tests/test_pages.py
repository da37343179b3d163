"""A child forked from a fork server maps and owns the server's resident pages before its cell,
as a spawned process owns what its imports touched (issue 15: forked first calls were 4-12 %
slower and resident peaks half of spawned ones before)."""

from __future__ import annotations

import json
import mmap
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlbench.run.pages import Run, _true_runs, populate, resident_pages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc and madvise")


def _rollup() -> dict[str, int]:
    lines = Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]
    return {k: int(v.split()[0]) * 1024 for k, v in (ln.split(":", 1) for ln in lines)}


def _in_child(fn) -> dict:
    """``fn()`` in a forked child; what it returned (JSON)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.write(w, json.dumps(fn()).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return json.loads(text)


def test_a_child_owns_the_anonymous_pages_and_maps_the_files_its_parent_had():
    buffer = np.ones(32 * 2**20 // 8)  # 32 MiB the parent wrote: copy-on-write in a child
    runs = resident_pages()
    base = buffer.__array_interface__["data"][0]
    assert any(r.write and r.start <= base + 2**20 and base + 31 * 2**20 <= r.start + r.length for r in runs)
    parent = _rollup()

    def child() -> dict:
        before = _rollup()
        done = populate(runs)
        return {"before": before, "after": _rollup(), "done": done.as_details()}

    seen = _in_child(child)
    if not seen["done"]["populated"]:
        pytest.skip(seen["done"]["populated_why_not"])  # a kernel before 5.14
    before, after = seen["before"], seen["after"]
    assert before["Shared_Dirty"] >= 32 * 2**20  # the buffer, still the parent's
    assert after["Private_Dirty"] - before["Private_Dirty"] >= 32 * 2**20  # now the child's own
    assert after["Rss"] >= 0.95 * parent["Rss"]  # the libraries' pages mapped again, as spawned
    assert seen["done"]["populated_mb"] >= 32
    del buffer


def test_pages_that_are_gone_are_skipped_and_nothing_at_all_is_said():
    area = mmap.mmap(-1, 4 * mmap.PAGESIZE)
    area.write(b"x" * len(area))
    runs = [r for r in resident_pages() if r.write][:3]
    assert runs
    gone = Run(start=2**46, length=mmap.PAGESIZE, write=True)  # nothing is mapped there
    done = populate([*runs, gone])
    if done.reason is None:
        assert done.failed == 1 and done.runs == 4 and done.bytes == sum(r.length for r in runs)
    only_gone = populate([gone])
    assert only_gone.bytes == 0 and only_gone.reason and "madvise" in only_gone.reason
    assert not only_gone.as_details()["populated"]
    assert populate([]).as_details()["populated"] is False
    area.close()


@given(st.lists(st.booleans(), max_size=200))
def test_true_runs_cover_exactly_the_true_indices(bits):
    mask = np.array(bits, dtype=bool)
    runs = _true_runs(mask)
    covered = [i for a, b in runs for i in range(a, b)]
    assert covered == [i for i, b in enumerate(bits) if b]
    assert all(a < b for a, b in runs) and all(b1 < a2 for (_, b1), (a2, _) in zip(runs, runs[1:], strict=False))
