"""What reporters read (a stored run, never live objects) and the Reporter contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dlbench.result import Result
from dlbench.scenarios.base import Scenario


@dataclass
class RunInfo:
    """One run as the store keeps it."""

    id: int
    suite: str
    started_at: float
    finished_at: float | None = None
    git_commit: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunData:
    """A run with all its results; ``baseline`` is an optional run to compare against;
    ``history`` maps cell keys to earlier (run id, commit, median) points for trend views;
    ``scenarios`` are the loaded scenario plugins by name, which give each result's headline and
    each leaderboard's columns (None: the installed plugins' scenarios)."""

    run: RunInfo
    results: list[Result]
    baseline: RunData | None = None
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    scenarios: Mapping[str, Scenario] | None = None


class Reporter(ABC):
    """Renders a stored run to text (terminal, json, html, markdown, junit...)."""

    name: ClassVar[str]
    extension: ClassVar[str]  # file extension, e.g. "html"; "" for terminal-only reporters
    description: ClassVar[str] = ""

    @abstractmethod
    def render(self, data: RunData) -> str:
        """The whole report as one string."""
