"""The fast header index finds the same header fields as the email package, on a varied corpus:
the bench's realistic messages, the tests' samples, and edge cases generated in CRLF, LF and
bare-CR form (a missing blank line, body lines that look like headers, obs-fold, a space before
the colon, NUL and 8-bit bytes, mbox "From " lines, a first line that is a body line)."""

from __future__ import annotations

import random
from datetime import datetime
from email import policy
from email.parser import BytesParser

import pytest

from bench.corpus import make_message
from service.domain.message_index import MessageIndex, _date, _field_text, index_message
from tests.mail_samples import EIGHT_BIT, MALFORMED, sample
from tests.test_filters_rules import MESSAGE

FIELDS = ("subject", "from", "to", "cc", "date", "message-id", "in-reply-to")

EDGE_CASES: dict[str, bytes] = {
    "no blank line, then a body with header-like lines": (
        b"From: real@example.test\nSubject: real\nHello there,\nFrom: evil@example.test\nSubject: fake\nTo: x@y\n"
    ),
    "header-like body lines after the blank line": b"Subject: s\nTo: a@b\n\nFrom: body@example.test\nCc: c@d\n",
    "obs-fold continuations": (
        b"Subject: first\n  second\n\tthird\nFrom: Name\n \n <a@example.test>\nTo:\n b@example.test\n\nbody\n"
    ),
    "space before the colon, first": b"Subject : spaced\nFrom: a@example.test\n\nbody\n",
    "space before the colon, later": b"From: a@example.test\nSubject : spaced\nTo: b@example.test\n\nbody\n",
    "tab before the colon": b"To: a@b\nSubject\t: tabbed\nFrom: x@y\n\n",
    "space inside a name": b"To: a@b\nX Mailer: x\nFrom: x@y\n\n",
    "NUL in a value and in a name": b"Subject: a\x00b\nTo: t@example.test\nFr\x00om: x@y\nCc: c@d\n\n",
    "8-bit values": "Subject: Grüße aus Köln\nFrom: Jörg <j@example.test>\nTo: Zoë <z@example.test>\n\n".encode(),
    "8-bit Latin-1 value": b"Subject: K\xf6ln\nFrom: a@b\n\n",
    "8-bit byte in a name": b"To: a@b\nS\xfcbject: x\nFrom: x@y\n\n",
    "first line is a body line": b"Hello world\nFrom: a@example.test\nSubject: s\n\nbody\n",
    "first line is a continuation": b" leading\nSubject: s\n continued\nFrom: a@b\n\n",
    "mbox From line first": b"From sender@example.test Mon Jan  1 00:00:00 2024\nFrom: a@b\nSubject: s\n\nbody\n",
    "mbox From line in the middle": b"Subject: s\nFrom someone else\n continuation of nothing\nTo: t@b\n\n",
    "mbox From line last": b"Subject: s\nFrom nobody\n\nbody\n",
    "From line with a colon": b"From : x@y\nSubject: s\n\n",
    "empty field name": b":no name\n continued\nSubject: s\nDate: Tue, 05 Mar 2024 10:11:12 +0100\n\n",
    "repeated fields": b"Subject: one\nSubject: two\nTo: a@b\nTo: c@d\n\n",
    "encoded words across folds": (
        b"Subject: =?utf-8?q?Gr=C3=BC?=\n =?utf-8?q?=C3=9Fe?= x\nFrom: =?x-unknown?q?=ZZ?=\n\n"
    ),
    "whitespace-only line is no end": b"Subject: a\n \nFrom: b@example.test\n\nTo: body@x\n",
    "headers only, no final line end": b"Subject: only\nMessage-ID: <m@x>",
    "empty": b"",
    "only a blank line": b"\n\n",
    "no headers at all": b"no headers at all",
    "very long value": b"Subject: " + b"x" * 5000 + b"\nIn-Reply-To: <r@x>\n\n",
    "lines of odd shapes": b"Subject: a\n\tb\nDate: 32 Foo 99999 99:99:99\nMessage-ID:<nospace@x>\nCc:\n\n",
}


def _variants(raw: bytes) -> dict[str, bytes]:
    """The LF message as written, with CRLF, with bare CR, and with mixed line ends."""
    crlf = raw.replace(b"\n", b"\r\n")
    return {"lf": raw, "crlf": crlf, "cr": raw.replace(b"\n", b"\r"), "mixed": crlf.replace(b"\r\n\r\n", b"\r\n\n", 1)}


