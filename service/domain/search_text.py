"""The text a message is found by: what goes into the full-text index (migration 0009).

Five fields, so a query can name one (`from:`, `to:`, `subject:`): the subject, the
sender, the recipients (To and Cc), the body text, the attachments' file names.
Headers come already decoded from the index row (`message_index`); the body is read
from the raw bytes here. Its text parts count (text/plain; HTML only when the message
has no plain text, stripped to its text by nh3 with script and style dropped), each
transfer-decoded in its charset, and the whole is capped at `BODY_TEXT_LIMIT`
characters: search finds words in the first 64 KiB of text, which keeps the index and
the cost of storing a message bounded whatever arrives.

Like the index row, this never raises: a part that does not decode adds nothing.
"""

from __future__ import annotations

import contextlib
import html
import re
import unicodedata
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import Message

import nh3

BODY_TEXT_LIMIT = 64 * 1024
PART_BYTES_LIMIT = 256 * 1024  # never decode more of one part than this
_MAX_PARTS = 200
_PARSE_FAILURES = (Exception, RecursionError)
_NOT_WORD = re.compile(r"[\W_]+")
# Unicode's combining diacritical marks (the blocks NFKD moves accents into).
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")


@dataclass(frozen=True, slots=True)
class SearchText:
    subject: str
    sender: str
    recipients: str
    body: str
    attachments: str


def _decoded(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    data = data[:PART_BYTES_LIMIT]
    charset = part.get_content_charset()
    if charset:
        with contextlib.suppress(LookupError, ValueError):
            return data.decode(charset, "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def html_text(markup: str) -> str:
    """The text of an HTML fragment: every tag dropped (script and style with their content),
    entities resolved. nh3 (ammonia) parses in linear time, whatever the markup."""
    return html.unescape(nh3.clean(markup, tags=set(), clean_content_tags={"script", "style"}))


def _filename(part: Message) -> str:
    name = part.get_filename()
    if not name:
        return ""
    if "=?" in name:
        with contextlib.suppress(*_PARSE_FAILURES):
            name = str(make_header(decode_header(name)))
    return name


def _body_and_names(raw: bytes) -> tuple[str, str]:
    message = message_from_bytes(raw, policy=policy.compat32)
    plain: list[str] = []
    markup: list[str] = []
    names: list[str] = []
    for count, part in enumerate(message.walk()):
        if count >= _MAX_PARTS:
            break
        if part.is_multipart():
            continue
        with contextlib.suppress(*_PARSE_FAILURES):
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
    body = " ".join(" ".join(t.split()) for t in texts)
    return body[:BODY_TEXT_LIMIT], " ".join(names)


def search_text(raw: bytes, *, subject: str, sender: str, to: str, cc: str) -> SearchText:
    """The search fields of a stored message (headers as the index row decoded them)."""
    try:
        body, names = _body_and_names(raw)
    except _PARSE_FAILURES:
        body, names = "", ""
    return SearchText(
        subject=subject,
        sender=sender,
        recipients=f"{to} {cc}".strip(),
        body=body.replace("\0", " "),
        attachments=names.replace("\0", " "),
    )


def plain_words(text: str) -> str:
    """Text reduced to lowercase words without accents, separated by single spaces.

    PostgreSQL's 'simple' configuration keeps `alice@example.com` as one token and
    `café` with its accent; SQLite's unicode61 tokenizer (remove_diacritics 2) splits at
    every non-alphanumeric character and folds accents. Feeding PostgreSQL this form, on
    both the indexed and the query side, makes the two databases find the same messages
    (`from:alice` finds alice@example.com, `cafe` finds café).
    """
    folded = text if text.isascii() else _MARKS.sub("", unicodedata.normalize("NFKD", text))
    return " ".join(_NOT_WORD.sub(" ", folded.casefold()).split())
