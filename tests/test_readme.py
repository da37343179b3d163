"""The README's two set-up commands stay true: CI runs the test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bash_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_readme_starts_with_two_setup_commands():
    first, second = bash_blocks()[:2]
    assert first.strip().endswith("dlbench run quick") and "constraints.txt" in first
    assert "pytest" in second and "constraints.txt" in second
    assert len(first.strip().splitlines()) == 1 and len(second.strip().splitlines()) == 1


def test_ci_runs_the_readme_test_command():
    second = bash_blocks()[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert second in ci


def test_quick_suite_report_path_is_where_the_readme_says():
    assert "reports/quick.html" in (ROOT / "README.md").read_text()
    assert (ROOT / "suites" / "quick.yaml").exists()
