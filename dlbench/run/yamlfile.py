"""Reading a YAML file that may be careless or hostile, into plain data or one line naming the file.

* The size is capped before parsing (:data:`MAX_BYTES`): a bigger file is refused unread.
* Bytes are decoded as UTF-8 (a BOM is allowed); anything else is refused with the offset.
* libyaml's C parser (``yaml.CSafeLoader``) where PyYAML was built with it, the pure-Python safe
  loader otherwise; only the safe YAML tags.
* A mapping that repeats a key is refused with the key and both lines (YAML would keep the last
  silently). Merge keys (``<<: *anchor``) still let a mapping override what it merges.
* Aliases are allowed (anchors and merges keep suites short) but bounded: before anything is
  composed, the event stream is scanned once and the document's size *with every alias expanded*
  is counted; over :data:`MAX_NODES` nodes ("billion laughs"), nesting deeper than
  :data:`MAX_DEPTH`, or an alias inside the node it names (a recursive structure) is refused.
  Python objects are then built from the document (shared, never copied), so memory stays
  linear in the file.

Every problem is one :class:`~dlbench.errors.SuiteError` line: ``<file> line N: <problem>; <fix>``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from dlbench.errors import SuiteError

MAX_BYTES = 1 << 20
"""Largest suite file read (1 MiB; the ready suites are a few KiB)."""
MAX_DEPTH = 32
"""Deepest nesting of lists and mappings (the ready suites nest 5 deep)."""
MAX_NODES = 100_000
"""Most nodes of a document, every alias counted as a copy of what it names."""

Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""The safe loader, libyaml's where available."""

_MERGE = "tag:yaml.org,2002:merge"


class Refused(yaml.MarkedYAMLError):
    """A YAML document that parses but that dlbench refuses (duplicate key, alias bomb, depth)."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(None, None, problem, mark)


class StrictLoader(Loader):  # type: ignore[misc, valid-type]
    """The safe loader, refusing a mapping that repeats a key."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the safe constructor says so below
                    continue
                if first is not key_node:
                    raise Refused(f"duplicate key {key!r} (first on line "
                                  f"{first.start_mark.line + 1}): keep one of them", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def read(path: Path) -> Any:
    """The data of the YAML file at ``path``, or :class:`SuiteError` naming the file and the fix."""
    return parse_text(_text(path), path)


def parse_text(text: str, path: Path | str) -> Any:
    """The data of YAML ``text`` (from ``path``: a file, or what else to name in an error), with
    the same limits and refusals as a suite file."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SuiteError(f"{path}: more than the {MAX_BYTES:,} bytes a suite may have; split it or shorten it")
    try:
        _check_shape(text)
        loader = StrictLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except Refused as exc:
        raise SuiteError(f"{path}{_line(exc)}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise SuiteError(f"{path}{_line(exc)}: not valid YAML ({_one_line(problem)}); fix the syntax") from None
    except (ValueError, OverflowError) as exc:  # a scalar the safe constructor cannot build
        raise SuiteError(f"{path}: not valid YAML ({_one_line(str(exc))}); fix the value") from None
    except (RecursionError, MemoryError):
        raise SuiteError(f"{path}: too large or too deeply nested to load; simplify the suite") from None


def _text(path: Path) -> str:
    """The file's text: a regular file of at most MAX_BYTES, UTF-8."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise SuiteError(f"{path} is a directory, not a suite file: give a .yaml file")
        if not stat.S_ISREG(st.st_mode):
            raise SuiteError(f"{path} is not a regular file: give a .yaml file")
        if st.st_size > MAX_BYTES:
            raise SuiteError(f"{path}: {st.st_size:,} bytes, more than the {MAX_BYTES:,} a suite may have; "
                             "split it or shorten it")
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SuiteError(f"suite file {path} does not exist: give a path to a .yaml file") from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read the suite file ({exc.strerror or exc}); check its permissions") from None
    if len(raw) > MAX_BYTES:  # it grew after the stat
        raise SuiteError(f"{path}: more than the {MAX_BYTES:,} bytes a suite may have; split it or shorten it")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x}); "
                         "save the file as UTF-8") from None


def _check_shape(text: str) -> None:
    """Scan the event stream: nesting depth, and the size of each document with aliases expanded."""
    parser = Loader(text)
    try:
        sizes: dict[str, int] = {}  # anchor -> nodes of what it names, expanded
        stack: list[list[Any]] = []  # open collections: [anchor, nodes so far]
        aliases = 0
        while parser.check_event():
            ev = parser.get_event()
            if isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                stack.append([ev.anchor, 1])
                if len(stack) > MAX_DEPTH:
                    raise Refused(f"nested more than {MAX_DEPTH} deep; flatten the suite",
                                  ev.start_mark)
                continue
            if isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                anchor, n = stack.pop()
                if anchor is not None:
                    sizes[anchor] = n
            elif isinstance(ev, yaml.ScalarEvent):
                n = 1
                if ev.anchor is not None:
                    sizes[ev.anchor] = 1
            elif isinstance(ev, yaml.AliasEvent):
                if any(anchor == ev.anchor for anchor, _ in stack):
                    raise Refused(f"alias *{ev.anchor} is inside the node it names "
                                  "(a recursive structure); remove it", ev.start_mark)
                n = sizes.get(ev.anchor or "", 1)  # an undefined alias: the composer says so
                aliases += 1
            else:
                continue
            if stack:
                stack[-1][1] += n
                n = stack[-1][1]
            if n > MAX_NODES:
                why = (" once its aliases are expanded; use fewer aliases of large anchors" if aliases
                       else "; split the suite")
                raise Refused(f"more than {MAX_NODES:,} values{why}", ev.start_mark)
    finally:
        parser.dispose()


def _line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f" line {mark.line + 1}" if mark is not None else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())
