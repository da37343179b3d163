"""The one exception root. Every message names the bad value, the valid choices and the fix."""

from __future__ import annotations

from collections.abc import Iterable


class DlbenchError(Exception):
    """A user-facing error: the CLI prints its message on one line, never a traceback."""


class PluginError(DlbenchError):
    """A plugin failed to load, registered a duplicate, or was asked for by an unknown name."""


class SuiteError(DlbenchError):
    """A suite file is malformed or names something that does not exist."""


class DatasetError(DlbenchError):
    """A dataset is missing, corrupt or cannot be downloaded."""


class CorruptDatasetError(DatasetError):
    """A dataset's files are there but fail their SHA-256: bad data is refused, and unlike a
    missing dataset (the cell is skipped) the cell fails, so the run exits non-zero."""


class StoreError(DlbenchError):
    """The results store cannot be reached or holds no such run."""


class UnsupportedError(DlbenchError):
    """A framework cannot run this cell (device, precision, variant or layer); the cell is skipped."""


def choices(values: Iterable[str]) -> str:
    """Format valid choices for an error message: ``a, b, c`` sorted."""
    vals = sorted(set(values))
    return ", ".join(vals) if vals else "(none registered)"


def unknown(kind: str, name: str, valid: Iterable[str], where: str = "", fix: str = "") -> str:
    """The standard message for an unknown name."""
    loc = f" in {where}" if where else ""
    msg = f"unknown {kind} {name!r}{loc}: choose one of {choices(valid)}"
    return f"{msg} ({fix})" if fix else msg
