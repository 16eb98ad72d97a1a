"""Deriving a message's index row from its raw bytes, defensively.

Real-world mail breaks parsers (bad encodings, broken MIME boundaries, headers
the stdlib raises on with IndexError or RecursionError). Every field is derived
on its own and falls back to empty, so a message the parser chokes on is still
stored and listed; `parse_error` says what went wrong.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

from service.domain.search_text import SearchText, search_text

PREVIEW_LENGTH = 200
HEADER_LIMIT = 998  # RFC 5322 2.1.1: a line is at most 998 characters
_PARSE_FAILURES = (Exception, RecursionError)
_TAGS = re.compile(r"(?is)<(script|style)\b.*?</\1>|<[^>]+>")


@dataclass(frozen=True, slots=True)
class MessageIndex:
    subject: str
    from_address: str
    to_addresses: str
    cc_addresses: str
    date: datetime | None
    message_id: str | None
    in_reply_to: str | None
    size: int
    sha256: str
    preview: str
    has_attachments: bool
    parse_error: str | None
    # What search finds the message by (service.domain.search_text); None if not derived.
    search: SearchText | None = None


def _header(message: Message, name: str) -> str:
    """A header as text: RFC 2047 encoded words decoded (the modern policy already did that)."""
    try:
        value = message.get(name)
        if value is None:
            return ""
        text = str(value) if isinstance(message, EmailMessage) else str(make_header(decode_header(value)))
    except _PARSE_FAILURES:
        text = str(value) if value is not None else ""
    text = " ".join(text.split())
    return text.replace("\0", "")[:HEADER_LIMIT]


def _date(raw: str) -> datetime | None:
    if not raw:
        return None
    try:
        parsed = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _preview_and_attachments(message: Message) -> tuple[str, bool]:
    if not isinstance(message, EmailMessage):
        return "", False
    has_attachments = any(True for _ in message.iter_attachments()) if message.is_multipart() else False
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return "", has_attachments
    content = body.get_content()
    if not isinstance(content, str):
        return "", has_attachments
    if body.get_content_subtype() == "html":
        content = _TAGS.sub(" ", content)
    return " ".join(content.replace("\0", " ").split())[:PREVIEW_LENGTH], has_attachments


def sort_date(date: datetime | None, received_at: datetime) -> datetime:
    """The date a list sorts by: the Date header when plausible, else when the message arrived."""
    if date is None or date.year < 1980 or date > received_at + timedelta(days=1):
        return received_at
    return date


def header_block(raw: bytes) -> bytes:
    """The bytes up to and including the blank line that ends the header (RFC 5322 2.1).

    Searches only as far as the first candidate end, never through the whole body.
    """
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(raw))
    if lf >= 0 and (crlf < 0 or lf < crlf + 2):
        return raw[: lf + 2]
    return raw if crlf < 0 else raw[: crlf + 4]


_INDEXED_FIELDS = frozenset(
    {b"subject", b"from", b"to", b"cc", b"date", b"message-id", b"in-reply-to", b"content-type"}
)
# A header line: a field name of printable ASCII but ":" (RFC 5322 3.6.8 ftext; may be empty
# here, to be skipped like the email package's headerRE does) right up to the colon.
_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]*:")


def _header_fields(block: bytes) -> dict[str, str]:
    """The first occurrence of each indexed header field, unfolded (RFC 5322 2.2.3) and with
    RFC 2047 encoded words decoded; raw 8-bit values are read as UTF-8 (RFC 6532).

    A direct scan of the header block: the email package builds objects for every field
    and costs several times more, which bulk import cannot afford. It finds the same fields
    as `email.parser.BytesParser(policy=compat32).parsebytes(raw, headersonly=True)`
    (tests/test_message_index_corpus.py checks this on a varied corpus). Shapes it handles:

    - the header ends at the first line that is neither a field nor a continuation
      (RFC 5322 2.1, 2.2): an empty line (CRLF, LF or bare CR line ends alike), or a body
      line when the blank line is missing; a `From:` in the body is never read;
    - a field name is printable ASCII up to the colon: `Subject : x` (obs-FWS before the
      colon, RFC 5322 4.5.3), a name with 8-bit bytes, NUL or spaces is a body line;
    - a continuation line (space or tab first, obs-fold and whitespace-only lines too)
      belongs to the field above it; before any field, or after a line that is not a
      field, it is ignored;
    - an mbox envelope line ("From " without a colon), first or later, and a line that
      starts with ":" are skipped without ending the header, as the email package does;
    - the first occurrence of a repeated field counts; NUL bytes are dropped from values.

    Nothing falls back to the email package here; a value whose encoded words do not decode
    keeps its raw text. `index_message(with_body=True)` parses the whole message instead.
    """
    found: dict[bytes, list[bytes]] = {}
    current: list[bytes] | None = None
    for line in block.splitlines():
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current.append(line)
            continue
        current = None
        if line.startswith(b"From "):
            continue
        field = _FIELD_LINE.match(line)
        if field is None:
            break
        key = line[: field.end() - 1].lower()
        if key in _INDEXED_FIELDS and key not in found:
            current = found[key] = [line[field.end() :]]
    return {key.decode(): _field_text(b" ".join(parts)) for key, parts in found.items()}


def _field_text(value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    if "=?" in text:
        text = _cached_words(text) if len(text) <= _CACHED_CHARS else _encoded_words(text)
    return " ".join(text.replace("\0", "").split())[:HEADER_LIMIT]


def _encoded_words(text: str) -> str:
    """RFC 2047 encoded words decoded; the raw text when they do not decode."""
    with contextlib.suppress(*_PARSE_FAILURES):
        return str(make_header(decode_header(text)))
    return text


_CACHED_CHARS = 256
# A mailbox's senders repeat (in the bench corpus 2,565 encoded From fields have 578 values), and
# the email package's decoding is a tenth of bulk retrieval's indexing CPU: short values are kept.
_cached_words = functools.lru_cache(maxsize=4096)(_encoded_words)


def _looks_like_attachments(content_type: str) -> bool:
    """Without walking the MIME tree: multipart/mixed (or related/report) usually carries files."""
    content_type = content_type.partition(";")[0].strip().lower() or "text/plain"
    return content_type in {"multipart/mixed", "multipart/report", "application/octet-stream"} or (
        not content_type.startswith(("text/", "multipart/alternative", "multipart/related"))
        and content_type != "message/rfc822"
        and "/" in content_type
        and not content_type.startswith("multipart/")
    )


def index_message(
    raw: bytes, *, with_body: bool = False, sha256: str | None = None, with_search: bool = True
) -> MessageIndex:
    """The index of a raw RFC 5322 message. Never raises on malformed input.

    By default only the header block is read for the row (cheap enough for bulk import);
    `with_body` parses the whole message for a preview and real attachment flag.
    `with_search` also derives the full-text search fields, which reads the body's text
    parts (retrieval calls this in its download thread, so the event loop only writes).
    """
    errors: list[str] = []
    preview, has_attachments = "", False
    if with_body:
        try:
            message: Message = BytesParser(policy=policy.default).parsebytes(raw)
        except _PARSE_FAILURES as exc:
            errors.append(f"unparseable: {type(exc).__name__}")
            message = Message()
        fields = {name: _header(message, name) for name in ("subject", "from", "to", "cc", "date", "message-id")}
        fields["in-reply-to"] = _header(message, "in-reply-to")
        try:
            preview, has_attachments = _preview_and_attachments(message)
        except _PARSE_FAILURES as exc:
            errors.append(f"body: {type(exc).__name__}")
        defects = getattr(message, "defects", [])
        if defects and not errors:
            errors.append("defects: " + ", ".join(sorted({type(d).__name__ for d in defects}))[:200])
    else:
        fields = _header_fields(header_block(raw))
        has_attachments = _looks_like_attachments(fields.get("content-type", ""))
    subject, sender = fields.get("subject", ""), fields.get("from", "")
    to, cc = fields.get("to", ""), fields.get("cc", "")
    return MessageIndex(
        subject=subject,
        from_address=sender,
        to_addresses=to,
        cc_addresses=cc,
        date=_date(fields.get("date", "")),
        message_id=fields.get("message-id") or None,
        in_reply_to=fields.get("in-reply-to") or None,
        size=len(raw),
        sha256=sha256 or hashlib.sha256(raw).hexdigest(),
        preview=preview,
        has_attachments=has_attachments,
        parse_error="; ".join(errors) or None,
        search=search_text(raw, subject=subject, sender=sender, to=to, cc=cc) if with_search else None,
    )
