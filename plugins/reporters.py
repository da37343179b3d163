"""Built-in reporters: terminal, json, markdown and html."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dlbench


@dlbench.hookimpl
def dlbench_register_reporters(register: Callable[[Any], None]) -> None:
    from dlbench.report.html import HtmlReporter
    from dlbench.report.json_report import JsonReporter
    from dlbench.report.markdown import MarkdownReporter
    from dlbench.report.terminal import TerminalReporter

    for reporter in (TerminalReporter(), JsonReporter(), MarkdownReporter(), HtmlReporter()):
        register(reporter)
