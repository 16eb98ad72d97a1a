"""The fast FETCH reader agrees with imapclient's general parser on every shape it accepts,
and hands every other shape back (None) instead of guessing."""

from __future__ import annotations

from typing import Any

import pytest
from imapclient.response_parser import parse_fetch_response

from service.protocols.imap.fetch import parse_plain_fetch, parse_sizes

DOVECOT_SHAPE: list[Any] = [
    (b'1 (UID 41 FLAGS (\\Seen $Label1) INTERNALDATE "17-Jul-1996 02:44:25 -0700" BODY[] {5}', b"hello"),
    b")",
    b"2 (FLAGS (\\Deleted))",  # unsolicited: another message's flags changed
    (b'3 (UID 43 FLAGS () INTERNALDATE "01-Jan-2024 00:00:00 +0000" BODY[] {0}', b""),
    b")",
]
ITEMS_AFTER_THE_BODY: list[Any] = [
    (b"1 (UID 7 BODY[] {3}", b"abc"),
    b' FLAGS (\\Flagged) INTERNALDATE "05-Mar-2024 10:11:12 +0100")',
]


@pytest.mark.parametrize("data", [DOVECOT_SHAPE, ITEMS_AFTER_THE_BODY])
def test_agrees_with_imapclient(data: list[Any]) -> None:
    fast = parse_plain_fetch(data)
    assert fast is not None
    general = parse_fetch_response(data, normalise_times=False, uid_is_key=True)
    expected = {
        uid: (item[b"BODY[]"], list(item[b"FLAGS"]), item[b"INTERNALDATE"])
        for uid, item in general.items()
        if b"BODY[]" in item
    }
    assert {uid: (raw, list(flags), date) for uid, (raw, flags, date) in fast.items()} == expected


@pytest.mark.parametrize(
    "data",
    [
        [(b"1 (UID 7 X-EXTRA {3}", b"abc"), (b" BODY[] {3}", b"abc"), b")"],  # two literals in one response
        [(b"1 (UID 7 BODY[]<0> {3}", b"abc"), b")"],  # a partial body
        [(b"1 (FLAGS () BODY[] {3}", b"abc"), b")"],  # no UID
        [(b"1 (UID 7 FLAGS () BODY[] {3}", b"abc")],  # no trailer
        [(b"1 (UID 7 FLAGS () BODY[] {3}", b"abc"), b")", b'2 (UID 8 FLAGS () BODY[] "abc")'],  # quoted body
        [b"1 (UID 7 FLAGS () BODY[] NIL)", (b"2 (UID 8 FLAGS () BODY[] {3}", b"abc"), b")"],  # NIL body
    ],
)
def test_other_shapes_go_to_the_general_parser(data: list[Any]) -> None:
    assert parse_plain_fetch(data) is None


def test_an_unreadable_internaldate_is_none_not_an_error() -> None:
    parsed = parse_plain_fetch([(b'1 (UID 9 FLAGS () INTERNALDATE "yesterday" BODY[] {1}', b"x"), b")"])
    assert parsed == {9: (b"x", [], None)}


@pytest.mark.parametrize(
    "data",
    [
        [b"1 (UID 41 RFC822.SIZE 1200)", b"2 (FLAGS (\\Deleted))", b"3 (RFC822.SIZE 7 UID 43)"],
        [b"1 (uid 41 rfc822.size 0)"],
        [],
    ],
)
def test_sizes_agree_with_imapclient(data: list[Any]) -> None:
    fast = parse_sizes(data)
    general = parse_fetch_response(data, normalise_times=False, uid_is_key=True)
    assert fast == {uid: item[b"RFC822.SIZE"] for uid, item in general.items() if b"RFC822.SIZE" in item}


@pytest.mark.parametrize(
    "data",
    [
        [b"1 (RFC822.SIZE 1200)"],  # no UID: the general parser keys it as it can
        [b"1 (UID 41)"],  # no size
        [(b"1 (UID 41 X-EXTRA {3}", b"abc"), b" RFC822.SIZE 12)"],  # a literal
        [b"1 UID 41 RFC822.SIZE 12"],  # not parenthesised
    ],
)
def test_other_size_shapes_go_to_the_general_parser(data: list[Any]) -> None:
    assert parse_sizes(data) is None
