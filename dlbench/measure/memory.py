"""Host memory of the cell's process."""

from __future__ import annotations

import resource
import sys


def peak_host_memory_mb() -> float:
    """Peak resident set size of this process so far, in MiB (framework imports included)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
