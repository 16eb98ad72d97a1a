"""Reading UID FETCH responses (RFC 3501 7.4.2) of the shape bulk retrieval asks for, fast.

imaplib hands over a FETCH response with a body as a (prefix, literal) tuple followed
by the bytes after the literal; the prefix ends with the literal's announcement
"BODY[] {n}". Everything else of interest (UID, FLAGS, INTERNALDATE) is in the prefix
or the trailer, as atoms, a parenthesised list and a quoted string.

A server may also send a body as a quoted string or NIL (RFC 3501 4.3, 4.5:
`BODY[] ""`, `BODY[] NIL`); such a response is a plain line, not a tuple, and is
handed back (None) for imapclient's general parser, never skipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from imapclient.datetime_util import parse_to_datetime

_FETCH_HEAD = re.compile(rb"^\d+ \((.*)BODY\[\] \{\d+\}$", re.DOTALL | re.IGNORECASE)
_FETCH_UID = re.compile(rb"(?:^|[ (])UID (\d+)", re.IGNORECASE)
_FETCH_FLAGS = re.compile(rb"(?:^|[ (])FLAGS \(([^)]*)\)", re.IGNORECASE)
_BODY_WITHOUT_LITERAL = re.compile(rb"BODY\[\]", re.IGNORECASE)
_FETCH_DATE = re.compile(rb'(?:^|[ (])INTERNALDATE "([^"]+)"', re.IGNORECASE)
Parsed = dict[int, tuple[bytes | None, Sequence[Any], datetime | None]]


def parse_plain_fetch(data: list[Any]) -> Parsed | None:
    """The common shape of `UID FETCH (UID FLAGS INTERNALDATE BODY.PEEK[])` responses, read with
    three regular expressions: per message a (prefix ending in "BODY[] {n}", literal) tuple,
    then the rest up to ")". imapclient's general parser tokenises every byte of the prefixes,
    a third of a bulk download's CPU. Any other shape returns None, for the general parser."""
    parsed: Parsed = {}
    index = 0
    while index < len(data):
        item = data[index]
        if not isinstance(item, tuple):
            if isinstance(item, bytes) and _BODY_WITHOUT_LITERAL.search(item):
                return None  # a quoted or NIL body: the general parser reads it
            index += 1  # an unsolicited FETCH without a body (a flag change): nothing to store
            continue
        head = _FETCH_HEAD.match(item[0])
        trailer = data[index + 1] if index + 1 < len(data) else None
        if head is None or not isinstance(trailer, bytes) or not trailer.endswith(b")"):
            return None
        meta = head.group(1) + b" " + trailer[:-1]
        uid, flags, date = _FETCH_UID.search(meta), _FETCH_FLAGS.search(meta), _FETCH_DATE.search(meta)
        if uid is None or flags is None or b"{" in meta:
            return None
        internal = _internal_date(date.group(1)) if date is not None else None
        parsed[int(uid.group(1))] = (item[1], flags.group(1).split(), internal)
        index += 2
    return parsed


def _internal_date(text: bytes) -> datetime | None:
    try:
        parsed: datetime = parse_to_datetime(text, normalise=False)
    except ValueError:
        return None
    return parsed


def parse_general(response: dict[Any, Any]) -> Parsed:
    """imapclient's parsed FETCH items as (body or None, flags, INTERNALDATE) per UID."""
    return {
        int(uid): (item.get(b"BODY[]"), item.get(b"FLAGS", ()), item.get(b"INTERNALDATE"))
        for uid, item in response.items()
    }


_SIZE_LINE = re.compile(rb"^\d+ \((.*)\)$", re.DOTALL)
_FETCH_SIZE = re.compile(rb"(?:^|[ (])RFC822\.SIZE (\d+)", re.IGNORECASE)


def parse_sizes(data: list[Any]) -> dict[int, int] | None:
    """UID -> RFC822.SIZE from the answer to `UID FETCH uids (UID RFC822.SIZE)`: one line per
    message, `n (UID u RFC822.SIZE s)` in any order and case. imapclient's general parser
    tokenises every line, a noticeable cost over 10,000 messages. A line without UID or size
    is an unsolicited FETCH (a flag change) when it has neither, and is skipped; any other
    shape (a literal, a line with one of the two) returns None, for the general parser."""
    sizes: dict[int, int] = {}
    for item in data:
        line = _SIZE_LINE.match(item) if isinstance(item, bytes) else None
        if line is None:
            return None
        uid, size = _FETCH_UID.search(line.group(1)), _FETCH_SIZE.search(line.group(1))
        if uid is None and size is None:
            continue
        if uid is None or size is None:
            return None
        sizes[int(uid.group(1))] = int(size.group(1))
    return sizes
