"""Suites by name: the ready suites ship as package data (dlbench.suites) and resolve by name
wherever dlbench is installed; DLBENCH_SUITES_PATH adds folders searched first."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest

from dlbench.errors import SuiteError
from dlbench.run import suite as suites


def test_ready_suites_resolve_from_the_package() -> None:
    shipped = Path(str(importlib.resources.files("dlbench.suites")))
    assert suites.resolve("quick") == shipped / "quick.yaml"
    assert {"quick", "ci", "standard"} <= set(suites.available())


def test_suites_path_is_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir()
    other.mkdir()
    (mine / "quick.yaml").write_text("name: my-quick\nmatrix: []\n")
    (other / "nightly.yaml").write_text("name: nightly\nmatrix: []\n")
    monkeypatch.setenv("DLBENCH_SUITES_PATH", f"{mine}:{other}")
    assert suites.resolve("quick") == mine / "quick.yaml"  # the user's folder wins
    assert suites.resolve("nightly") == other / "nightly.yaml"
    assert {"nightly", "quick", "ci"} <= set(suites.available())


def test_unknown_suite_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DLBENCH_SUITES_PATH", raising=False)
    with pytest.raises(SuiteError, match=r"unknown suite 'nope': choose one of .*quick.*DLBENCH_SUITES_PATH"):
        suites.resolve("nope")
