"""Reading the message being answered or forwarded: pure functions over its bytes, no I/O.

Real-world mail breaks parsers (DESIGN.md section 7), so every header and part
is read defensively: what cannot be read is left out, never an error. Values
meant for the compose form never hold CR, LF or other control characters, not
even once RFC 2047 decoded again (a subject or file name encoded twice): the
email package would decode them when the answer is written (service.domain.headers).
Addresses found here are suggestions: the compose page validates what is sent.
"""

from __future__ import annotations

import mimetypes
import re
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import cast

from service.domain.compose import Attachment
from service.domain.headers import header_text as one_line
from service.usecases.replies.html_text import html_to_text

MAX_QUOTED_CHARS = 200_000
MAX_DEPTH = 30
_AS_STORED = policy.compat32.clone(linesep="\r\n")  # an attached message, CRLF like stored mail
_ADDRESS_TOKEN = re.compile(r"[^\s<>,;:\"'()\[\]]+@[^\s<>,;:\"'()\[\]]+")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_RE_PREFIX = re.compile(r"^\s*re\s*:", re.IGNORECASE)
_FWD_PREFIX = re.compile(r"^\s*(fwd?|fw)\s*:", re.IGNORECASE)


class ReplyMode(StrEnum):
    REPLY = "reply"
    REPLY_ALL = "reply_all"
    FORWARD = "forward"


def clean(value: str) -> str:
    """One line of text, safe in a header: encoded words decoded, controls (CR, LF, NUL, NEL, U+2028 ...)
    become spaces, runs of spaces one."""
    return one_line(value)


def parse(raw: bytes) -> EmailMessage | None:
    try:
        return BytesParser(policy=policy.default).parsebytes(raw)
    except Exception:  # the parser is lazy, but not every failure waits for the headers
        return None


def _raw_values(message: Message, name: str) -> list[str]:
    return [str(value) for key, value in message.raw_items() if key.lower() == name.lower()]


def header_text(message: Message, name: str) -> str:
    """A header's decoded value on one line, or its raw value when it cannot be decoded; "" when absent."""
    try:
        values = [str(value) for value in message.get_all(name) or []]
    except Exception:
        values = _raw_values(message, name)
    return clean(" ".join(values))


