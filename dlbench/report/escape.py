"""What an output format embeds is made inert for that format: one function per format, used by
every writer of it (the reporters, the gate's Markdown and JUnit XML, the terminal tables and
``dlbench list``).

- :func:`clean_text`: ANSI escape sequences and control characters removed (newlines and tabs
  kept); every other function starts from it. Stored error texts and log tails go through it too.
- Markdown (GitHub-flavoured): :func:`md_text` for text in a table cell, heading or list item
  (pipes, emphasis, links, HTML tags and entities escaped; one line); :func:`md_code` for a code
  span that no backtick in the text can close.
- JUnit XML: :func:`xml_text` for any text or attribute value (characters XML 1.0 forbids removed;
  ElementTree escapes the rest).
- Terminal: :func:`term_text` for a ``rich.text.Text`` (no markup is parsed there) and
  :func:`term_markup` for a string that rich parses as markup (a table cell, ``console.print``).
"""

from __future__ import annotations

import re

from rich.markup import escape as rich_escape

# ANSI escape sequences (CSI, OSC, two-character), then any other control character but \n and \t
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NOT_XML = re.compile("[\ud800-\udfff\ufffe\uffff]")
"""What XML 1.0 forbids besides the control characters: lone surrogates, U+FFFE and U+FFFF."""
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
"""Characters that start Markdown syntax inline (emphasis, code spans, links and images, table
cells, strikethrough); escaped with a backslash, which CommonMark allows before any ASCII
punctuation. HTML tags and autolinks (``<...>``) are made text by the entities for ``<`` and ``>``."""
_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """``text`` without ANSI escape sequences and control characters (newlines and tabs kept;
    a carriage return ends a line)."""
    text = _ANSI.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _CONTROL.sub("", text)


def one_line(text: str) -> str:
    """:func:`clean_text` on one line: newlines, tabs and runs of white space become one space."""
    return _SPACES.sub(" ", clean_text(text)).strip()


# -- Markdown ----------------------------------------------------------------------------------
def md_text(text: str) -> str:
    """``text`` as inert GitHub-flavoured Markdown on one line (a table cell, heading, list item):
    HTML tags and entities become text (``&``, ``<``, ``>`` as entities), and no pipe, emphasis,
    code span, link or image can start (each marker is backslash-escaped)."""
    out = one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", out)


def md_code(text: str, *, in_table: bool = False) -> str:
    """``text`` as one Markdown code span: delimited by more backticks than any run inside it
    (padded with a space where it starts or ends with one), on one line; ``in_table`` also escapes
    pipes, which split a GFM table cell even inside a code span."""
    body = one_line(text)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    if body.startswith("`") or body.endswith("`"):
        body = f" {body} "
    if in_table:
        body = body.replace("|", "\\|")
    return f"{fence}{body}{fence}" if body else "` `"


# -- XML ---------------------------------------------------------------------------------------
def xml_text(text: str) -> str:
    """``text`` with only characters XML 1.0 allows (control characters, ANSI sequences, lone
    surrogates, U+FFFE/U+FFFF removed), for ElementTree to escape as text or attribute value."""
    return _NOT_XML.sub("", clean_text(text))


# -- terminal ----------------------------------------------------------------------------------
def term_text(text: str) -> str:
    """``text`` for a ``rich.text.Text`` or a plain print: no ANSI or control sequence reaches the
    terminal (newlines and tabs kept)."""
    return clean_text(text)


def term_markup(text: str) -> str:
    """``text`` inside a string rich parses as markup: control sequences removed and every
    ``[tag]`` escaped, so it shows as written (``[/]`` or ``[bold]`` included)."""
    return rich_escape(clean_text(text))
