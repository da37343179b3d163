"""Results: measurements with raw samples and statistics; JSON round-trip across processes.

:class:`Stats` (the summary of a measurement's samples) lives in :mod:`dlbench.stats`, with the
statistics that compute it; it is importable from here too."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from dlbench.cell import Cell
from dlbench.stats import Stats, summarize

__all__ = ["FLAGS", "STATUSES", "Measurement", "ModelInfo", "Result", "Stats"]

STATUSES = ("ok", "failed", "skipped", "timeout", "crashed")

# Warnings a measurement carries in ``meta["flags"]``: every reporter shows them where the figure
# is shown, and compare/gate turn a flagged figure's verdict into ``inconclusive``.
FLAGS: dict[str, str] = {
    "contended": "other processes kept this process's threads waiting for a CPU in too many windows "
                 "(see meta['contention']): the figure is slower than the machine can do",
    "not_converged": "the CI target was not reached within the time budget",
    "drifting": "a step change among the cell's own windows (the machine or the workload changed mid-cell)",
    "inconsistent": "throughput and batch-1 latency of this cell disagree beyond their spread",
    "repeats_disagree": "the cell's process repeats differ beyond their within-process variance",
}


@dataclass
class Measurement:
    """One measured quantity of a cell, e.g. ``throughput`` in ``samples/s``."""

    name: str
    unit: str
    samples: list[float]
    stats: Stats | None = None
    higher_is_better: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stats is None and self.samples:
            self.stats = summarize(self.samples)

    @property
    def flags(self) -> list[str]:
        """Warnings on this figure (names in :data:`FLAGS`), in the order they were raised."""
        return list(self.meta.get("flags", []))

    def flag(self, name: str) -> None:
        """Raise a warning on this figure (idempotent)."""
        flags = self.meta.setdefault("flags", [])
        if name not in flags:
            flags.append(name)


@dataclass
class ModelInfo:
    """What the store keeps about a cell's model ("database for model parameters")."""

    spec_digest: str
    parameter_count: int
    flops_per_example: int
    initial_digest: str
    trained_digest: str | None = None
    artifact: str | None = None  # path of the trained weights (.npz), relative to the store's folder


@dataclass
class Result:
    """Everything one cell produced. ``series`` holds curves (learning curve, robustness curve);
    ``details`` holds tables (parity rows, corruption grid, audit checks)."""

    cell: Cell
    status: str = "ok"
    measurements: list[Measurement] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    model: ModelInfo | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    log_tail: str = ""
    started_at: float | None = None
    duration: float | None = None

    def measurement(self, name: str) -> Measurement | None:
        for m in self.measurements:
            if m.name == name:
                return m
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain values, field by field: ``dataclasses.asdict`` deep-copies every raw sample and
        nested detail, which was a third of ``dlbench report``'s time on 2,000 cells. Sample lists
        are copied (C speed); series, details and environment are copied one level deep (their
        values are JSON data the caller reads, never mutates)."""
        return {
            "cell": self.cell.to_dict(), "status": self.status,
            "measurements": [{"name": m.name, "unit": m.unit, "samples": list(m.samples),
                              "stats": asdict(m.stats) if m.stats is not None else None,
                              "higher_is_better": m.higher_is_better, "meta": dict(m.meta)}
                             for m in self.measurements],
            "metrics": dict(self.metrics), "series": dict(self.series), "details": dict(self.details),
            "model": asdict(self.model) if self.model is not None else None,
            "environment": dict(self.environment), "error": self.error, "log_tail": self.log_tail,
            "started_at": self.started_at, "duration": self.duration, "key": self.cell.key,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=_json_default, allow_nan=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        ms = []
        for m in d.get("measurements", []):
            stats = Stats(**m["stats"]) if m.get("stats") else None
            ms.append(Measurement(m["name"], m["unit"], list(m["samples"]), stats,
                                  m.get("higher_is_better", True), m.get("meta", {})))
        model = ModelInfo(**d["model"]) if d.get("model") else None
        return cls(Cell.from_dict(d["cell"]), d.get("status", "ok"), ms, dict(d.get("metrics", {})),
                   dict(d.get("series", {})), dict(d.get("details", {})), model,
                   dict(d.get("environment", {})), d.get("error"), d.get("log_tail", ""),
                   d.get("started_at"), d.get("duration"))

    @classmethod
    def from_json(cls, s: str) -> Result:
        return cls.from_dict(json.loads(s))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
