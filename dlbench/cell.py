"""A cell: one concrete measurement (scenario x task x framework x device x parameters)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# Parameters shown first in a key, in this order; the rest follow sorted by name.
_KEY_FIRST = ("device", "variant", "precision")
_KEY_ABBREV = {"batch_size": "bs"}
_KEY_BARE = {"mode"}  # shown by value alone: train / infer


@dataclass(frozen=True)
class Cell:
    """One measurement. ``params`` holds every parameter after defaults are applied."""

    scenario: str
    task: str
    framework: str
    device: str = "cpu"
    params: dict[str, Any] = field(default_factory=dict)
    timeout: float = 600.0
    budget: dict[str, Any] = field(default_factory=dict)
    """Scenario budget (max_time, target_ci, min_samples...); not part of the key."""
    shown: tuple[str, ...] | None = None
    """Parameters named in the key (those the suite set); None shows every parameter."""

    @property
    def key(self) -> str:
        """Stable readable key, e.g. ``speed/vision/torch[cpu,compiled,fp32,bs=256,train]``."""
        parts = [self.device]
        p = dict(self.params)
        for k in _KEY_FIRST[1:]:
            if k in p:
                parts.append(str(p.pop(k)))
        if self.shown is not None:
            p = {k: v for k, v in p.items() if k in self.shown}
        for k in sorted(p):
            v = p[k]
            if v is None:
                continue
            if k in _KEY_BARE:
                parts.append(str(v))
            else:
                parts.append(f"{_KEY_ABBREV.get(k, k)}={_fmt(v)}")
        return f"{self.scenario}/{self.task}/{self.framework}[{','.join(parts)}]"

    @property
    def id(self) -> str:
        """Short hash of the key (file names, artifact folders)."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "task": self.task, "framework": self.framework,
                "device": self.device, "params": dict(self.params), "timeout": self.timeout,
                "budget": dict(self.budget),
                "shown": list(self.shown) if self.shown is not None else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        shown = d.get("shown")
        return cls(d["scenario"], d["task"], d["framework"], d.get("device", "cpu"),
                   dict(d.get("params", {})), float(d.get("timeout", 600.0)), dict(d.get("budget", {})),
                   tuple(shown) if shown is not None else None)

    def with_params(self, **kw: Any) -> Cell:
        shown = None if self.shown is None else tuple(dict.fromkeys((*self.shown, *kw)))
        return Cell(self.scenario, self.task, self.framework, self.device, {**self.params, **kw},
                    self.timeout, self.budget, shown)


def _fmt(v: Any) -> str:
    """A parameter value as the key shows it: a list or tuple (the same, as a JSON round trip
    makes one of the other) as its items joined by commas (``epsilons=0,8,16``; ``[8]`` shows
    as ``8``), an empty or nested one in brackets (``[]``, ``[[1,2],[4]]``), a dict as compact
    sorted JSON. (Lists were once joined by ``x``, like shapes: the store rewrites the keys of
    stores written then when it opens them, see :data:`dlbench.store.database.KEY_FORMAT`.)"""
    if isinstance(v, (list, tuple)) and v and not any(isinstance(x, (list, tuple)) for x in v):
        return ",".join(map(_fmt_item, v))
    return _fmt_item(v)


def _fmt_item(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return f"[{','.join(map(_fmt_item, v))}]"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return str(v)
