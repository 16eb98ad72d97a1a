"""Composing: headers, encodings, Bcc, threading, signatures, and refusing what must be refused.
Then the outbox's pure rules: each recipient's fate, retry timing, the per-minute limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from service.domain.compose import Attachment, Draft, Sender, Thread, compose, parse_mailbox, split_addresses
from service.domain.outbox import (
    GIVE_UP_AFTER,
    DeliveryReport,
    Recipients,
    SmtpReply,
    next_retry,
    rate_limited_until,
)
from service.domain.smtp_accounts import SmtpAccountInput, check_host
from service.domain.values import Security
from service.errors import InvalidInput

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SENDER = Sender("jurgen@example.test", "Jürgen Müller")


def parsed(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def test_headers_with_non_ascii_names_and_subject_are_encoded_and_read_back() -> None:
    draft = Draft(to=('"Ça va, Zoë" <zoe@example.test>', "bob@example.test"), subject="Grüße \u2013 ½ 日本語")
    message = compose(draft, sender=SENDER, now=NOW)
    assert message.data.isascii()
    assert b"\r\n" in message.data
    assert all(len(line) <= 998 for line in message.data.split(b"\r\n"))
    read = parsed(message.data)
    assert str(read["Subject"]) == "Grüße \u2013 ½ 日本語"
    (sender,) = read["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Jürgen Müller", "jurgen@example.test")
    assert [(a.display_name, a.addr_spec) for a in read["To"].addresses] == [
        ("Ça va, Zoë", "zoe@example.test"),
        ("", "bob@example.test"),
    ]
    assert read["Date"].datetime == NOW
    assert read["Message-ID"].endswith("@example.test>")
    assert message.message_id == read["Message-ID"]
    assert message.envelope_from == "jurgen@example.test"


def test_bcc_is_only_in_the_envelope_and_the_local_copy() -> None:
    draft = Draft(to=("bob@example.test",), cc=("Carol <carol@example.test>",), bcc=("Secret Sam <sam@example.test>",))
    message = compose(draft, sender=SENDER, now=NOW)
    assert message.recipients == ("bob@example.test", "carol@example.test", "sam@example.test")
    assert b"sam@example.test" not in message.data
    assert b"bcc" not in message.data.lower()
    assert message.stored == b"Bcc: Secret Sam <sam@example.test>\r\n" + message.data
    assert message.stored[message.data_offset :] == message.data
    assert parsed(message.stored)["Bcc"].addresses[0].addr_spec == "sam@example.test"


def test_duplicate_recipients_are_sent_once() -> None:
    message = compose(Draft(to=("bob@example.test",), cc=("BOB@example.test",)), sender=SENDER, now=NOW)
    assert message.recipients == ("bob@example.test",)


def test_text_with_html_alternative_signature_and_non_ascii_attachment() -> None:
    sender = Sender("a@example.test", "A", signature_text="A.\nExample Ltd", signature_html="<b>A.</b>")
    draft = Draft(
        to=("b@example.test",),
        text="Hello\n.\nFrom the top",
        html="<p>Hello</p>",
        attachments=(Attachment("Résumé €.pdf", b"%PDF-1.4\x00\xff", "application/pdf"),),
    )
    read = parsed(compose(draft, sender=sender, now=NOW).data)
    assert read.get_content_type() == "multipart/mixed"
    plain = read.get_body(("plain",))
    html = read.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().replace("\r\n", "\n") == "Hello\n.\nFrom the top\n\n-- \nA.\nExample Ltd\n"
    assert "<p>Hello</p>" in html.get_content()
    assert "<b>A.</b>" in html.get_content()
    (attachment,) = read.iter_attachments()
    assert attachment.get_filename() == "Résumé €.pdf"
    assert attachment.get_content() == b"%PDF-1.4\x00\xff"
    assert read.get_all("MIME-Version") == ["1.0"]
    assert all(part.get("MIME-Version") is None for part in read.walk() if part is not read)


def test_reply_has_in_reply_to_and_references() -> None:
    thread = Thread(message_id="<orig@example.test>", references=("<root@example.test>",))
    read = parsed(compose(Draft(to=("b@example.test",)), sender=SENDER, now=NOW, thread=thread).data)
    assert read["In-Reply-To"] == "<orig@example.test>"
    assert read["References"] == "<root@example.test> <orig@example.test>"


@pytest.mark.parametrize(
    "draft",
    [
        Draft(to=("b@example.test",), subject="Hi\r\nBcc: victim@example.test"),
        Draft(to=("b@example.test",), subject="Hi\nX-Injected: 1"),
        Draft(to=("b@example.test",), subject="Hi\0there"),
        Draft(to=("Bob\r\nBcc: victim@example.test <b@example.test>",)),
        Draft(to=("b@example.test\r\nBcc: victim@example.test",)),
        Draft(cc=("b@example.test\n",)),
        Draft(to=("b@example.test",), attachments=(Attachment("a\r\nContent-Type: text/html", b"x"),)),
    ],
)
def test_header_injection_is_refused(draft: Draft) -> None:
    with pytest.raises(InvalidInput, match="cannot contain line breaks"):
        compose(draft, sender=SENDER, now=NOW)


@pytest.mark.parametrize(
    "name", ["A\r\nBcc: x@example.test", "=?utf-8?q?A=0D=0ABcc:_x@example.test?=", "A\u2028Bcc: x@example.test"]
)
def test_a_stored_sender_name_with_a_line_break_is_written_on_one_line(name: str) -> None:
    """The account's name was saved earlier (or by an older version): it is cleaned, not obeyed."""
    composed = compose(Draft(to=("b@example.test",)), sender=Sender("a@example.test", name), now=NOW)
    headers = composed.data.split(b"\r\n\r\n", 1)[0]
    assert b'From: "A Bcc: x@example.test" <a@example.test>\r\n' in headers
    assert b"\r\nBcc" not in headers
    assert composed.recipients == ("b@example.test",)


