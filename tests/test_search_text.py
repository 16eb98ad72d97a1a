"""The search text finds the same body text and file names as a full parse by the email package,
without parsing (or copying) the bodies of attachments: on the bench's realistic messages, the
tests' samples, and MIME of odd shapes in LF, CRLF and bare-CR form; a 20 MB attachment costs
no more memory than a small message."""

from __future__ import annotations

import contextlib
import random
import tracemalloc
from email import message_from_bytes, policy

import pytest

from bench.corpus import make_message
from service.domain.search_text import (
    BODY_TEXT_LIMIT,
    PART_BYTES_LIMIT,
    SearchText,
    _decoded,
    _filename,
    html_text,
    search_text,
)
from tests.mail_samples import EIGHT_BIT, MALFORMED, sample
from tests.test_message_index_corpus import EDGE_CASES, _variants


def _email_package(raw: bytes) -> tuple[str, str]:
    """(body, attachment names) from the whole message parsed and walked by the email package."""
    try:
        message = message_from_bytes(raw, policy=policy.compat32)
    except Exception:  # as search_text: a message that does not parse has no text
        return "", ""
    plain: list[str] = []
    markup: list[str] = []
    names: list[str] = []
    for count, part in enumerate(message.walk()):
        if count >= 200:
            break
        if part.is_multipart():
            continue
        with contextlib.suppress(Exception):
            name = _filename(part)
            if name:
                names.append(name)
                continue
            if (part.get("content-disposition") or "").strip().lower().startswith("attachment"):
                continue
            content_type = part.get_content_type()
            if content_type == "text/plain":
                plain.append(_decoded(part))
            elif content_type == "text/html":
                markup.append(_decoded(part))
    texts = plain or [html_text(m) for m in markup]
    return " ".join(" ".join(t.split()) for t in texts)[:BODY_TEXT_LIMIT], " ".join(names)


MIME: dict[str, bytes] = {
    "alternative in mixed, with a file": (
        b"Content-Type: multipart/mixed; boundary=outer\n\npreamble\n--outer\n"
        b'Content-Type: multipart/alternative; boundary="inner"\n\n--inner\nContent-Type: text/plain\n\nplain words\n'
        b"--inner\nContent-Type: text/html\n\n<p>html words</p>\n--inner--\n--outer\n"
        b'Content-Type: application/pdf; name="=?utf-8?q?Gr=C3=BC=C3=9Fe.pdf?="\nContent-Transfer-Encoding: base64\n\n'
        b"JVBERi0xLjQK\n--outer--\nepilogue --outer\n"
    ),
    "html only, quoted-printable, latin-1": (
        b"Content-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
        b"<b>K=F6ln</b> caf=E9 <script>x()</script>=\nsoft break\n"
    ),
    "base64 text": (
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nR3LDvMOfZSBhdXMgS8O2bG4=\n"
    ),
    "a part without header fields": b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nno fields here\n--b--\n",
    "a part without its blank line": (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n--b--\n"
    ),
    "no close delimiter": (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nunclosed text\n"
    ),
    "boundary missing from the body": b"Content-Type: multipart/mixed; boundary=zz\n\n--b\n\ntext\n",
    "no boundary parameter": b"Content-Type: multipart/mixed\n\n--b\n\ntext\n",
    "longer boundary lines and text after it": (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--bb\ntwo\n--b x\nthree\n--b--  \n--b\n\nafter\n"
    ),
    "attached message and digest": (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\n"
        b"Subject: inner\nContent-Type: text/plain\n\ninner words\n--b\nContent-Type: multipart/digest; boundary=d\n\n"
        b"--d\n\nSubject: digest\n\ndigest words\n--d--\n--b--\n"
    ),
    "attachment by disposition only": (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nbody\n"
        b"--b\nContent-Disposition: attachment\n\nhidden\n--b--\n"
    ),
    "non-UTF-8 bytes and an unknown charset": (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=x-nothing\n\n\xe9t\xe9\n"
        b"--b\nContent-Type: text/plain\n\n\xff\xfe caf\xc3\xa9\n--b--\n"
    ),
    "encoded line break in a file name": (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Disposition: attachment;"
        b' filename="=?utf-8?q?a=0D=0Ab.txt?="\n\nx\n--b--\n'
    ),
    "nested 40 deep": b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (n, n) for n in range(40))
    + b"\ndeep text\n",
}


def corpus() -> list[tuple[str, bytes]]:
    rng = random.Random(17)
    messages = [(f"bench {n}", make_message(rng, n, large_fraction=0.2)) for n in range(1, 41)]
    messages += [("sample", sample("Quarterly plan")), ("eight-bit", EIGHT_BIT), ("malformed", MALFORMED)]
    for name, raw in {**MIME, **EDGE_CASES}.items():
        messages += [(f"{name} ({ends})", variant) for ends, variant in _variants(raw).items()]
    return messages


@pytest.mark.parametrize(("name", "raw"), corpus(), ids=[name for name, _ in corpus()])
def test_same_text_as_the_email_package(name: str, raw: bytes) -> None:
    found = search_text(raw, subject="", sender="", to="", cc="")
    body, names = _email_package(raw)
    assert (found.body, found.attachments) == (body.replace("\0", " "), names.replace("\0", " ")), name


def test_the_shapes_find_their_words() -> None:
    """The differential test above cannot fail on what both miss: the words are really there."""
    texts = {name: search_text(raw, subject="", sender="", to="", cc="") for name, raw in MIME.items()}
    assert texts["alternative in mixed, with a file"].body == "plain words"
    assert texts["alternative in mixed, with a file"].attachments == "Grüße.pdf"
    assert texts["html only, quoted-printable, latin-1"].body == "Köln café soft break"
    assert texts["attached message and digest"].body == "inner words digest words"
    assert texts["longer boundary lines and text after it"].body == "one --bb two --b x three"
    assert texts["attachment by disposition only"].body == "body"


def _searched_with_peak(raw: bytes) -> tuple[SearchText, int]:
    """`search_text` of `raw`, and the peak of the memory Python allocated meanwhile (tracemalloc)."""
    tracemalloc.start()
    try:
        found = search_text(raw, subject="", sender="", to="", cc="")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return found, peak


def test_a_big_attachment_is_not_parsed() -> None:
    raw = make_message(random.Random(5), 1, attachment_bytes=20_000_000).replace(b"\n", b"\r\n")
    found, peak = _searched_with_peak(raw)
    assert found.body
    assert found.attachments
    assert peak < 4 * PART_BYTES_LIMIT  # the parse of the whole message took 7.7 x its 20 MB


def test_a_huge_text_part_is_read_only_as_far_as_the_limit() -> None:
    raw = b"Content-Type: text/plain\r\n\r\n" + b"word " * 4_000_000
    found, peak = _searched_with_peak(raw)
    assert len(found.body) == BODY_TEXT_LIMIT
    assert peak < 16 * PART_BYTES_LIMIT  # the 20 MB part is 5x that


def test_nesting_past_any_sane_depth_finds_nothing_without_failing() -> None:
    raw = (
        b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (n, n) for n in range(5000)) + b"\ndeep\n"
    )
    assert search_text(raw, subject="s", sender="", to="", cc="").body == ""
