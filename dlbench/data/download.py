"""Dataset download: atomic, verified, resumable by file (see :func:`fetch`).

Every file goes to a hidden temporary file beside its target, its SHA-256 is checked, and only
then is it moved in place with ``os.replace``, so a reader (or a killed fetch) never leaves a
half-written file under a dataset's name. It builds on :mod:`dlbench.data.registry` (what a
dataset is, where it lives, whether its files are valid); the registry never imports it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import IO, Any

from dlbench.data.registry import (
    DATA_DIR_ENV,
    DatasetInfo,
    DatasetStatus,
    FileEntry,
    is_writable,
    status,
)
from dlbench.errors import DatasetError

_CHUNK = 1 << 16
_USER_AGENT = "dlbench-data-fetch/0.1 (+https://pypi.org/project/dlbench)"


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
ProgressFn = Callable[[str, int], None]
"""``progress(event, n)``: ``("start", total_files)``, ``("bytes", n)``, ``("file", 1)``."""


def fetch(info: DatasetInfo, root: Path | None = None, progress: bool | ProgressFn | None = None,
          force: bool = False, workers: int = 8, retries: int = 3) -> DatasetStatus:
    """Download missing or corrupt files of ``info`` from upstream; returns the final status.

    Nothing is written when every file is already valid (unless ``force``). ``progress``: True
    shows a rich progress bar on stderr, None shows it when stderr is a terminal, a callable
    receives events instead. Raises DatasetError naming the file, the URL and the fix.
    """
    st = status(info, root)
    folder = st.root
    todo = [fe for fe in info.files if force or fe.path not in st.present]
    if not todo:
        return st
    no_url = [fe.path for fe in todo if not fe.url]
    if no_url:
        note = f" ({info.fetch_note})" if info.fetch_note else ""
        raise DatasetError(f"dataset {info.name!r}: {len(no_url)} file(s) have no upstream URL, "
                           f"e.g. {no_url[0]}{note}; set {DATA_DIR_ENV} to a folder holding it")
    for fe in todo:  # before anything is created or downloaded
        _safe_name(fe.path, f"dataset {info.name!r}: file path")
        if fe.archive_member:
            _safe_name(fe.archive_member, f"dataset {info.name!r}: archive member name")
    if not is_writable(folder):
        raise DatasetError(f"dataset {info.name!r}: cannot write to {folder} (read-only): "
                           f"set {DATA_DIR_ENV} to a writable folder and run: dlbench data fetch {info.name}")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _fetch_todo(info, folder, todo, progress, workers, retries)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when still empty: verified files stay
        raise
    final = status(info, root)
    if not final.ok:  # pragma: no cover - every file was verified before being moved in place
        raise DatasetError(f"dataset {info.name!r} still incomplete after fetch: {final.summary}")
    return final


def _fetch_todo(info: DatasetInfo, folder: Path, todo: list[FileEntry],
                progress: bool | ProgressFn | None, workers: int, retries: int) -> None:
    with _progress(info, progress) as report:
        report("start", len(todo))
        plain = [fe for fe in todo if not fe.archive_member]
        archives: dict[str, list[FileEntry]] = {}
        for fe in todo:
            if fe.archive_member:
                archives.setdefault(str(fe.url), []).append(fe)

        def one(fe: FileEntry) -> None:
            _download_verified(fe, folder, report, retries)
            report("file", 1)

        if plain:
            pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(plain))))
            try:
                for fut in as_completed([pool.submit(one, fe) for fe in plain]):
                    fut.result()  # the first failure stops the fetch
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        for url, members in archives.items():
            _fetch_archive(url, members, folder, report, retries)


def _open_url(url: str, retries: int) -> Any:
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    last: Exception | None = None
    for attempt in range(max(1, retries)):
        try:
            return urllib.request.urlopen(req, timeout=60)
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                raise DatasetError(f"cannot download {url}: HTTP {exc.code} {exc.reason} "
                                   f"(the upstream address may have moved; report it)") from exc
            last = exc
        except (urllib.error.URLError, OSError) as exc:
            if _unreachable(exc):  # offline: no retry can help, so none waits
                host = urllib.parse.urlsplit(url).hostname or url
                raise DatasetError(f"cannot download {url}: host {host!r} cannot be reached ({_reason(exc)}); "
                                   f"this machine looks offline: copy the dataset into a folder and set "
                                   f"{DATA_DIR_ENV} to it (dlbench data list shows what each needs)") from None
            last = exc
        if attempt + 1 < retries:
            time.sleep(min(2.0 ** attempt, 8.0) * 0.5)
    raise DatasetError(f"cannot download {url}: {last} (check the network or proxy settings, "
                       f"or set {DATA_DIR_ENV} to a folder holding the dataset)")


def _reason(exc: BaseException) -> BaseException:
    return exc.reason if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException) else exc


def _unreachable(exc: BaseException) -> bool:
    """The host's name does not resolve or the network is down: a failure that retrying in a
    few seconds does not fix (a timeout or a reset connection may be transient, and is retried)."""
    reason = _reason(exc)
    return isinstance(reason, socket.gaierror) or (
        isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH))


def _stream_to(url: str, out: IO[bytes], report: ProgressFn, retries: int) -> str:
    """Copy ``url`` into ``out``; returns the SHA-256 of what was written."""
    h = hashlib.sha256()
    with _open_url(url, retries) as resp:
        for chunk in iter(lambda: resp.read(_CHUNK), b""):
            out.write(chunk)
            h.update(chunk)
            report("bytes", len(chunk))
    return h.hexdigest()


def _temp_in(folder: Path, name: str) -> tuple[IO[bytes], Path]:
    """A hidden temporary file beside its target, with the mode a plain ``open`` would give."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{Path(name).name}.", suffix=".part")
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o666 & ~_UMASK)
    return os.fdopen(fd, "wb"), Path(tmp)


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[IO[bytes]]:
    """Write ``path`` atomically: a temporary file in the same folder, moved in place with
    ``os.replace`` only when the block succeeds (readers never see a partial file)."""
    path = Path(path)
    f, tmp = _temp_in(path.parent, path.name)
    try:
        with f:
            yield f
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _download_verified(fe: FileEntry, folder: Path, report: ProgressFn, retries: int) -> None:
    with atomic_writer(folder / fe.path) as out:
        digest = _stream_to(str(fe.url), out, report, retries)
        _check_digest(fe, digest, str(fe.url))  # raising here leaves the target untouched


