"""Built-in reporters: terminal, json, markdown and html."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dlbench.api import hookimpl


@hookimpl
def dlbench_register_reporters(register: Callable[[Any], None]) -> None:
    from dlbench.api import HtmlReporter, JsonReporter, MarkdownReporter, TerminalReporter

    for reporter in (TerminalReporter(), JsonReporter(), MarkdownReporter(), HtmlReporter()):
        register(reporter)
