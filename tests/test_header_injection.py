"""Header injection (issue 14): the header-value rule of service.domain.headers and compose() itself.

Values are judged after RFC 2047 decoding, because the email package decodes
encoded words in what it is given and writes the decoded line breaks.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.domain.compose import POLICY, Attachment, Draft, Sender, Thread, compose, message_ids
from service.domain.headers import (
    check_content_type,
    check_generated,
    check_header_value,
    decoded,
    has_controls,
    header_text,
)
from service.errors import InvalidInput, UnsafeHeaderValue
from service.usecases.replies.original import ReplyMode, attachments, parse, prefixed, quoted, recipients
from service.usecases.replies.original import header_text as original_header

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SENDER = Sender("ada@example.test", "Ada")
INJECTION = "=?utf-8?q?Quarterly=0D=0AX-Injected:_yes=0D=0ABcc:_attacker@evil.test?="
TWICE = "=?utf-8?q?=3D=3Futf-8=3Fq=3FA=3D0D=3D0ABcc:=5Fx@evil.test=3F=3D?="  # decodes to an encoded word
CONTROLS = ["\r", "\n", "\0", "\x0b", "\x0c", "\x1c", "\x1e", "\x7f", "\x85", "\x98", "\u2028", "\u2029", "\x01"]


@pytest.mark.parametrize("control", CONTROLS)
def test_every_control_is_refused_raw_and_encoded(control: str) -> None:
    encoded = "=?utf-8?b?" + base64.b64encode(f"a{control}Bcc: x@y".encode()).decode() + "?="
    for value in (f"a{control}b", encoded):
        assert has_controls(value)
        with pytest.raises(UnsafeHeaderValue, match=r"^The subject cannot contain line breaks or other control"):
            check_header_value(value, "subject")


def test_plain_and_encoded_text_without_controls_passes() -> None:
    for value in ("Quarterly report", "Tab\tseparated", "=?utf-8?q?Caf=C3=A9?=", "Prix: 5 € = ?", "März"):
        assert check_header_value(value, "subject") == value
    assert decoded("=?utf-8?q?Caf=C3=A9?=") == "Café"
    assert decoded(TWICE) == "A\r\nBcc: x@evil.test"  # decoded until nothing changes
    assert decoded("=?x-unknown?q?a=0Ab?=") == "a\nb"  # an unknown charset still shows its control bytes
    for charset in ("rot13", "base64", "punycode", "idna", "zlib"):  # codecs that are no text codec, or fail
        assert decoded(f"=?{charset}?q?=FF=0D?=") == "\xff\r"
    assert decoded("=?utf-7?q?+AA0-?=") == "\r"


def test_received_values_are_cleaned_not_obeyed() -> None:
    assert header_text(INJECTION) == "Quarterly X-Injected: yes Bcc: attacker@evil.test"
    assert header_text(TWICE) == "A Bcc: x@evil.test"
    assert header_text("a\x85b\u2028c\u2029d\0e") == "a b c d e"
    assert header_text("  Plain   words ") == "Plain words"


def test_content_types_are_a_type_and_a_subtype_only() -> None:
    assert check_content_type("Application/PDF") == "application/pdf"
    for bad in ("text/plain\r\nBcc: x@y", "text/pl\x85ain", "text", "text/plain; x=y", ""):
        with pytest.raises(UnsafeHeaderValue, match="is not a content type"):
            check_content_type(bad)


def _headers(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


@pytest.mark.parametrize(
    "draft",
    [
        Draft(to=("b@example.test",), subject=INJECTION),
        Draft(to=("b@example.test",), subject=TWICE),
        Draft(to=("b@example.test",), subject="Quarterly\x85Bcc: x@evil.test"),
        Draft(to=("b@example.test",), subject="Quarterly\u2028Bcc: x@evil.test"),
        Draft(to=(f"{INJECTION} <b@example.test>",)),
        Draft(to=(f'"{INJECTION}" <b@example.test>',)),
        Draft(cc=(f"{TWICE} <b@example.test>",)),
        Draft(bcc=(f"{INJECTION} <b@example.test>",)),
        Draft(to=("b@example.test",), attachments=(Attachment(f"{INJECTION}.pdf", b"x", "application/pdf"),)),
        Draft(to=("b@example.test",), attachments=(Attachment("a.txt", b"x", "text/plain\r\nBcc: x@evil.test"),)),
    ],
)
def test_typed_values_that_decode_to_a_line_break_are_refused(draft: Draft) -> None:
    with pytest.raises(InvalidInput) as refused:
        compose(draft, sender=SENDER, now=NOW)
    assert isinstance(refused.value, UnsafeHeaderValue)


def test_a_stored_display_name_that_decodes_to_a_line_break_is_cleaned() -> None:
    composed = compose(Draft(to=("b@example.test",), subject="Hi"), sender=Sender("ada@example.test", TWICE), now=NOW)
    assert _headers(composed.data).split(b"\r\n")[0] == b'From: "A Bcc: x@evil.test" <ada@example.test>'
    assert b"\r\nBcc" not in composed.stored
    assert composed.recipients == ("b@example.test",)


def test_the_last_guard_refuses_generated_bytes_with_a_header_that_was_not_set() -> None:
    """Bypassing every check above (as the email package's own folding would), the bytes are still refused."""
    message = EmailMessage(policy=POLICY)
    message["Subject"] = "ok"
    message.set_content("hi")
    message.add_attachment(b"x", maintype="application", subtype="pdf", filename=f"{INJECTION}.pdf")
    data = message.as_bytes(policy=POLICY)
    assert b"\r\nBcc: attacker@evil.test" in data  # the email package of Python 3.11.7 writes it
    with pytest.raises(UnsafeHeaderValue, match="would have added header lines"):
        check_generated(data, message)

    plain = EmailMessage(policy=POLICY)
    plain["Subject"] = "ok"
    plain.set_content("hi")
    top = plain.as_bytes(policy=POLICY)
    assert check_generated(top, plain) == top
    injected = top.replace(b"Subject: ok\r\n", b"Subject: ok\r\nBcc: attacker@evil.test\r\n")
    with pytest.raises(UnsafeHeaderValue):
        check_generated(injected, plain)
    bare_lf = top.replace(b"Subject: ok", b"Subject: ok\nBcc: attacker@evil.test")
    with pytest.raises(UnsafeHeaderValue):
        check_generated(bare_lf, plain)


def test_legitimate_messages_pass_the_last_guard() -> None:
    draft = Draft(
        to=("Björn Berg <b@example.test>", '"Doe, Jane" <j@example.test>'),
        cc=("=?utf-8?q?Caf=C3=A9?= <c@example.test>",),
        bcc=("d@example.test",),
        subject="Plans for März " + "long " * 40,
        text="Hello",
        html="<p>Hello</p>",
        attachments=(
            Attachment("Agenda März.pdf", b"%PDF", "application/pdf"),
            Attachment("notes.txt", b"notes", "text/plain"),
        ),
    )
    composed = compose(draft, sender=Sender("ada@example.test", "Ada Lovelace"), now=NOW)
    message = message_from_bytes(composed.data, policy=policy.default)
    assert message["To"] == 'Björn Berg <b@example.test>, "Doe, Jane" <j@example.test>'
    assert message["Cc"] == "Café <c@example.test>"
    assert [part.get_filename() for part in message.iter_attachments()] == ["Agenda März.pdf", "notes.txt"]
    assert composed.stored.startswith(b"Bcc: d@example.test\r\n")


def test_threading_ids_with_controls_are_dropped_and_the_reply_still_goes_out() -> None:
    parents = f"<ok@example.test> <{INJECTION}@evil.test> <a\x01b@evil.test>"
    assert message_ids(parents) == ("<ok@example.test>",)
    thread = Thread(message_id="<parent@example.test>", references=message_ids(parents))
    composed = compose(Draft(to=("b@example.test",), subject="Re: hi"), sender=SENDER, now=NOW, thread=thread)
    assert b"\r\nReferences: <ok@example.test> <parent@example.test>\r\n" in composed.data


@pytest.mark.parametrize("content_type", ["message/rfc822", "message/delivery-status", "multipart/mixed"])
def test_composite_content_types_are_attached_as_files(content_type: str) -> None:
    """A composite type cannot be base64 (RFC 2046 5.1, 5.2.1); message/delivery-status was a 500."""
    attachment = Attachment("report.eml", b"Subject: x\r\n\r\nhi\r\n", content_type)
    composed = compose(Draft(to=("b@example.test",), attachments=(attachment,)), sender=SENDER, now=NOW)
    [part] = message_from_bytes(composed.data, policy=policy.default).iter_attachments()
    assert (part.get_content_type(), part.get_filename()) == ("application/octet-stream", "report.eml")
    assert part.get_payload(decode=True) == b"Subject: x\r\n\r\nhi\r\n"


_PIECES = ["=?utf-8?q?", "=?utf-8?b?", "?=", "=0D", "=0A", "DQpCY2M6IHhAeS50ZXN0", "\r", "\n", "\x85", "\u2028"]
_PIECES += ["Bcc: x@y.test", " ", "\t", '"', "<", ">", "a", "é", "@", "=", "?", "_", ",", "(", "\\", "x@y.test"]
_HOSTILE = st.lists(st.sampled_from(_PIECES), max_size=12).map("".join) | st.text(max_size=30)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(subject=_HOSTILE, name=_HOSTILE, cc=_HOSTILE, filename=_HOSTILE, content_type=_HOSTILE, sender_name=_HOSTILE)
def test_hostile_values_are_refused_or_sent_without_an_added_header(
    subject: str, name: str, cc: str, filename: str, content_type: str, sender_name: str
) -> None:
    """Whatever is typed or stored: InvalidInput (never another exception), or a message whose
    every part holds only the headers compose sets, each once, and no Bcc among them."""
    draft = Draft(
        to=(f"{name} <b@example.test>",),
        cc=(cc,) if "@" in cc else (),
        subject=subject,
        attachments=(Attachment(filename or "f", b"x", content_type or "text/plain"),),
    )
    try:
        composed = compose(draft, sender=Sender("ada@example.test", sender_name), now=NOW)
    except InvalidInput:
        return
    message = message_from_bytes(composed.data, policy=policy.compat32)
    for part in message.walk():
        names = [key.lower() for key in part]
        assert len(names) == len(set(names)), names
        assert not {"bcc", "x-injected"} & set(names)


def test_surrogate_escapes_of_raw_8bit_headers_are_read_as_utf8_and_lone_ones_refused() -> None:
    """The parser keeps undecodable 8-bit header bytes as lone surrogates, which no charset can write."""
    assert header_text("B\udcc2\udc85ob") == "B ob"  # UTF-8 bytes of NEL: a control, so a space
    assert header_text("Ren\udcc3\udca9e") == "Renée"
    assert "\ud800" not in header_text("x\ud800y")
    with pytest.raises(UnsafeHeaderValue):
        check_header_value("x\ud800y", "subject")
    composed = compose(Draft(to=("b@example.test",), text="a\ud800b", html="<p>\udc85</p>"), sender=SENDER, now=NOW)
    message = message_from_bytes(composed.data, policy=policy.default)
    bodies = [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
    assert ["\ufffd" in body for body in bodies] == [True, True]
    assert "<p>\ufffd</p>" in bodies[1]


_RAW = [b"=?utf-8?q?", b"?=", b"=0D", b"=0A", b"=C2=85", b"\xc2\x85", b"\xe2\x80\xa8", b"\xff", b"\x00", b"\r", b"\n "]
_RAW += [b"Bcc:", b" ", b'"', b"<", b">", b"a", b"@", b"x@y.test", b"=?utf-16?b?", b"AA0ACg==", b"(", b",", b";", b":"]
_RAW_VALUE = st.lists(st.sampled_from(_RAW), max_size=14).map(b"".join)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(sender=_RAW_VALUE, to=_RAW_VALUE, subject=_RAW_VALUE, filename=_RAW_VALUE)
@example(sender=b"", to=b":\xc2\x85x@y.test;=?utf-8?q?", subject=b"", filename=b"")
def test_what_a_reply_or_forward_takes_from_received_mail_holds_no_control(
    sender: bytes, to: bytes, subject: bytes, filename: bytes
) -> None:
    """Raw, encoded, twice-encoded and undecodable header bytes: the suggested To, Cc, subject and
    file names hold no control character (nor a lone surrogate, which no page or charset can write)."""
    raw = b"From: %s\r\nTo: %s\r\nSubject: %s\r\n" % (sender, to, subject)
    raw += b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nhi\r\n"
    raw += b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="%s"\r\n' % filename
    raw += b"\r\nx\r\n--b--\r\n"
    message = parse(raw)
    assert message is not None
    for mode in ReplyMode:
        to_field, cc_field = recipients(message, mode, set())
        for value in (to_field, cc_field, prefixed(original_header(message, "Subject"), mode)):
            assert not has_controls(value), (mode, value)
        quoted(message, mode)
    for attachment in attachments(message):
        assert not has_controls(attachment.filename), attachment.filename
