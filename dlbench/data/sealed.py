"""Derived files sealed with their digest: ``<file>.sha256`` beside ``<file>``.

What dlbench derives and later reuses without recomputing it (a task's feature cache, the trained
weights the accuracy and robustness scenarios reload) is sealed when it is written and checked
when it is reused: :func:`seal` writes the file's SHA-256 beside it, :func:`seal_state` says
whether the file still matches. A cache that fails is rebuilt; reused weights that fail are
refused (the cell fails with one line), since silently retraining would hide the tampering.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from dlbench.data.download import atomic_writer

SealState = Literal["ok", "missing", "unsealed", "mismatch"]
"""``ok``: the file matches its seal; ``missing``: no file; ``unsealed``: a file without a seal
(written before seals, or its writer died between the two); ``mismatch``: changed since sealed."""


def seal_path(path: Path) -> Path:
    """Where the seal of ``path`` lives: ``<name>.sha256`` beside it."""
    return Path(path).with_name(Path(path).name + ".sha256")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file as it is now (never memoised: a seal is checked against the bytes)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def seal(path: Path) -> str:
    """Write the SHA-256 of ``path`` beside it (atomically, in ``sha256sum`` format); returns it."""
    digest = file_sha256(path)
    with atomic_writer(seal_path(path)) as f:
        f.write(f"{digest}  {Path(path).name}\n".encode())
    return digest


def seal_state(path: Path) -> SealState:
    """Whether ``path`` still matches the digest written beside it when it was sealed."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        recorded = seal_path(path).read_text(encoding="utf-8").split()[0].lower()
    except (OSError, UnicodeDecodeError, IndexError):
        return "unsealed"
    return "ok" if file_sha256(path) == recorded else "mismatch"


__all__ = ["SealState", "file_sha256", "seal", "seal_path", "seal_state"]