def corpus() -> list[tuple[str, bytes]]:
    rng = random.Random(14)
    messages = [(f"bench {n}", make_message(rng, n)) for n in range(1, 61)]
    messages += [(f"bench {n} crlf", raw.replace(b"\n", b"\r\n")) for n, (_, raw) in enumerate(messages[:20])]
    messages += [("sample", sample("Quarterly plan")), ("eight-bit", EIGHT_BIT), ("malformed", MALFORMED)]
    messages += [("filters message", MESSAGE)]
    messages += [
        ("broken", b"From: \xff\xfe<<<@@@\r\nSubject: =?x-unknown?q?=ZZ?=\r\nDate: yesterday-ish\r\n\r\n\x00\x01 body")
    ]
    for name, raw in EDGE_CASES.items():
        messages += [(f"{name} ({ends})", variant) for ends, variant in _variants(raw).items()]
    return messages


def _email_package(raw: bytes) -> dict[str, str]:
    """The first value of each indexed field as the email package's parser finds it, made text
    the way the index makes it (8-bit as UTF-8, encoded words decoded)."""
    message = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
    first: dict[str, str] = {}
    for name, value in message.raw_items():
        key = name.lower()
        if key in FIELDS and key not in first:
            first[key] = value
    return {key: _field_text(value.encode("ascii", "surrogateescape")) for key, value in first.items()}


def _indexed(index: MessageIndex) -> tuple[str, str, str, str, datetime | None, str | None, str | None]:
    return (
        index.subject,
        index.from_address,
        index.to_addresses,
        index.cc_addresses,
        index.date,
        index.message_id,
        index.in_reply_to,
    )


CORPUS = corpus()


@pytest.mark.parametrize(("name", "raw"), CORPUS, ids=[name for name, _ in CORPUS])
def test_the_index_finds_the_fields_the_email_package_finds(name: str, raw: bytes) -> None:
    expected = _email_package(raw)
    assert _indexed(index_message(raw)) == (
        expected.get("subject", ""),
        expected.get("from", ""),
        expected.get("to", ""),
        expected.get("cc", ""),
        _date(expected.get("date", "")),
        expected.get("message-id") or None,
        expected.get("in-reply-to") or None,
    )


def test_body_lines_are_never_indexed_and_a_spaced_colon_is_no_field() -> None:
    missing_blank_line = EDGE_CASES["no blank line, then a body with header-like lines"]
    index = index_message(missing_blank_line.replace(b"\n", b"\r\n"))
    assert (index.subject, index.from_address, index.to_addresses) == ("real", "real@example.test", "")
    spaced = index_message(EDGE_CASES["space before the colon, later"])
    assert (spaced.subject, spaced.from_address, spaced.to_addresses) == ("", "a@example.test", "")
    mbox = index_message(EDGE_CASES["mbox From line first"])
    assert (mbox.from_address, mbox.subject) == ("a@b", "s")
    folded = index_message(EDGE_CASES["obs-fold continuations"])
    assert (folded.subject, folded.from_address, folded.to_addresses) == (
        "first second third",
        "Name <a@example.test>",
        "b@example.test",
    )
    assert index_message(EDGE_CASES["8-bit values"]).subject == "Grüße aus Köln"


LINE_SHAPES = [
    b"Subject: s{n}",
    b"subject:s{n}",
    b"From: a{n}@example.test",
    b"To: t{n}@example.test",
    b"Cc: c{n}@example.test",
    b"Date: Tue, 05 Mar 2024 10:{n}:00 +0000",
    b"Message-ID: <{n}@x>",
    b"In-Reply-To: <r{n}@x>",
    b"X-Other: {n}",
    b"Subject : spaced {n}",
    b"body line {n}",
    b"From envelope {n}",
    b" folded {n}",
    b"\tfolded {n}",
    b" ",
    b"",
    b":empty {n}",
    b"Subj\x00ect: nul {n}",
    b"Subject: nul \x00 {n}",
    b"Subject: \xc3\xa4 8-bit {n}",
    b"\xc3\xa4: 8-bit name {n}",
    b"Subject: =?utf-8?q?enc_{n}?=",
]


def _random_messages(count: int) -> list[bytes]:
    rng = random.Random(5322)
    messages = []
    for _ in range(count):
        end = rng.choice([b"\r\n", b"\n", b"\r"])
        lines = [rng.choice(LINE_SHAPES).replace(b"{n}", str(rng.randint(0, 59)).encode()) for _ in range(8)]
        messages.append(end.join(lines) + rng.choice([end, b""]))
    return messages


@pytest.mark.parametrize("raw", _random_messages(400))
def test_random_line_shapes_agree_with_the_email_package(raw: bytes) -> None:
    test_the_index_finds_the_fields_the_email_package_finds("random", raw)