def _fetch_archive(url: str, members: list[FileEntry], folder: Path, report: ProgressFn,
                   retries: int) -> None:
    """Download one zip (to a temporary file, removed afterwards) and extract ``members``.

    Nothing is extracted before the archive is checked: its digest (``archive_sha256``, when
    registered) first, then every member name (an absolute name, or one with ``..``, is refused),
    then every member is read into a hidden temporary file and its digest checked; only when all
    of them match are they moved in place."""
    f, tmp_zip = _temp_in(folder, "archive.zip")
    extracted: list[tuple[Path, Path]] = []
    try:
        with f:
            digest = _stream_to(url, f, report, retries)
        expected = {fe.archive_sha256.lower() for fe in members if fe.archive_sha256}
        if expected and expected != {digest}:
            raise DatasetError(f"downloaded archive {url}: digest mismatch (expected {min(expected)[:12]}..., "
                               f"got {digest[:12]}...); nothing was extracted: retry, or report a changed upstream")
        try:
            zf = zipfile.ZipFile(tmp_zip)
        except zipfile.BadZipFile as exc:
            raise DatasetError(f"{url} is not a valid zip archive ({exc}); retry, or report a moved upstream") from exc
        with zf:
            for info in zf.infolist():
                _safe_name(info.filename, f"member name in {url}")
            names = set(zf.namelist())
            for fe in members:
                member = str(fe.archive_member)
                if member not in names:
                    raise DatasetError(f"{url} holds no member {member!r} (needed for {fe.path}); "
                                       f"the upstream archive changed: report it")
                out, tmp = _temp_in((folder / fe.path).parent, fe.path)
                extracted.append((tmp, folder / fe.path))
                with out, zf.open(member) as src:
                    h = hashlib.sha256()
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                _check_digest(fe, h.hexdigest(), f"{url}!{member}")
        for tmp, target in extracted:  # every member verified: only now does any take its name
            os.replace(tmp, target)
            report("file", 1)
    finally:
        for tmp, _ in extracted:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        with contextlib.suppress(FileNotFoundError):
            tmp_zip.unlink()


def _safe_name(name: str, what: str) -> None:
    """Refuse a path that is absolute (``/x``, ``\\x``, ``C:x``) or climbs out (a ``..`` part)."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise DatasetError(f"{what} {name!r} is absolute or contains '..': refused (nothing was extracted; "
                           f"the archive or the dataset's registration is unsafe: report it)")


def _check_digest(fe: FileEntry, digest: str, source: str) -> None:
    if digest != fe.sha256.lower():
        raise DatasetError(f"downloaded {fe.path} from {source}: digest mismatch "
                           f"(expected {fe.sha256[:12]}..., got {digest[:12]}...); the download was "
                           f"corrupted or upstream changed: retry, or report it")


@contextlib.contextmanager
def _progress(info: DatasetInfo, progress: bool | ProgressFn | None) -> Any:
    if callable(progress):
        yield progress
        return
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if not show:
        yield lambda event, n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    lock = threading.Lock()
    received = [0]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("files, {task.fields[received]}"), TimeElapsedColumn(),
                  console=_stderr_console()) as bar:
        files = bar.add_task(f"fetch {info.name}", total=None, received="0 B")

        def report(event: str, n: int) -> None:
            with lock:
                if event == "start":
                    bar.update(files, total=n)
                elif event == "file":
                    bar.advance(files, n)
                elif event == "bytes":
                    received[0] += n
                    bar.update(files, received=_human_bytes(received[0]))

        yield report


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover
