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
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser

import nh3

BODY_TEXT_LIMIT = 64 * 1024
PART_BYTES_LIMIT = 256 * 1024  # never decode more of one part than this
_MAX_PARTS = 200
_MAX_DEPTH = 100  # multiparts inside multiparts (the email package recurses until RecursionError)
_ENCODED_LIMIT = 2 * PART_BYTES_LIMIT  # encoded bytes read of a text part (base64 needs 4/3)
_HEADER_LIMIT = 64 * 1024  # of a part's header block
_HEADER_PARSER = BytesParser(policy=policy.compat32)
_PARSE_FAILURES = (Exception, RecursionError)
_NOT_WORD = re.compile(r"[\W_]+")
_LINE_END = re.compile(rb"\r\n|\r|\n")
# A header block of nothing but fields and their continuation lines (CRLF or LF), which the
# parser reads field by field; and in it the Content-* fields, the only ones read here.
_ONLY_FIELDS = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r?\n|[ \t][^\r\n]*\r?\n)*")
_CONTENT_FIELDS = re.compile(rb"^content-[\x21-\x39\x3b-\x7e]*:[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*", re.I | re.M)
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


@dataclass(slots=True)
class _Found:
    plain: list[str] = field(default_factory=list)
    markup: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    parts: int = 0


def _body_and_names(raw: bytes) -> tuple[str, str]:
    found = _Found()
    _walk(raw, 0, len(raw), None, 0, found)
    texts = found.plain or [html_text(m) for m in found.markup]
    body = " ".join(" ".join(t.split()) for t in texts)
    return body[:BODY_TEXT_LIMIT], " ".join(found.names)


def _walk(raw: bytes, start: int, end: int, default: str | None, depth: int, found: _Found) -> None:
    """Visit the MIME part in `raw[start:end]` (RFC 2045, 2046) and the parts inside it.

    The email package parses each part's header; the bodies are never parsed whole: a
    multipart's parts are located by searching for its boundary in the bytes (no copy), and
    only a text part's first `_ENCODED_LIMIT` bytes are decoded. A message with a 50 MB
    attachment thus costs a few header parses, not a parse (and several copies) of 50 MB.
    """
    if found.parts >= _MAX_PARTS or depth > _MAX_DEPTH:
        return
    found.parts += 1
    headers, content = _headers(raw, start, end)
    if default:
        headers.set_default_type(default)
    maintype, subtype = headers.get_content_maintype(), headers.get_content_subtype()
    if maintype == "multipart":
        boundary = headers.get_boundary()
        inner = "message/rfc822" if subtype == "digest" else None
        for part_start, part_end in (
            _parts(raw, content, end, boundary.encode("utf-8", "surrogateescape")) if boundary else ()
        ):
            _walk(raw, part_start, part_end, inner, depth + 1, found)
        return
    if maintype == "message" and subtype != "delivery-status":  # an enclosed message, as compat32 reads it
        _walk(raw, content, end, None, depth + 1, found)
        return
    with contextlib.suppress(*_PARSE_FAILURES):
        name = _filename(headers)
        if name:
            found.names.append(name)
            return
        if (headers.get("content-disposition") or "").strip().lower().startswith("attachment"):
            return
        if maintype == "text" and subtype in ("plain", "html"):
            stop = min(end, content + _ENCODED_LIMIT)
            if stop < end:  # cut at a line end, so no encoded character is split
                newline = raw.rfind(b"\n", content, stop)
                stop = newline + 1 if newline > content else stop
            headers.set_payload(raw[content:stop].decode("ascii", "surrogateescape"))
            (found.plain if subtype == "plain" else found.markup).append(_decoded(headers))


def _headers(raw: bytes, start: int, end: int) -> tuple[Message, int]:
    """A part's header fields (compat32, as `message_from_bytes` reads them) and where its body starts.

    The header ends at the first empty line (RFC 5322 2.1); a part that starts with the
    empty line has no fields (RFC 2046 5.1.1). When the empty line is missing, the parser
    stops at the first line that is not a field, and the body starts there.
    """
    if raw.startswith(b"\r\n", start, end):
        return Message(), start + 2
    if raw.startswith(b"\n", start, end):
        return Message(), start + 1
    crlf = raw.find(b"\r\n\r\n", start, min(end, start + _HEADER_LIMIT))
    lf = raw.find(b"\n\n", start, crlf + 2 if crlf >= 0 else min(end, start + _HEADER_LIMIT))
    if lf >= 0 and (crlf < 0 or lf < crlf + 2):
        head_end, body = lf + 1, lf + 2
    elif crlf >= 0:
        head_end, body = crlf + 2, crlf + 4
    else:
        head_end = body = min(end, start + _HEADER_LIMIT)
    head = raw[start:head_end]
    if _ONLY_FIELDS.fullmatch(head):  # the usual case: parse only the fields read here (Content-*)
        return _HEADER_PARSER.parsebytes(b"".join(_CONTENT_FIELDS.findall(head)), headersonly=True), body
    headers = _HEADER_PARSER.parsebytes(head, headersonly=True)
    # The lines after the fields, before any empty line, as the parser kept them (get_payload()
    # would replace their 8-bit bytes, changing their length).
    spilled = getattr(headers, "_payload", None)
    if isinstance(spilled, str) and spilled:
        spill = spilled.encode("ascii", "surrogateescape")
        if raw.endswith(spill, start, head_end):
            body = head_end - len(spill)
        else:  # the parser dropped a line ending on the way (an mbox "From " line last, bare CR)
            body = max(raw.find(_LINE_END.split(spill, maxsplit=1)[0], start, head_end), start)
        headers.set_payload("")
    return headers, body


def _parts(raw: bytes, start: int, end: int, boundary: bytes) -> Iterator[tuple[int, int]]:
    """The (start, end) of each body part between a multipart's delimiter lines (RFC 2046 5.1.1):
    `--boundary` at the start of a line, then only `--` (the close) and blanks. The line break
    before a delimiter belongs to it; preamble and epilogue are skipped. Without a close
    delimiter the last part runs to the end, as the email package reads it."""
    marker = b"--" + boundary
    part_start: int | None = None
    position = start
    while (at := raw.find(marker, position, end)) >= 0:
        position = at + len(marker)
        if at > start and raw[at - 1] not in b"\r\n":
            continue
        window = min(end, position + 1000)
        line = _LINE_END.search(raw, position, window)
        if line is None and window < end:
            continue
        line_end = line.end() if line else end
        rest = raw[position:line_end].rstrip(b"\r\n")
        close = rest.startswith(b"--")
        if rest[2 if close else 0 :].strip(b" \t"):
            continue  # a longer boundary, or text after it: not a delimiter
        if part_start is not None:
            before = at - 2 if raw.startswith(b"\r\n", at - 2, at) else at - 1 if at > part_start else at
            yield part_start, max(before, part_start)
        if close:
            return
        part_start = position = line_end
    if part_start is not None and part_start < end:
        yield part_start, end


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
