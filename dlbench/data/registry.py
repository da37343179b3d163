"""Dataset registry and verification (downloads: :mod:`dlbench.data.download`).

A plugin describes each dataset it needs with a :class:`DatasetInfo` (upstream address and
SHA-256 of every file, licence, citation) and registers it through the
``dlbench_register_datasets(register)`` hook. Files live in ``data_dir() / info.name / path``.

* :func:`status` / :func:`verify` / :func:`require` only read: the data folder may be read-only
  (a shared CI cache). Digests are memoised per process by ``(path, size, mtime)``.
* :func:`dlbench.data.download.fetch` downloads what is missing or corrupt
  from upstream into a temporary file in the same folder, checks its SHA-256 and moves it into
  place with ``os.replace`` (atomic: a reader never sees a half-written file). A zip archive is
  downloaded once per fetch; its digest, its member names and the digests of the members the
  dataset needs are all checked before any member takes its name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlbench.errors import CorruptDatasetError, DatasetError

DATA_DIR_ENV = "DLBENCH_DATA_DIR"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset.

    ``path`` is relative to the dataset folder; ``sha256`` is the digest of that file as stored
    (for an archive member: of the *extracted* member). ``url`` is the upstream address; when it
    points at a zip archive, ``archive_member`` names the member to extract and ``archive_sha256``
    (when known) is the digest of the whole archive, checked before anything in it is read.
    """

    path: str
    sha256: str
    url: str | None = None
    archive_member: str | None = None
    archive_sha256: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: what it is, where it comes from, how to check it."""

    name: str
    description: str
    files: tuple[FileEntry, ...]
    licence: str = ""
    citation: str = ""
    homepage: str = ""
    size: str = ""
    """Approximate size on disk, for humans (``"1.6 MB"``)."""
    redistributable: bool = False
    """Whether the licence allows shipping the files (dlbench always downloads them anyway)."""
    fetch_note: str = ""
    """Shown by ``dlbench data list`` and in errors when files have no upstream URL."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "files": len(self.files),
                "licence": self.licence, "citation": self.citation, "homepage": self.homepage,
                "size": self.size, "redistributable": self.redistributable,
                "fetch_note": self.fetch_note}


@dataclass
class DatasetStatus:
    """Which files of a dataset are present and valid, missing, or corrupt."""

    info: DatasetInfo = field(repr=False)
    root: Path
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    verified: bool = True
    """False when only existence was checked (``status(..., verify=False)``)."""

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt

    @property
    def state(self) -> str:
        """``ok``, ``missing`` (nothing there), ``partial`` or ``corrupt``."""
        if self.corrupt:
            return "corrupt"
        if not self.missing:
            return "ok"
        return "missing" if not self.present else "partial"

    def problems(self) -> list[str]:
        out = [f"{self.info.name}: missing {p}" for p in self.missing]
        out += [f"{self.info.name}: corrupt file {p}: digest mismatch" for p in self.corrupt]
        return out

    @property
    def summary(self) -> str:
        """What is wrong, in a few words: ``missing 3 files (a, b, c)``, ``corrupt file x: ...``."""
        parts = []
        if self.missing:
            n = len(self.missing)
            shown = ", ".join(self.missing[:3]) + (", ..." if n > 3 else "")
            parts.append(f"missing {n} file{'s' if n != 1 else ''} ({shown})")
        if self.corrupt:
            n = len(self.corrupt)
            if n == 1:
                parts.append(f"corrupt file {self.corrupt[0]}: digest mismatch")
            else:
                shown = ", ".join(self.corrupt[:3]) + (", ..." if n > 3 else "")
                parts.append(f"{n} corrupt files ({shown}): digest mismatch")
        return "; ".join(parts) if parts else "ok"


# ---------------------------------------------------------------------------------------------
# Locations
# ---------------------------------------------------------------------------------------------


def data_dir() -> Path:
    """The dataset cache: ``$DLBENCH_DATA_DIR``, else ``<user cache dir>/dlbench/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dlbench")) / "data"


def dataset_dir(info: DatasetInfo, root: Path | None = None) -> Path:
    """The folder holding one dataset's files."""
    return (Path(root) if root is not None else data_dir()) / info.name


