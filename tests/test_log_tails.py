"""Log tails are capped in bytes and carry no ANSI or control characters (issue 13)."""

from __future__ import annotations

from conftest import run_cli  # noqa: I001

from dlbench.report.escape import clean_text
from dlbench.run.launch.base import TAIL_BYTES, tail, tail_file
from dlbench.store.database import Store

NOISE = """
name: noise
matrix:
  - scenario: accuracy
    tasks: [blobs]
    frameworks: [numpyfw]
    params: {behaviour: [noise], epochs: 1}
"""


def _clean(text: str) -> bool:
    return "\x1b" not in text and all(c in "\n\t" or c >= " " for c in text) and "\x7f" not in text


def test_clean_text_removes_ansi_and_control_characters():
    assert clean_text("\x1b[1;31mred\x1b[0m \x1b]0;title\x07ok\x07\x08\x0c\x00 \x9b2Jx\r\nnext\tcol") == "red ok x\nnext\tcol"


def test_tail_and_tail_file_are_capped_in_bytes(tmp_path):
    big = "é" * 5_000_000 + "\nlast\n"
    assert len(tail(big).encode()) <= TAIL_BYTES and tail(big).endswith("last")
    log = tmp_path / "cell.log"
    log.write_text("\x1b[32m" + "y" * 10_000_000 + "\x1b[0m\nend \x1b[1mbold\x1b[0m\n")
    t = tail_file(log)
    assert len(t.encode()) <= TAIL_BYTES and t.endswith("end bold") and _clean(t)
    assert tail_file(tmp_path / "missing.log") == ""


def test_a_cell_printing_10_mb_on_one_line_stores_a_small_clean_tail(tmp_path, plugin_dir):
    suite = tmp_path / "noise.yaml"
    suite.write_text(NOISE)
    db = tmp_path / "r.db"
    res = run_cli("--plugins-dir", str(plugin_dir), "run", str(suite), "--store", f"sqlite:///{db}",
                  "--output-dir", str(tmp_path / "out"), "--report", "json", cwd=tmp_path)
    assert res.returncode == 1, res.stderr + res.stdout  # the cell failed
    st = Store(f"sqlite:///{db}")
    (r,) = [r for r in st.results(st.latest_run_id("noise")) if r.cell.scenario != "canary"]
    assert r.status == "failed"
    assert "planted failure" in r.error and _clean(r.error)
    assert len(r.log_tail.encode()) <= TAIL_BYTES and _clean(r.log_tail)
    assert "last line done" in r.log_tail and "Traceback" in r.log_tail
    assert db.stat().st_size < 2_000_000  # not the 20 MB tail of before
    report = next((tmp_path / "out").rglob("report.json"))
    assert report.stat().st_size < 2_000_000