@pytest.mark.parametrize("address", ["a@b)<c@d>", "not-an-address", "a@localhost", "<>", "jörg@example.test", ""])
def test_invalid_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidInput):
        compose(Draft(to=(address,)), sender=SENDER, now=NOW)


def test_no_recipient_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least one recipient"):
        compose(Draft(subject="lonely"), sender=SENDER, now=NOW)


def test_address_lists_and_names() -> None:
    assert split_addresses('a@x.test, "Doe, Jane" <j@x.test>; <k@x.test>') == [
        "a@x.test",
        '"Doe, Jane" <j@x.test>',
        "<k@x.test>",
    ]
    assert parse_mailbox('"Doe, Jane" <j@x.test>').display_name == "Doe, Jane"
    assert parse_mailbox("Bob <Bob@Bücher.test>").address == "Bob@xn--bcher-kva.test"


def test_account_settings_are_checked_and_ports_suggested() -> None:
    checked = SmtpAccountInput(email_address="Me@Example.test", host=" Mail.Example.test. ", security=Security.SSL)
    assert (checked.checked().host, checked.checked().port, checked.checked().username) == (
        "mail.example.test",
        465,
        "Me@example.test",
    )
    assert SmtpAccountInput(email_address="a@x.test", host="h.test", security=Security.NONE).checked().port == 25
    assert SmtpAccountInput(email_address="a@x.test", host="h.test").checked().port == 587
    assert check_host("::1") == "::1"
    for bad in ("mail example", "mail\r\nexample", "-bad.test", ""):
        with pytest.raises(InvalidInput):
            check_host(bad)
    with pytest.raises(InvalidInput, match="line breaks"):
        SmtpAccountInput(email_address="a@x.test", host="h.test", display_name="A\nB").checked()


# -- the outbox's rules ------------------------------------------------------------------------


def test_settle_partial_refusal_keeps_only_temporary_refusals_pending() -> None:
    start = Recipients(pending=("a@x.test", "b@x.test", "c@x.test"))
    report = DeliveryReport(
        accepted=("a@x.test",),
        refused={"b@x.test": SmtpReply(450, "mailbox busy"), "c@x.test": SmtpReply(550, "no such user")},
        reply=SmtpReply(250, "ok"),
    )
    after = start.settle(report)
    assert after.accepted == ("a@x.test",)
    assert after.pending == ("b@x.test",)
    assert after.refused == {"b@x.test": "450 mailbox busy", "c@x.test": "550 no such user"}
    done = after.settle(DeliveryReport(accepted=("b@x.test",), reply=SmtpReply(250, "ok")))
    assert (done.pending, done.accepted) == ((), ("a@x.test", "b@x.test"))
    assert done.refused == {"c@x.test": "550 no such user"}


def test_settle_without_data_accepts_nobody() -> None:
    start = Recipients(pending=("a@x.test",))
    after = start.settle(DeliveryReport(accepted=(), refused={"a@x.test": SmtpReply(451, "later")}, reply=None))
    assert (after.pending, after.accepted) == (("a@x.test",), ())


def test_retry_backs_off_and_gives_up_after_a_day() -> None:
    deadline = NOW + GIVE_UP_AFTER
    delays = [next_retry(give_up_at=deadline, attempts=n, now=NOW) for n in (1, 2, 3, 8, 20)]
    assert [d - NOW for d in delays if d] == [
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(hours=1),
        timedelta(hours=1),
    ]
    assert next_retry(give_up_at=deadline, attempts=5, now=deadline - timedelta(minutes=3)) == deadline
    assert next_retry(give_up_at=deadline, attempts=30, now=deadline) is None


def test_rate_limit_queues_until_the_window_frees() -> None:
    recent = [NOW - timedelta(seconds=50), NOW - timedelta(seconds=10), NOW - timedelta(seconds=90)]
    assert rate_limited_until(recent, per_minute=None, now=NOW) is None
    assert rate_limited_until(recent, per_minute=3, now=NOW) is None
    assert rate_limited_until(recent, per_minute=2, now=NOW) == NOW + timedelta(seconds=10)
    assert rate_limited_until(recent, per_minute=1, now=NOW) == NOW + timedelta(seconds=50)


def test_a_utf8_text_attachment_says_its_charset() -> None:
    draft = Draft(
        to=("bob@example.test",),
        subject="notes",
        text="see attached",
        attachments=(Attachment(filename="notes.txt", content_type="text/plain", content="Grüße\n".encode()),),
    )
    composed = compose(draft, sender=SENDER, now=NOW)
    parsed = BytesParser(policy=policy.default).parsebytes(composed.data)
    assert isinstance(parsed, EmailMessage)
    [part] = list(parsed.iter_attachments())
    assert part.get_content_charset() == "utf-8"
    assert part.get_content() == "Grüße\n"
