"""Reading the few IMAP responses push cares about, and writing its command arguments.

A response comes from `wire.Wire.read_response` as text parts and literals. `tokens` turns it into
atoms, strings (quoted, RFC 3501 section 4.3, with their backslash escapes undone, or literals) and
parentheses, enough for `* n EXISTS`, `* n EXPUNGE`, `* CAPABILITY ...`, `* LIST (...) "/" name`
and RFC 5465's `* STATUS name (MESSAGES n UIDNEXT m)`. Mailbox names are modified UTF-7
(RFC 3501 section 5.1.3); `mailbox_name` decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from imapclient.imap_utf7 import decode as decode_utf7

from service.protocols.imap.folders import slash_path

OPEN, CLOSE = b"(", b")"


@dataclass(frozen=True, slots=True)
class String:
    """A quoted string or literal: never a keyword, whatever its bytes."""

    value: bytes


Token = bytes | String


def tokens(parts: list[bytes]) -> list[Token]:
    """The tokens of one response (`parts` as read_response gives them)."""
    out: list[Token] = []
    for index, part in enumerate(parts):
        if index % 2:
            out.append(String(part))
            continue
        _scan(part, out)
    return out


def _scan(text: bytes, out: list[Token]) -> None:
    position, size = 0, len(text)
    while position < size:
        char = text[position : position + 1]
        if char == b" ":
            position += 1
        elif char in (OPEN, CLOSE):
            out.append(char)
            position += 1
        elif char == b'"':
            value = bytearray()
            position += 1
            while position < size and text[position : position + 1] != b'"':
                if text[position : position + 1] == b"\\":
                    position += 1
                value += text[position : position + 1]
                position += 1
            out.append(String(bytes(value)))
            position += 1
        else:
            end = position
            while end < size and text[end : end + 1] not in (b" ", OPEN, CLOSE, b'"'):
                end += 1
            out.append(text[position:end])
            position = end


def text_of(token: Token) -> bytes:
    return token.value if isinstance(token, String) else token


def mailbox_name(token: Token, delimiter: str | None) -> str:
    """A mailbox name from the wire as service/protocols/imap/folders.py gives it: decoded from
    modified UTF-7, "/" as delimiter. INBOX is case-insensitive (RFC 3501 5.1) and spelt "INBOX"."""
    raw = text_of(token)
    name = _utf7(raw) if isinstance(token, bytes) or raw.isascii() else raw.decode("utf-8", "replace")
    if name.upper() == "INBOX":
        return "INBOX"
    return slash_path(name, delimiter)


def _utf7(raw: bytes) -> str:
    """Modified UTF-7 decoded; a name that is not valid modified UTF-7 (a broken server) is kept
    as its ASCII text rather than ending the connection's watch."""
    try:
        return str(decode_utf7(raw))
    except ValueError:  # UnicodeDecodeError among others
        return raw.decode("ascii", "replace")


def status_counts(items: list[Token]) -> dict[bytes, int]:
    """`MESSAGES 3 UIDNEXT 4` (inside the parentheses) as {b"MESSAGES": 3, b"UIDNEXT": 4}."""
    counts: dict[bytes, int] = {}
    for key, value in zip(items[::2], items[1::2], strict=False):
        if isinstance(key, bytes) and isinstance(value, bytes) and value.isdigit():
            counts[key.upper()] = int(value)
    return counts


def parenthesised(found: list[Token], start: int) -> list[Token]:
    """The tokens inside the parentheses opening at `start` (flat: nested ones are kept as tokens)."""
    if start >= len(found) or found[start] != OPEN:
        return []
    inside: list[Token] = []
    depth = 0
    for token in found[start:]:
        if token == OPEN:
            depth += 1
            if depth == 1:
                continue
        elif token == CLOSE:
            depth -= 1
            if depth == 0:
                break
        inside.append(token)
    return inside


def astring(value: str) -> tuple[bytes, bytes | None]:
    """An argument for a command line: a quoted string when that can hold it (printable ASCII,
    `"` and `\\` escaped), else a literal: (b"{n}", the bytes) to send after the server's "+".
    Passwords go this way, so no character of them can end the command line early."""
    data = value.encode("utf-8")
    if data.isascii() and all(32 <= byte < 127 for byte in data) and len(data) < 1000:
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"', None
    return b"{%d}" % len(data), data
