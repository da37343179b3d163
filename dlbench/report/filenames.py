"""Names never become paths: a file named after something a user or a file chose (a suite's
``name:``, an imported export's ``run.suite``, a reporter's extension) gets the name's
:func:`slug`, and :func:`output_file` keeps it inside its output folder.

A slug keeps ASCII letters, digits, ``.``, ``_`` and ``-`` (runs of anything else become one
``-``), never starts with a dot or dash, and is at most :data:`MAX_SLUG` characters. A name that
is already its own slug is kept as it is (``quick`` -> ``quick``); any other gets a digest of the
whole name appended, so two names with the same slug (``a/b``, ``a?b``) still get two files.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path

from dlbench.errors import DlbenchError

MAX_SLUG = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)),
                       *(f"LPT{i}" for i in range(10))})
"""Device names Windows refuses as a file name, with any extension."""


def slug(name: str, fallback: str = "suite") -> str:
    """A file-name-safe stem for ``name`` (``fallback`` when nothing of it is left)."""
    text = _UNSAFE.sub("-", unicodedata.normalize("NFKC", name))
    text = text.lstrip(".-")[:MAX_SLUG].rstrip(".-")
    if text.split(".", 1)[0].upper() in _RESERVED:
        text = ""
    if text and text == name:
        return text
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{text or fallback}-{digest}"


def output_file(folder: Path, name: str, extension: str) -> Path:
    """``folder/<slug of name>.<slug of extension>``, checked to lie directly in ``folder``."""
    path = Path(folder) / f"{slug(name)}.{slug(extension, 'out')}"
    if Path(os.path.abspath(path)).parent != Path(os.path.abspath(folder)):  # a bug must not write elsewhere
        raise DlbenchError(f"output file {path} would lie outside {folder} (a bug: report it)")
    return path
