"""Host memory of the cell's process."""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path


def peak_host_memory_mb() -> float:
    """Peak resident set size of this process so far, in MiB (framework imports included); since
    :func:`reset_peak_host_memory` where the kernel keeps a resettable peak (Linux ``VmHWM``)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text()
        line = next(ln for ln in status.splitlines() if ln.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def reset_peak_host_memory() -> bool:
    """Restart the peak at the current resident size (a warm worker, before each cell: the peak
    of one cell, not of every cell the process ran); False where the platform cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
