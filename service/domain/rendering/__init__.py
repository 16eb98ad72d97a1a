"""From a message's raw bytes to what the reader sees: headers, body, attachments.

Pure: no I/O. `render_message` never raises on malformed mail: what cannot be
parsed is shown as text, with `problem` saying so. An HTML body is sanitised
(see `sanitize`); a plain-text body is returned as text for the page to escape.
`find_attachment` and `find_inline_image` give one part's bytes by its part id
(see `parts`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import errors as email_errors
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

from service.domain.rendering.parts import (
    Attachment,
    PartContent,
    attachments,
    body_parts,
    find_part,
    text_of,
)
from service.domain.rendering.sanitize import SanitizedHtml, sanitize_html

__all__ = [
    "INLINE_IMAGE_TYPES",
    "Attachment",
    "MessageView",
    "PartContent",
    "SanitizedHtml",
    "find_attachment",
    "find_inline_image",
    "render_message",
    "sanitize_html",
]

DAMAGED = "Part of this message could not be read; it is shown as well as possible."
# Raster images only: an SVG can carry script, so it is never served inline.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/gif", "image/jpeg", "image/pjpeg", "image/webp", "image/bmp"})
_FAILURES = (Exception, RecursionError)
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Defects that mean the structure was guessed at, so the reader may not see everything.
_STRUCTURAL_DEFECTS = (
    email_errors.MissingHeaderBodySeparatorDefect,
    email_errors.NoBoundaryInMultipartDefect,
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.CloseBoundaryNotFoundDefect,
    email_errors.MultipartInvariantViolationDefect,
)


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message as the reader sees it. Exactly one of `html` and `text` is set.

    `attachments` are the parts offered for download: every part except the bodies
    shown, their alternative versions, and the inline images the HTML displays.
    `problem` is set when the message is damaged and shown as well as possible.
    """

    subject: str
    sender: str
    to: str
    cc: str
    reply_to: str
    date: datetime | None
    html: str | None
    text: str | None
    remote_images: int
    attachments: tuple[Attachment, ...]
    problem: str | None


def _parse(raw: bytes) -> Message | None:
    try:
        return BytesParser(policy=policy.default).parsebytes(raw)
    except _FAILURES:
        return None


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
        return "" if value is None else _CONTROLS.sub("", " ".join(str(value).split()))
    except _FAILURES:
        return ""


def _date(message: Message) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(_header(message, "Date"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _raw_text(raw: bytes) -> str:
    """The bytes after the header block, as text: the last resort for a message nothing else reads."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        if separator in raw:
            raw = raw.split(separator, 1)[1]
            break
    return raw.decode("utf-8", errors="replace").replace("\r\n", "\n")


def render_message(
    raw: bytes,
    *,
    allow_remote_images: bool = False,
    inline_url: Callable[[str], str] | None = None,
) -> MessageView:
    """The reader's view of a raw message.

    `inline_url(part_id)` is the URL that serves an inline image part; cid: images
    in the HTML point there (and nowhere when it is None). Remote images stay out
    unless `allow_remote_images`; `remote_images` counts them either way.
    """
    message = _parse(raw)
    if message is None:
        return MessageView("", "", "", "", "", None, None, _raw_text(raw), 0, (), DAMAGED)
    problem = None
    html_part: Message | None = None
    text_part: Message | None = None
    try:
        html_part, text_part = body_parts(message)
    except _FAILURES:
        problem = DAMAGED
    try:
        parts = tuple(attachments(message, skip=(html_part, text_part)))
    except _FAILURES:
        parts, problem = (), DAMAGED
    inline_ids = {p.content_id: p.part_id for p in parts if p.inline and p.content_type in INLINE_IMAGE_TYPES}

    used: set[str] = set()

    def resolve(cid: str) -> str | None:
        part_id = inline_ids.get(cid)
        if part_id is None or inline_url is None:
            return None
        used.add(part_id)
        return inline_url(part_id)

    html = text = None
    remote = 0
    try:
        if html_part is not None:
            sanitized = sanitize_html(text_of(html_part), allow_remote_images=allow_remote_images, resolve_cid=resolve)
            html, remote = sanitized.html, sanitized.remote_images
        elif text_part is not None:
            text = text_of(text_part)
    except _FAILURES:
        problem = DAMAGED
    if html is None and text is None:
        text = "" if parts and problem is None else _raw_text(raw)
    if any(isinstance(defect, _STRUCTURAL_DEFECTS) for defect in message.defects):
        problem = DAMAGED
    if text is not None:
        text = _CONTROLS.sub("", text.replace("\r\n", "\n"))
    return MessageView(
        subject=_header(message, "Subject"),
        sender=_header(message, "From"),
        to=_header(message, "To"),
        cc=_header(message, "Cc"),
        reply_to=_header(message, "Reply-To"),
        date=_date(message),
        html=html,
        text=text,
        remote_images=remote,
        attachments=tuple(p for p in parts if p.part_id not in used),
        problem=problem,
    )


def find_attachment(raw: bytes, part_id: str) -> PartContent | None:
    """The part with this id, decoded, or None (no such part, or the message cannot be parsed)."""
    message = _parse(raw)
    if message is None:
        return None
    try:
        return find_part(message, part_id)
    except _FAILURES:
        return None


def find_inline_image(raw: bytes, part_id: str) -> PartContent | None:
    """Like `find_attachment`, but only a raster image (see INLINE_IMAGE_TYPES)."""
    part = find_attachment(raw, part_id)
    return part if part is not None and part.content_type in INLINE_IMAGE_TYPES else None
