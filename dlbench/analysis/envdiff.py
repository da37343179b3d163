"""Differences between two environment fingerprints that can explain a change in numbers.

The fingerprint is a nested dict (whatever ``dlbench.measure`` records); it is flattened to dotted
keys (``versions.numpy``, ``cpu.model``, ``gpu.0.name``) and every key whose value differs is
reported, important ones (Python, package versions, CPU, GPU, OS, thread settings)
first. Volatile entries (times, process ids, free memory, load, host name) and the fingerprint's
``digest`` (a hash of the rest) are ignored.
"""

from __future__ import annotations

import re
from typing import Any

_VOLATILE = re.compile(
    r"(^|\.)(time|timestamp|date|datetime|started_at|finished_at|pid|uptime|load|loadavg|"
    r"available|free|used|percent|hostname|node|user|cwd|boot_time|digest)($|\.|_)",
    re.IGNORECASE,
)
_IMPORTANT = re.compile(
    r"^versions\.|python|framework|cuda|cudnn|driver|"
    r"cpu|gpu|device|processor|model|brand|platform|system|release|os|threads|blas|mkl|openblas",
    re.IGNORECASE,
)
"""Keys shown first: every package version (``versions.*``: dlbench's dependencies and those the
framework plugins declare), Python, the machine and the thread settings."""


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists to ``{"a.b.0": value}``."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1] if prefix else ""] = list(d) if isinstance(d, tuple) else d
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "(none)"
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def environment_diff(env_a: dict[str, Any] | None, env_b: dict[str, Any] | None) -> list[str]:
    """One warning line per differing entry, e.g. ``frameworks.torch: 2.12.0 -> 2.13.0``;
    empty when the environments match (or one of them is unknown: then one line saying so)."""
    if not env_a or not env_b:
        if env_a or env_b:
            return ["environment of one run is unknown: differences cannot be checked"]
        return []
    fa, fb = flatten(env_a), flatten(env_b)
    lines: list[tuple[int, str]] = []
    for k in sorted(set(fa) | set(fb)):
        if _VOLATILE.search(k):
            continue
        va, vb = fa.get(k), fb.get(k)
        if va == vb:
            continue
        rank = 0 if _IMPORTANT.search(k) else 1
        if k not in fa:
            lines.append((rank, f"{k}: only in head ({_fmt(vb)})"))
        elif k not in fb:
            lines.append((rank, f"{k}: only in base ({_fmt(va)})"))
        else:
            lines.append((rank, f"{k}: {_fmt(va)} -> {_fmt(vb)}"))
    return [text for _, text in sorted(lines, key=lambda t: t[0])]
