"""Store URLs in messages: the password hidden, whatever it holds.

A careless user writes a password raw (``postgresql://me:p@ss/w:rd@db.host/bench``). SQLAlchemy's
parser ends a password at its first ``@`` and takes the rest for the host, database or query, so
a message made from the parsed URL, or the driver's "could not resolve host" error, would show
part of the password. A URL with more than one raw ``@`` after ``user:`` is therefore ambiguous:
:func:`redact_url` hides everything up to its last ``@`` (more than the password, perhaps, never
less), and :func:`check_url` refuses it before anything connects, naming the fix.

The default store (:data:`DEFAULT_URL`) is named here too, so that the command line can show it in
``--help`` without importing SQLAlchemy (:mod:`dlbench.store.database` takes 0.5 s to import).
"""

from __future__ import annotations

import re
from pathlib import Path

from dlbench.errors import StoreError

DEFAULT_DIR = Path("reports")
DEFAULT_URL = f"sqlite:///{DEFAULT_DIR / 'dlbench.db'}"
"""The store every command uses without ``--store`` (or ``DLBENCH_STORE``)."""

_HIDDEN = "***"
_PASSWORD_PARAM = re.compile(r"(?i)([?&;](?:password|passwd|pwd)=)[^&;#]*")


def _password_span(rest: str) -> tuple[int, int, bool] | None:
    """Where the password lies in ``rest`` (the URL after ``scheme://``) and whether the URL is
    ambiguous (more than one raw ``@`` after it); None without a password."""
    delims = [i for i in (rest.find(":"), rest.find("/"), rest.find("@")) if i >= 0]
    if not delims or rest[min(delims)] != ":" or "@" not in rest[min(delims):]:
        return None  # no ``user:`` before an ``@``: no password in the authority
    start = min(delims) + 1
    first, last = rest.index("@", start), rest.rindex("@")
    return start, last, first != last


def redact_url(url: str) -> str:
    """``url`` with every character of its password shown as ``***`` (``user:***@host``, and a
    ``password=`` query parameter likewise); a URL without one is returned unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    span = _password_span(rest)
    if span is not None:
        rest = rest[:span[0]] + _HIDDEN + rest[span[1]:]
    return scheme + sep + _PASSWORD_PARAM.sub(r"\g<1>" + _HIDDEN, rest)


def check_url(url: str) -> None:
    """A StoreError line, before anything connects, for an ambiguous URL (a password holding a
    raw ``@``: SQLAlchemy would hand the driver part of it as the host, database or query)."""
    scheme, sep, rest = url.partition("://")
    span = _password_span(rest) if sep else None
    if span is not None and span[2]:
        raise StoreError(f"store URL {redact_url(url)!r} holds more than one raw '@' after its user "
                         "name: percent-encode them in --store (@ as %40; a password's : and / as %3A, %2F)")


__all__ = ["DEFAULT_DIR", "DEFAULT_URL", "check_url", "redact_url"]
