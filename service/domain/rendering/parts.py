"""Finding a message's parts: the body to show, and the attachments, each with a part id.

A part id is the part's MIME section number as IMAP numbers them (RFC 3501
6.4.5): a single-part message's body is "1"; a multipart's children are "1",
"2" ..., and their children "2.1", "2.2" .... Parsing the same bytes always
gives the same ids, so a page can list attachments and a later request can
fetch one by its id. An attached message (message/rfc822) is one part: it is
downloaded whole, never opened here.

The stdlib parser raises on some real-world mail; every step here is defensive
and a part that cannot be read is skipped, never fatal.
"""

from __future__ import annotations

import contextlib
import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage, Message

MAX_FILENAME = 200
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\]+")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A part offered for download (or, when `inline`, shown inside the HTML through cid:)."""

    part_id: str
    filename: str
    content_type: str
    size: int
    content_id: str | None
    inline: bool


@dataclass(frozen=True, slots=True)
class PartContent:
    """A part's decoded bytes, for a download or an inline image."""

    part_id: str
    filename: str
    content_type: str
    data: bytes


def walk(message: Message, prefix: str = "") -> Iterator[tuple[str, Message]]:
    """(part id, part) for every leaf part, depth first. An attached message is a leaf."""
    payload = message.get_payload()
    if message.get_content_maintype() == "multipart" and not isinstance(payload, list):
        return  # a multipart whose boundary never comes: nothing in it can be told apart
    if not isinstance(payload, list) or message.get_content_maintype() == "message":
        yield (prefix or "1"), message
        return
    for number, child in enumerate(payload, start=1):
        if isinstance(child, Message):
            yield from walk(child, f"{prefix}.{number}" if prefix else str(number))


def safe_filename(name: str | None, *, part_id: str, content_type: str) -> str:
    """A filename fit for a Content-Disposition header and a disk: no paths, no controls, not empty."""
    cleaned = _UNSAFE_FILENAME.sub("_", name or "").strip().strip(".")
    if cleaned:
        return cleaned[:MAX_FILENAME]
    extension = ".eml" if content_type == "message/rfc822" else mimetypes.guess_extension(content_type) or ".bin"
    return f"part-{part_id}{extension}"


def decoded_bytes(part: Message) -> bytes:
    """A leaf part's content, transfer-decoded (base64, quoted-printable); an attached message as bytes."""
    if part.get_content_maintype() == "message":
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        return inner.as_bytes() if isinstance(inner, Message) else b""
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def content_id(part: Message) -> str | None:
    value = part.get("Content-ID")
    if value is None:
        return None
    return str(value).strip().strip("<>").strip() or None


def body_parts(message: Message) -> tuple[Message | None, Message | None]:
    """The HTML and the plain-text body, each if present (multipart/alternative picks)."""
    if not isinstance(message, EmailMessage):
        return None, None
    html = message.get_body(preferencelist=("html",))
    plain = message.get_body(preferencelist=("plain",))
    return html, plain


def text_of(part: Message) -> str:
    """A text part's content as a string, in its declared charset.

    Undeclared 8-bit text is read as UTF-8 if it is valid UTF-8, else as Windows-1252;
    an unknown charset falls back to UTF-8 with replacement characters.
    """
    if part.get_param("charset") is None:
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data.decode("cp1252", errors="replace")
    if isinstance(part, EmailMessage):
        try:
            content = part.get_content()
        except (LookupError, ValueError, AssertionError, KeyError):
            content = None
        if isinstance(content, str):
            return content
    data = part.get_payload(decode=True)
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else ""


def _describe(part_id: str, part: Message) -> Attachment:
    content_type = part.get_content_type()
    try:
        name = part.get_filename()
    except (Exception, RecursionError):
        name = None
    if not name and content_type == "message/rfc822":
        inner = part.get_payload()
        subject = (
            inner[0].get("Subject") if isinstance(inner, list) and inner and isinstance(inner[0], Message) else None
        )
        name = f"{subject}.eml" if subject else None
    cid = content_id(part)
    disposition = part.get_content_disposition()
    return Attachment(
        part_id=part_id,
        filename=safe_filename(name, part_id=part_id, content_type=content_type),
        content_type=content_type,
        size=len(decoded_bytes(part)),
        content_id=cid,
        inline=cid is not None and disposition != "attachment" and part.get_content_maintype() == "image",
    )


def attachments(message: Message, *, skip: tuple[Message | None, ...] = ()) -> list[Attachment]:
    """Every leaf part except the bodies shown and the alternative versions of them."""
    found = []
    for part_id, part in walk(message):
        if any(part is body for body in skip if body is not None):
            continue
        # An unreadable part is left out; the rest of the message still shows.
        with contextlib.suppress(Exception, RecursionError):
            if not _is_alternative_text(message, part):
                found.append(_describe(part_id, part))
    return found


def _is_alternative_text(root: Message, part: Message) -> bool:
    """A text/plain or text/html without a filename directly inside a multipart/alternative."""
    if part.get_content_maintype() != "text" or part.get_filename():
        return False
    return any(
        container.get_content_type() == "multipart/alternative"
        and any(child is part for child in (container.get_payload() or []))
        for container in root.walk()
        if container.is_multipart()
    )


def find_part(message: Message, part_id: str) -> PartContent | None:
    """The decoded content of the part with this id, or None."""
    for candidate_id, part in walk(message):
        if candidate_id == part_id:
            described = _describe(part_id, part)
            return PartContent(part_id, described.filename, described.content_type, decoded_bytes(part))
    return None