def is_writable(path: Path) -> bool:
    """Whether ``path`` (or, if it does not exist yet, its nearest existing parent) is writable."""
    p = Path(path)
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
        return False
    # root passes access() checks on a folder without write bits: honour the bits anyway, so a
    # cache made read-only on purpose (a shared CI copy) is never written to.
    return bool(p.stat().st_mode & 0o222) if _is_root() else True


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def derived_dir(info: DatasetInfo, root: Path | None = None) -> Path:
    """A writable folder for files derived from a dataset (feature caches), created on demand.

    ``<dataset folder>/_derived`` when the data folder is writable; otherwise (a read-only shared
    cache) ``<user cache dir>/dlbench/derived/<name>``, and the system temp folder as last resort.
    """
    import platformdirs

    candidates = [dataset_dir(info, root) / "_derived",
                  Path(platformdirs.user_cache_dir("dlbench")) / "derived" / info.name,
                  Path(tempfile.gettempdir()) / f"dlbench-{_uid()}" / "derived" / info.name]
    for c in candidates:
        if is_writable(c):
            try:
                c.mkdir(parents=True, exist_ok=True)
                return c
            except OSError:
                continue
    raise DatasetError(f"no writable folder for derived files of dataset {info.name!r} "
                       f"(tried {', '.join(map(str, candidates))}): set {DATA_DIR_ENV} to a writable folder")


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "user"


# ---------------------------------------------------------------------------------------------
# Digests and verification (read-only)
# ---------------------------------------------------------------------------------------------

_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, memoised per process by ``(path, size, mtime)``."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    with _DIGESTS_LOCK:
        cached = _DIGESTS.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _DIGESTS_LOCK:
        _DIGESTS[key] = digest
    return digest


def status(info: DatasetInfo, root: Path | None = None, verify: bool = True) -> DatasetStatus:
    """Check every file of ``info`` (digests too unless ``verify=False``); never writes."""
    folder = dataset_dir(info, root)
    st = DatasetStatus(info, folder, verified=verify)
    for fe in info.files:
        p = folder / fe.path
        if not p.is_file():
            st.missing.append(fe.path)
        elif verify and sha256_file(p) != fe.sha256.lower():
            st.corrupt.append(fe.path)
        else:
            st.present.append(fe.path)
    return st


def verify(info: DatasetInfo, root: Path | None = None) -> list[str]:
    """Problems with a dataset, one line each (empty: every file present with the right digest)."""
    return status(info, root).problems()


def fix_hint(info: DatasetInfo) -> str:
    """How to get a dataset: the fetch command and the cache variable."""
    return f"run: dlbench data fetch {info.name}, or set {DATA_DIR_ENV} to a folder holding it"


def require(info: DatasetInfo, root: Path | None = None) -> Path:
    """The dataset's folder if every file is present and valid; else a one-line DatasetError
    (:class:`CorruptDatasetError` when a file fails its digest)."""
    st = status(info, root)
    if st.ok:
        return st.root
    raise (CorruptDatasetError if st.corrupt else DatasetError)(f"dataset {info.name!r} in {st.root}: {st.summary} ({fix_hint(info)})")


def read_sha256sums(text: str, prefix: str = "") -> dict[str, str]:
    """Parse ``sha256sum`` output (``<digest>  <path>``) into ``{path: digest}``.

    Paths lose a leading ``./`` and, when given, ``prefix`` (only paths under it are kept).
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, path = line.partition(" ")
        path = path.strip().lstrip("*")
        path = path[2:] if path.startswith("./") else path
        if prefix:
            if not path.startswith(prefix):
                continue
            path = path[len(prefix):]
        out[path] = digest.lower()
    return out


# ---------------------------------------------------------------------------------------------
# Helpers for plugins and the CLI
# ---------------------------------------------------------------------------------------------


def files_from_sums(sums: Mapping[str, str], url: Callable[[str], str | None] | str | None = None,
                    archive_member: Callable[[str], str | None] | None = None) -> tuple[FileEntry, ...]:
    """Build FileEntries from ``{path: digest}``; ``url`` is a callable of the path or a
    ``str.format`` template with ``{path}`` and ``{name}`` (the file name)."""
    out = []
    for path in sorted(sums):
        if callable(url):
            u = url(path)
        elif isinstance(url, str):
            u = url.format(path=path, name=Path(path).name)
        else:
            u = None
        member = archive_member(path) if archive_member else None
        out.append(FileEntry(path, sums[path], u, member))
    return tuple(out)


def copy_dataset(info: DatasetInfo, src_root: Path, dst_root: Path) -> None:
    """Copy a dataset's files between data folders (tests and offline mirrors)."""
    for fe in info.files:
        dst = dataset_dir(info, dst_root) / fe.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dataset_dir(info, src_root) / fe.path, dst)


__all__ = ["DATA_DIR_ENV", "DatasetInfo", "DatasetStatus", "FileEntry",
           "data_dir", "dataset_dir", "derived_dir", "files_from_sums", "fix_hint",
           "read_sha256sums", "require", "sha256_file", "status", "verify"]
