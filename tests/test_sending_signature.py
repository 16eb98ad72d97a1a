"""A signature the user wrote with its own "-- " line (or "--", with or without trailing spaces)
gets no second separator, in the text and the HTML body; one without gets the standard one; a
draft cancelled from the Outbox sheds the block either way."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from service.domain.compose import Draft, Sender, compose, signature_block
from service.usecases.sending.drafts import without_signature

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def bodies(sender: Sender, *, html: str | None = None) -> tuple[str, str | None]:
    raw = compose(Draft(to=("b@example.test",), text="Hello", html=html), sender=sender, now=NOW).data
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    plain = message.get_body(("plain",))
    markup = message.get_body(("html",))
    assert plain is not None
    html_body = None if markup is None else markup.get_content().replace("\r\n", "\n")
    return plain.get_content().replace("\r\n", "\n"), html_body


@pytest.mark.parametrize("own", ["-- ", "--", "--   ", "-- \t"])
def test_a_signature_with_its_own_separator_gets_no_second_one(own: str) -> None:
    text, markup = bodies(Sender("a@example.test", "A", signature_text=f"{own}\nAlice\nExample Ltd"), html="<p>Hi</p>")
    assert text == "Hello\n\n-- \nAlice\nExample Ltd\n"
    assert markup is not None
    assert markup.count("--") == 1
    assert "-- <br>\nAlice<br>Example Ltd" in markup


def test_a_signature_without_one_gets_the_standard_separator() -> None:
    text, _ = bodies(Sender("a@example.test", "A", signature_text="Alice\n-- not a separator"))
    assert text == "Hello\n\n-- \nAlice\n-- not a separator\n"


@pytest.mark.parametrize("markup", ["-- <br>Alice", "<p>--&nbsp;</p><p>Alice</p>", "<div>--</div>Alice"])
def test_an_html_signature_with_its_own_separator_gets_no_second_one(markup: str) -> None:
    _, html = bodies(
        Sender("a@example.test", "A", signature_text="-- \nAlice", signature_html=markup), html="<p>Hi</p>"
    )
    assert html is not None
    assert html.count("--") == 1
    _, added = bodies(
        Sender("a@example.test", "A", signature_text="Alice", signature_html="<b>Alice</b>"), html="<p>Hi</p>"
    )
    assert added is not None
    assert "-- <br>\n<b>Alice</b>" in added


def test_a_cancelled_message_sheds_a_signature_written_with_its_own_separator() -> None:
    signature = "--\nAlice"
    text, _ = bodies(Sender("a@example.test", "A", signature_text=signature))
    assert without_signature(text, signature) == "Hello\n"
    assert signature_block("  ") == ""
