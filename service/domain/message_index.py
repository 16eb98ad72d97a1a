"""Deriving a message's index row from its raw bytes, defensively.

Real-world mail breaks parsers (bad encodings, broken MIME boundaries, headers
the stdlib raises on with IndexError or RecursionError). Every field is derived
on its own and falls back to empty, so a message the parser chokes on is still
stored and listed; `parse_error` says what went wrong.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

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


def _date(message: Message) -> datetime | None:
    raw = _header(message, "Date")
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


def _header_block(raw: bytes) -> bytes:
    """The bytes up to and including the blank line that ends the header (RFC 5322 2.1)."""
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    if not ends:
        return raw
    end = min(ends)
    return raw[: end + (4 if raw.startswith(b"\r\n\r\n", end) else 2)]


def _looks_like_attachments(message: Message) -> bool:
    """Without walking the MIME tree: multipart/mixed (or related/report) usually carries files."""
    try:
        content_type = message.get_content_type()
    except _PARSE_FAILURES:
        return False
    return content_type in {"multipart/mixed", "multipart/report", "application/octet-stream"} or (
        not content_type.startswith(("text/", "multipart/alternative", "multipart/related"))
        and content_type != "message/rfc822"
        and "/" in content_type
        and not content_type.startswith("multipart/")
    )


def index_message(raw: bytes, *, with_body: bool = False, sha256: str | None = None) -> MessageIndex:
    """The index of a raw RFC 5322 message. Never raises on malformed input.

    By default only the header block is parsed (cheap enough for bulk import);
    `with_body` also walks the MIME tree for a preview and real attachment flag.
    """
    errors: list[str] = []
    try:
        # The modern policy parses every header into objects (milliseconds a message);
        # compat32 on the header block alone is what bulk import can afford.
        if with_body:
            message: Message = BytesParser(policy=policy.default).parsebytes(raw)
        else:
            message = BytesParser(policy=policy.compat32).parsebytes(_header_block(raw), headersonly=True)
    except _PARSE_FAILURES as exc:
        errors.append(f"unparseable: {type(exc).__name__}")
        message = Message()
    preview, has_attachments = "", _looks_like_attachments(message)
    if with_body:
        try:
            preview, has_attachments = _preview_and_attachments(message)
        except _PARSE_FAILURES as exc:
            errors.append(f"body: {type(exc).__name__}")
    defects = getattr(message, "defects", [])
    if with_body and defects and not errors:
        errors.append("defects: " + ", ".join(sorted({type(d).__name__ for d in defects}))[:200])
    return MessageIndex(
        subject=_header(message, "Subject"),
        from_address=_header(message, "From"),
        to_addresses=_header(message, "To"),
        cc_addresses=_header(message, "Cc"),
        date=_date(message),
        message_id=_header(message, "Message-ID") or None,
        in_reply_to=_header(message, "In-Reply-To") or None,
        size=len(raw),
        sha256=sha256 or hashlib.sha256(raw).hexdigest(),
        preview=preview,
        has_attachments=has_attachments,
        parse_error="; ".join(errors) or None,
    )
