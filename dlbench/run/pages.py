"""A forked child's memory made what a spawned process's is when its cell starts (Linux).

A spawned cell process imported its framework itself: every page the import touched is its own
and mapped when the cell begins. A child forked from a fork server is not there yet: the kernel
copies no page-table entries of the server's file mappings (the libraries' code; the child
faults them in again), and its anonymous memory is shared copy-on-write (the child copies a page
the first time it writes it, and Python writes reference counts everywhere). Left so, the child
pays those faults inside its first call (measured: first call 4-12 % slower than spawned) and
its resident peak leaves out the libraries (0.5x of spawned for TensorFlow and Keras).

So the server records, once after its preload, which of its pages are resident
(:func:`resident_pages`: ``/proc/self/smaps`` for the mappings that hold any, ``/proc/self/
pagemap`` for which pages), and each child, before its cell, populates them (:func:`populate`):
``MADV_POPULATE_READ`` maps file and shared pages, ``MADV_POPULATE_WRITE`` breaks copy-on-write
of the anonymous ones. Where the kernel lacks these (before 5.14) or ``/proc`` cannot be read,
nothing is populated and the cell's ``details["worker"]`` says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
from dataclasses import dataclass

import numpy as np

MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23
_PRESENT = np.uint64(1 << 63)
_FILE_OR_SHARED = np.uint64(1 << 61)
_SPECIAL = ("[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]")


@dataclass(frozen=True)
class Run:
    """Resident pages ``[start, start + length)`` of one mapping; ``write``: the process's own
    anonymous pages of a private writable mapping (copy-on-write in a child), else pages it maps
    only (file or shared pages, and read-only ones: a relocated library's, which nobody writes)."""

    start: int
    length: int
    write: bool


@dataclass(frozen=True)
class Populated:
    bytes: int
    runs: int
    failed: int
    reason: str | None = None
    """Why nothing was populated (None: it was)."""

    def as_details(self) -> dict[str, object]:
        if self.reason is not None:
            return {"populated": False, "populated_why_not": self.reason}
        return {"populated": True, "populated_mb": round(self.bytes / 2**20, 1), "populate_failed_runs": self.failed}


def resident_pages() -> list[Run]:
    """This process's resident pages, as runs (empty where ``/proc`` cannot tell)."""
    page = mmap.PAGESIZE
    runs: list[Run] = []
    try:
        mappings = _mappings_with_rss()
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    except OSError:
        return []
    try:
        for start, end, private_writable in mappings:
            n = (end - start) // page
            raw = os.pread(fd, n * 8, (start // page) * 8)
            entries = np.frombuffer(raw, dtype=np.uint64)
            present = (entries & _PRESENT) != 0
            anon = present & ((entries & _FILE_OR_SHARED) == 0) & private_writable
            for mask, write in ((anon, True), (present & ~anon, False)):
                runs.extend(Run(start + a * page, (b - a) * page, write) for a, b in _true_runs(mask))
    except OSError:
        return []
    finally:
        os.close(fd)
    return runs


def populate(runs: list[Run]) -> Populated:
    """Map and own ``runs`` in this process (a forked child): read-populate file and shared
    pages, write-populate anonymous ones. Runs that no longer exist are skipped."""
    if not runs:
        return Populated(0, 0, 0, "the server's resident pages are unknown (no /proc/self/pagemap)")
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return Populated(0, 0, 0, "no madvise")
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = failed = err = 0
    for run in runs:
        if madvise(run.start, run.length, MADV_POPULATE_WRITE if run.write else MADV_POPULATE_READ) == 0:
            done += run.length
        else:
            failed, err = failed + 1, ctypes.get_errno()
    if not done:  # a kernel before 5.14 knows no MADV_POPULATE_* (EINVAL)
        return Populated(0, len(runs), failed, f"madvise(MADV_POPULATE_*) failed: {os.strerror(err)}")
    return Populated(done, len(runs), failed)


def _mappings_with_rss() -> list[tuple[int, int, bool]]:
    """Readable mappings holding resident pages: (start, end, private and writable)."""
    out: list[tuple[int, int, bool]] = []
    current: tuple[int, int, bool] | None = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=5)
            if "-" in head[0] and len(head) >= 5:  # a mapping's line: range perms offset dev inode [path]
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                perms, path = head[1], head[5].strip() if len(head) > 5 else ""
                readable = perms[0] == "r" and path not in _SPECIAL and not path.startswith("/dev/")
                current = (lo, hi, perms[1] == "w" and perms[3] == "p") if readable else None
            elif current is not None and head[0] == "Rss:":
                with contextlib.suppress(ValueError):
                    if int(head[1]) > 0:
                        out.append(current)
                current = None
    return out


def _true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[a, b)`` index ranges where ``mask`` is True."""
    if not mask.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