def _mailboxes(message: Message, name: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address header (every occurrence, groups flattened)."""
    found: list[tuple[str, str]] = []
    try:
        for header in message.get_all(name) or []:
            found += [(clean(a.display_name), clean(a.addr_spec)) for a in getattr(header, "addresses", ())]
    except Exception:  # undecodable: fall back to the address-like tokens of the raw text
        found = [("", clean(token)) for value in _raw_values(message, name) for token in _ADDRESS_TOKEN.findall(value)]
    return [(display, address) for display, address in found if "@" in address and " " not in address]


def _format(display: str, address: str) -> str:
    name = display.replace('"', "").replace("\\", "").replace("<", "").replace(">", "").strip()
    if not name or name.lower() == address.lower():
        return address
    return f'"{name}" <{address}>' if any(ch in name for ch in ",;:@()[]") else f"{name} <{address}>"


def _join(boxes: list[tuple[str, str]]) -> str:
    return ", ".join(_format(display, address) for display, address in boxes)


def _without(boxes: list[tuple[str, str]], excluded: set[str]) -> list[tuple[str, str]]:
    """`boxes` minus the excluded addresses and minus repeats (case-insensitive); extends `excluded`."""
    kept = []
    for display, address in boxes:
        if address.lower() not in excluded:
            excluded.add(address.lower())
            kept.append((display, address))
    return kept


def recipients(message: Message, mode: ReplyMode, own: set[str]) -> tuple[str, str]:
    """The To and Cc of a reply (empty for a forward)."""
    if mode is ReplyMode.FORWARD:
        return "", ""
    original_to, original_cc = _mailboxes(message, "To"), _mailboxes(message, "Cc")
    authors = _mailboxes(message, "Reply-To") or _mailboxes(message, "From")
    if authors and all(address.lower() in own for _, address in authors):
        to = _without(original_to, set(own)) or authors  # one's own message: answer its recipients again
        excluded = {address.lower() for _, address in to} | own
        return _join(to), (_join(_without(original_cc, excluded)) if mode is ReplyMode.REPLY_ALL else "")
    excluded = set(own)
    to = _without(authors, set())
    excluded |= {address.lower() for _, address in to}
    if mode is ReplyMode.REPLY:
        return _join(to), ""
    to += _without(original_to, excluded)
    return _join(to), _join(_without(original_cc, excluded))


def prefixed(subject: str, mode: ReplyMode) -> str:
    """ "Re: " or "Fwd: " in front of the subject, unless it already has it."""
    subject = clean(subject)
    if mode is ReplyMode.FORWARD:
        return subject if _FWD_PREFIX.match(subject) else f"Fwd: {subject}".rstrip()
    return subject if _RE_PREFIX.match(subject) else f"Re: {subject}".rstrip()


def _part_text(part: Message) -> str:
    try:
        content = cast(EmailMessage, part).get_content()
    except Exception:  # unknown charset, broken transfer encoding: decode by hand below
        content = None
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _body_part(message: EmailMessage) -> Message | None:
    try:
        return message.get_body(preferencelist=("plain", "html"))
    except Exception:
        return None


def body_text(message: EmailMessage) -> str:
    """The original's text: its text/plain body, else its HTML body as text; "" when it has neither."""
    part = _body_part(message)
    if part is None:
        return ""
    text = _part_text(part)
    if part.get_content_type() == "text/html":
        text = html_to_text(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "")
    return text if len(text) <= MAX_QUOTED_CHARS else text[:MAX_QUOTED_CHARS] + "\n[…]"


def _date(message: Message) -> str:
    value = header_text(message, "Date")
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return value
    return f"{moment:%a}, {moment.day} {moment:%b %Y at %H:%M}"


def quoted(message: EmailMessage, mode: ReplyMode) -> str:
    """The reply's starting text: blank lines to write in, then the quoted original (or the forwarded one)."""
    text = body_text(message).rstrip()
    sender = _join(_mailboxes(message, "From")[:1]) or header_text(message, "From") or "someone"
    if mode is ReplyMode.FORWARD:
        lines = ["---------- Forwarded message ----------", f"From: {header_text(message, 'From')}"]
        lines += [f"{name}: {header_text(message, name)}" for name in ("Date", "Subject", "To", "Cc")]
        header = "\n".join(line for line in lines if not line.endswith(": "))
        return f"\n\n{header}\n\n{text}\n"
    date = _date(message)
    attribution = f"On {date}, {sender} wrote:" if date else f"{sender} wrote:"
    body = "\n".join(f"> {line}" if line and not line.startswith(">") else f">{line}" for line in text.split("\n"))
    return f"\n\n{attribution}\n{body}\n"


def _filename(part: Message, index: int, content_type: str) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:
        name = ""
    name = clean(re.split(r"[/\\]", name)[-1])[:200]
    if name:
        return name
    if content_type == "message/rfc822":
        return f"forwarded-message-{index + 1}.eml"
    return f"attachment-{index + 1}{mimetypes.guess_extension(content_type) or '.bin'}"


def _content(part: Message) -> bytes | None:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        first = inner[0] if isinstance(inner, list) and inner else None
        try:
            return first.as_bytes(policy=_AS_STORED) if isinstance(first, Message) else None
        except Exception:
            return None
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else None


def attachments(message: EmailMessage) -> list[Attachment]:
    """The original's attachments, in a stable order: parts named or marked "attachment", and
    attached messages whole (sent on as .eml files: a base64 message/rfc822 part breaks RFC 2046 5.2.1)."""
    body = _body_part(message)
    parts: list[Message] = []

    def visit(part: Message, depth: int) -> None:
        content_type = part.get_content_type()
        if depth > MAX_DEPTH or part is body:
            return
        if content_type == "message/rfc822" and part is not message:
            parts.append(part)
        elif part.is_multipart():
            for sub in part.get_payload():
                if isinstance(sub, Message):
                    visit(sub, depth + 1)
        elif part is not message:
            try:
                disposition, named = part.get_content_disposition(), part.get_filename()
            except Exception:
                disposition, named = "attachment", None
            if disposition == "attachment" or named:
                parts.append(part)

    visit(message, 0)
    found = []
    for index, part in enumerate(parts):
        content = _content(part)
        if content is None:
            continue
        content_type = part.get_content_type()
        filename = _filename(part, index, content_type)
        if content_type == "message/rfc822" or not _CONTENT_TYPE.match(content_type):
            content_type = "application/octet-stream"
        found.append(Attachment(filename=filename, content=content, content_type=content_type))
    return found
