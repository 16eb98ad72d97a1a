"""Header values that stay one header: the single rule for everything Tributary writes into a header.

Header injection (CWE-93) needs a line break inside a value. Refusing raw CR
and LF is not enough, for three reasons verified on Python 3.11.7, which also
lacks the email package's own ``verify_generated_headers`` guard (3.13+):

- the email package *decodes* RFC 2047 encoded words found in values it is
  given (``=?utf-8?q?a=0D=0ABcc:_x@y?=`` becomes "a", CRLF, "Bcc: x@y") and
  folds the decoded text, so an encoded line break is written as a real one;
  so are encoded words in a display name (even quoted, RFC 2047 5 forbids
  them there) and in an attachment's file name;
- ``str.splitlines``, which the folding uses, also breaks at VT, FF, FS, GS,
  RS, NEL (U+0085), LINE SEPARATOR (U+2028) and PARAGRAPH SEPARATOR (U+2029);
- a received value may be encoded twice, so one decoding can yield another
  encoded word.

So every value is judged *after* decoding, repeatedly, and control characters
are the C0 set but HT (RFC 5322 WSP), DEL, the C1 set, U+2028 and U+2029.
Values the user typed are refused with one sentence (`check_header_value`);
values taken from received mail or stored settings are cleaned, controls
becoming spaces (`header_text`). `set_header` is the only way `compose` puts a
value into a message, and `check_generated` is the last guard on the bytes.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections import Counter
from email.message import EmailMessage

from service.errors import UnsafeHeaderValue

# ... and lone surrogates: no charset can write them (the parser's stand-ins for undecodable bytes)
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# RFC 2047 2 (with the RFC 2231 5 language suffix), matched anywhere: a superset of what the email package decodes
ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([qQbB])\?([^?]*)\?=")
MAX_ROUNDS = 8
# RFC 2045 5.1 type "/" subtype, tokens only: no parameters, spaces or line breaks
CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_FIELD_NAME = re.compile(rb"^([!-9;-~]+):")  # RFC 5322 2.2: printable ASCII but the colon


def _decode_word(match: re.Match[str]) -> str:
    charset, encoding, text = match.groups()
    try:
        if encoding in "qQ":
            raw = quopri.decodestring(text.replace("_", " ").encode("ascii", "replace"), header=True)
        else:
            raw = base64.b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return match.group(0)
    try:
        return raw.decode(charset, errors="replace")
    except (LookupError, UnicodeError, ValueError):  # unknown, or no text codec (rot13, base64, idna ...)
        return raw.decode("latin-1")  # every byte a character: a control byte stays visible to the check


def decoded(value: str) -> str:
    """`value` with every encoded word decoded, again and again while decoding still changes it."""
    for _ in range(MAX_ROUNDS):
        result = ENCODED_WORD.sub(_decode_word, value)
        if result == value:
            return result
        value = result
    return value


def has_controls(value: str) -> bool:
    """True when the value, as typed or once decoded, holds a character that could end a header line."""
    return bool(CONTROL.search(value) or CONTROL.search(decoded(value)))


def check_header_value(value: str, what: str) -> str:
    """A typed value for a header, unchanged; UnsafeHeaderValue when it holds (or decodes to) a control."""
    if has_controls(value):
        raise UnsafeHeaderValue(f"The {what} cannot contain line breaks or other control characters.")
    return value


def without_surrogates(value: str) -> str:
    """Raw 8-bit bytes the email parser kept as surrogate escapes, read as UTF-8 (the usual charset
    of unlabelled 8-bit headers); anything still unreadable becomes U+FFFD."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def header_text(value: str) -> str:
    """A received or stored value made safe for a header: decoded, controls turned into spaces, one line."""
    value = without_surrogates(value)
    for _ in range(MAX_ROUNDS):
        cleaned = " ".join(CONTROL.sub(" ", decoded(value)).split())
        if cleaned == value:
            break
        value = cleaned
    return " ".join(CONTROL.sub(" ", value).split())


def check_content_type(value: str) -> str:
    """A type/subtype for an attachment (lowercased), or UnsafeHeaderValue."""
    content_type = value.strip().lower()
    if not CONTENT_TYPE.match(content_type):
        raise UnsafeHeaderValue(f"{value[:100]!r} is not a content type such as application/pdf.")
    return content_type


def set_header(message: EmailMessage, name: str, value: object, what: str) -> None:
    """``message[name] = value``, refused when the value the email package keeps (decoded) holds a control."""
    try:
        message[name] = value
        kept = str(message[name])
    except Exception as exc:  # the email package's own refusals (ValueError) and parser failures
        raise UnsafeHeaderValue(f"The {what} cannot be written into a message header.") from exc
    if has_controls(kept):
        del message[name]
        raise UnsafeHeaderValue(f"The {what} cannot contain line breaks or other control characters.")


def _field_names(block: bytes) -> Counter[str]:
    """The field names of a header block; UnsafeHeaderValue when a line is neither a field nor a fold."""
    names: Counter[str] = Counter()
    for line in block.removesuffix(b"\r\n").split(b"\r\n"):
        if b"\r" in line or b"\n" in line or b"\0" in line:
            raise UnsafeHeaderValue(INJECTED)
        if line[:1] in (b" ", b"\t") and names:  # RFC 5322 2.2.3: a folded continuation
            continue
        field = _FIELD_NAME.match(line)
        if field is None:
            raise UnsafeHeaderValue(INJECTED)
        names[field.group(1).decode("ascii").lower()] += 1
    return names


INJECTED = "The message was not sent: one of its header values would have added header lines of its own."


def _header_blocks(data: bytes, message: EmailMessage) -> list[bytes]:
    """Each part's header block in the generated bytes, in the order `message.walk()` gives the parts."""
    end = data.find(b"\r\n\r\n")
    blocks = [data[: end if end >= 0 else len(data)]]
    starts: list[int] = []
    for part in message.walk():
        boundary = part.get_boundary() if part.is_multipart() else None
        if boundary is not None:
            delimiter = b"\r\n--" + boundary.encode("ascii") + b"\r\n"  # RFC 2046 5.1.1
            position = data.find(delimiter)
            while position >= 0:
                starts.append(position + len(delimiter))
                position = data.find(delimiter, position + 1)
    for start in sorted(starts):
        end = data.find(b"\r\n\r\n", start)
        blocks.append(data[start : end if end >= 0 else len(data)])
    return blocks


def check_generated(data: bytes, message: EmailMessage) -> bytes:
    """The last guard, on the bytes that will be sent: every header block of every part holds exactly
    the fields that were set, each line a field or a fold of one (UnsafeHeaderValue otherwise)."""
    parts = list(message.walk())
    blocks = _header_blocks(data, message)
    if len(blocks) != len(parts):
        raise UnsafeHeaderValue(INJECTED)
    for block, part in zip(blocks, parts, strict=True):
        if _field_names(block) != Counter(name.lower() for name in part):
            raise UnsafeHeaderValue(INJECTED)
    return data
