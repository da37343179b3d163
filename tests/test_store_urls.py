"""Store URLs in messages never show any part of a password, whatever characters it holds."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dlbench.errors import StoreError
from dlbench.store.database import Store
from dlbench.store.urls import check_url, redact_url

# printable passwords, the URL delimiters over-represented
PASSWORDS = st.text(st.sampled_from("@:/?#&%=+ ;aZ9.-_~!$") | st.characters(codec="utf-8", categories=("L", "N", "P", "S")),
                    min_size=1, max_size=24)
TAILS = st.sampled_from(["db.example:5432/bench", "127.0.0.1/bench?sslmode=require", "[::1]:5433/b", "h/db"])


@given(PASSWORDS, TAILS)
@example("p@ss", "h/db")
@example("a:b/c@d", "h/db")
@example("@", "h/db")
@example("x@h/db?password=", "h/db")
def test_a_raw_password_never_shows(pw: str, tail: str) -> None:
    url = f"postgresql+psycopg://bench:{pw}@{tail}"
    shown = redact_url(url)
    assert shown == f"postgresql+psycopg://bench:***@{tail}"
    if "@" in pw:  # ambiguous for SQLAlchemy: refused before connecting, and the message hides it too
        with pytest.raises(StoreError) as err:
            check_url(url)
        assert str(err.value).startswith(f"store URL {shown!r} holds more than one raw '@'")
        assert "percent-encode" in str(err.value)
    else:
        check_url(url)


@given(PASSWORDS, TAILS)
def test_a_percent_encoded_password_never_shows(pw: str, tail: str) -> None:
    enc = quote(pw, safe="")
    assert redact_url(f"mysql://u:{enc}@{tail}") == f"mysql://u:***@{tail}"
    check_url(f"mysql://u:{enc}@{tail}")  # unambiguous: accepted


@given(PASSWORDS)
def test_a_password_query_parameter_never_shows(pw: str) -> None:
    enc = quote(pw, safe="")
    url = f"postgresql://h/db?sslmode=require&password={enc}&application_name=x"
    assert redact_url(url) == "postgresql://h/db?sslmode=require&password=***&application_name=x"


@pytest.mark.parametrize("url", ["sqlite:///reports/dlbench.db", "sqlite:///a@b/c.db", "sqlite://",
                                 "postgresql://bench@h/db", "postgresql://h:5432/db"])
def test_urls_without_a_password_are_shown_as_written(url: str) -> None:
    assert redact_url(url) == url
    check_url(url)


@pytest.mark.parametrize("url", ["postgresql+psycopg://u:s3cr@t!x@127.0.0.1:9/none",
                                 "postgresql+psycopg://u:s3cr/t@x@127.0.0.1:9/none",
                                 "postgresql+psycopg://u:s3cr:t/x@127.0.0.1:9/none",
                                 "nosuchdialect://u:s3cr@t@h/db", "nosuchdialect://u:s3crtx@h/db"])
def test_store_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(StoreError) as err:
        Store(url)
    msg = str(err.value)
    assert "\n" not in msg and "***" in msg
    for part in ("s3cr", "t!x", "t@x", "t/x", "s3crtx"):
        assert part not in msg, msg
