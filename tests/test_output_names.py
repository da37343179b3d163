"""Names never become paths: whatever a suite's ``name:`` (or an imported export's ``run.suite``)
holds, the reports are written inside ``--output-dir``, under a slug of the name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli  # noqa: I001
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbench.cell import Cell
from dlbench.plugins import PluginConfig, get_plugins
from dlbench.report.filenames import MAX_SLUG, output_file, slug
from dlbench.result import Measurement, Result
from dlbench.run.reports import write_reports
from dlbench.store.database import Store
from dlbench.store.exchange import export_run

HOSTILE_NAMES = [
    "ABSOLUTE",  # replaced by an absolute path beside the output folder
    "../dotdot",
    "../../two-up",
    "a/../../b",
    "..\\..\\windows",
    "dir/sub/name",
    "",
    ".",
    "..",
    ".hidden",
    "-rf",
    "CON",
    "nul\x00byte",
    "new\nline\ttab",
    "x" * 5000,
    "ベンチマーク🚀",
    "~/home",
]


def _names(tmp_path: Path) -> list[str]:
    return [str(tmp_path / "work" / "abs") if n == "ABSOLUTE" else n for n in HOSTILE_NAMES]


def _result() -> Result:
    cell = Cell("speed", "vision", "torch", "cpu", {"mode": "infer", "batch_size": 1})
    return Result(cell, "ok", [Measurement("throughput", "samples/s", [10.0, 11.0, 12.0])],
                  duration=1.0)


def _files(folder: Path) -> set[Path]:
    return {Path(root) / f for root, _, files in os.walk(folder) for f in files}


def _assert_safe(stem: str) -> None:
    assert stem and len(stem) <= MAX_SLUG + 9
    assert not stem.startswith((".", "-"))
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in stem), stem


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_slug_is_one_safe_file_name(name: str) -> None:
    s = slug(name)
    _assert_safe(s)
    assert s not in (".", "..") and s.split(".")[0].upper() != "CON"


def test_plain_names_keep_their_name_and_look_alikes_stay_apart() -> None:
    assert slug("quick") == "quick" and slug("my_suite-2.1") == "my_suite-2.1"
    assert len({slug("a/b"), slug("a?b"), slug("a-b"), slug("a b")}) == 4
    assert slug("a/b").startswith("a-b-")


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=300), ext=st.text(max_size=20))
def test_any_name_gives_a_file_directly_inside_the_folder(tmp_path_factory: pytest.TempPathFactory,
                                                          name: str, ext: str) -> None:
    folder = tmp_path_factory.getbasetemp() / "slugs"
    folder.mkdir(exist_ok=True)
    path = output_file(folder, name, ext)
    assert path.parent == folder
    _assert_safe(path.stem)
    path.write_text("x")  # a name the filesystem accepts
    assert path.resolve().parent == folder.resolve()


def test_hostile_suite_names_write_reports_only_inside_the_output_folder(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store' / 'r.db'}")
    plugins = get_plugins(PluginConfig())
    out = tmp_path / "work" / "out"
    latest: set[Path] = set()
    for name in _names(tmp_path):
        rid = store.start_run(name, {}, None, {})
        store.add_result(rid, _result())
        store.finish_run(rid)
        written = write_reports(store, rid, plugins, out, ("html", "json", "markdown"))
        assert set(written) == {"html", "json", "markdown", "latest"}
        for path in written.values():
            assert path.is_file() and path.resolve().is_relative_to(out.resolve()), (name, path)
        assert written["html"].parent == out / f"run-{rid}"
        assert written["latest"].parent == out
        latest.add(written["latest"])
    assert len(latest) == len(HOSTILE_NAMES)  # no two names share the latest copy
    assert _files(tmp_path / "work") == _files(out)  # nothing beside or above the output folder
    assert not (tmp_path / "work" / "abs.html").exists()


def test_an_imported_run_suite_cannot_leave_the_output_folder_at_report(tmp_path: Path) -> None:
    """``dlbench import`` a file whose ``run.suite`` is a path, then ``dlbench report`` it."""
    source = Store(f"sqlite:///{tmp_path / 'src.db'}")
    rid = source.start_run("quick", {}, None, {})
    source.add_result(rid, _result())
    source.finish_run(rid)
    data = source.load_run(rid)
    url = f"sqlite:///{tmp_path / 'store' / 'r.db'}"
    out = tmp_path / "work" / "out"
    for i, suite in enumerate([str(tmp_path / "work" / "abs"), "../dotdot", "a/../../b"]):
        doc = export_run(data.run, data.results)
        doc["run"]["suite"] = suite
        file = tmp_path / f"export-{i}.json"
        file.write_text(json.dumps(doc))
        res = run_cli("import", str(file), "--store", url)
        assert res.returncode == 0, res.stderr
        res = run_cli("report", "latest", "--store", url, "--output-dir", str(out),
                      "--format", "html,json,markdown")
        assert res.returncode == 0, res.stderr
        assert "Traceback" not in res.stderr
    assert _files(tmp_path / "work") == _files(out)
    assert len(list(out.glob("*.html"))) == 3  # one latest copy per suite, all in the folder
    assert not (tmp_path / "work" / "abs.html").exists() and not (tmp_path / "work" / "dotdot.html").exists()
