"""Reading `* n FETCH (...)` responses (RFC 3501 section 7.4.2) for push's fast path, which fetches
INBOX's new messages over the push connection itself (PushConnection.sizes_after / fetch_new).

Items come in any order; strings are quoted or literals (a body is normally a literal, but a
server may quote a short one, or send NIL for one it cannot give). A FETCH response without a UID
is not an answer to UID FETCH but an unsolicited flag change (RFC 3501 7.4.2): callers skip it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from imapclient.datetime_util import parse_to_datetime

from service.protocols.imap.push import parse


@dataclass(frozen=True, slots=True)
class FetchItems:
    """One message's FETCH items, each None when the server did not send it (or sent NIL)."""

    seq: int
    uid: int | None = None
    size: int | None = None
    flags: frozenset[str] = frozenset()
    internal_date: datetime | None = None
    body: bytes | None = None


def fetch_items(parts: list[bytes]) -> FetchItems | None:
    """The items of a `* n FETCH (...)` response; None for any other response."""
    found = parse.tokens(parts)
    if len(found) < 4 or found[0] != b"*" or not isinstance(found[1], bytes) or not found[1].isdigit():
        return None
    if parse.text_of(found[2]).upper() != b"FETCH":
        return None
    inside = parse.parenthesised(found, 3)
    values: dict[bytes, parse.Token | list[parse.Token]] = {}
    index = 0
    while index + 1 < len(inside):
        key = inside[index]
        if not isinstance(key, bytes):
            return None  # a string where an item name belongs: not a response we understand
        if inside[index + 1] == parse.OPEN:
            group = parse.parenthesised(inside, index + 1)
            values[key.upper()] = group
            index += len(group) + 3
        else:
            values[key.upper()] = inside[index + 1]
            index += 2
    return FetchItems(
        seq=int(found[1]),
        uid=_number(values.get(b"UID")),
        size=_number(values.get(b"RFC822.SIZE")),
        flags=frozenset(_flag(token) for token in _group(values.get(b"FLAGS"))),
        internal_date=_date(values.get(b"INTERNALDATE")),
        body=_string(values.get(b"BODY[]")),
    )


def merged(earlier: FetchItems, later: FetchItems) -> FetchItems:
    """One message's items from two FETCH responses (RFC 3501 7.4.2: a server may send a message's
    items over several, e.g. FLAGS apart from the body): what the later one sent wins."""
    return FetchItems(
        seq=later.seq,
        uid=later.uid if later.uid is not None else earlier.uid,
        size=later.size if later.size is not None else earlier.size,
        flags=later.flags or earlier.flags,
        internal_date=later.internal_date or earlier.internal_date,
        body=later.body if later.body is not None else earlier.body,
    )


def _number(value: parse.Token | list[parse.Token] | None) -> int | None:
    return int(value) if isinstance(value, bytes) and value.isdigit() else None


def _group(value: parse.Token | list[parse.Token] | None) -> list[parse.Token]:
    return value if isinstance(value, list) else []


def _flag(token: parse.Token) -> str:
    return parse.text_of(token).decode("ascii", "replace")


def _string(value: parse.Token | list[parse.Token] | None) -> bytes | None:
    """A quoted string or literal's bytes; None for NIL or anything else."""
    return value.value if isinstance(value, parse.String) else None


def _date(value: parse.Token | list[parse.Token] | None) -> datetime | None:
    """INTERNALDATE ("06-Dec-2026 01:00:00 +0000") with its offset, as the blocking session keeps it."""
    if not isinstance(value, parse.String):
        return None
    try:
        parsed: datetime = parse_to_datetime(value.value, normalise=False)
    except ValueError:
        return None
    return parsed
