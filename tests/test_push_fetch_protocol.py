"""Fetching INBOX's new mail over the push connection (PushConnection.sizes_after / fetch_new, the
fast path's protocol), against a scripted server for the answers a real one gives only sometimes:
bodies quoted, literal or NIL, FETCH items in any order, unsolicited FETCH without a UID, and the
last message below the cursor that `n:*` always names (RFC 3501 6.4.8)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from service.errors import ServerUnavailable
from service.protocols.imap.push import PushConnection, PushNews
from service.protocols.imap.push.fetched import fetch_items
from tests.fixtures.scripted_push import ScriptedPushServer
from tests.test_imap_push_protocol import SOON, FloodingServer, scripted

INBOX_NEWS = PushNews(frozenset({"INBOX"}))


@pytest.fixture
async def connections() -> AsyncIterator[list[PushConnection]]:
    opened: list[PushConnection] = []
    yield opened
    for connection in opened:
        await connection.close()


async def listening(connections: list[PushConnection], server: ScriptedPushServer) -> PushConnection:
    """Open, idle, and hear `* 4 EXISTS` (two new messages after EXAMINE's 2)."""
    connection = PushConnection(scripted(server.port))
    connections.append(connection)
    await connection.open()
    server.send(b"* 4 EXISTS\r\n")
    assert await asyncio.wait_for(connection.wait(), SOON) == INBOX_NEWS
    return connection


def commands(server: ScriptedPushServer) -> list[bytes]:
    return [line.rstrip(b"\r\n") for line in server.received]


async def test_sizes_after_ends_idle_filters_the_last_message_below_and_idles_again(
    connections: list[PushConnection],
) -> None:
    replies = [
        "* 3 FETCH (UID 7 RFC822.SIZE 100)\r\n* 4 FETCH (RFC822.SIZE 50 UID 8)\r\n",
        "* 4 FETCH (UID 8 RFC822.SIZE 50)\r\n",
    ]
    with ScriptedPushServer(exists=2, fetch_replies=replies) as server:
        connection = await listening(connections, server)
        assert connection.uidvalidity == 1  # EXAMINE's [UIDVALIDITY 1]
        assert await connection.sizes_after(6) == {7: 100, 8: 50}
        sent = commands(server)
        assert sent[-2:][0] == b"DONE"
        assert sent[-1].endswith(b"UID FETCH 7:* (UID RFC822.SIZE)")
        assert await connection.sizes_after(8) == {}  # 9:* named the last message, UID 8: not new
        # Both answers reached message 4, the last announced: the news is covered, so wait() idles
        # again (a second IDLE) and returns only for the next EXISTS.
        waiting = asyncio.ensure_future(connection.wait())
        await asyncio.to_thread(_until, lambda: server.idles == 2)
        server.send(b"* 5 EXISTS\r\n")
        assert await asyncio.wait_for(waiting, SOON) == INBOX_NEWS


async def test_news_not_reached_by_the_answer_stays_news(connections: list[PushConnection]) -> None:
    # A message arrives (EXISTS 5) while message 4 is the last the answer names: still news.
    replies = ["* 5 EXISTS\r\n* 4 FETCH (UID 8 RFC822.SIZE 50)\r\n"]
    with ScriptedPushServer(exists=2, fetch_replies=replies) as server:
        connection = await listening(connections, server)
        assert await connection.sizes_after(7) == {8: 50}
        assert await asyncio.wait_for(connection.wait(), SOON) == INBOX_NEWS
        assert server.idles == 1  # returned at once, without idling again


async def test_fetch_new_bodies_quoted_literal_or_nil_items_in_any_order(connections: list[PushConnection]) -> None:
    reply = (
        "* 1 FETCH (FLAGS (\\Seen))\r\n"  # unsolicited, no UID: not an answer
        '* 3 FETCH (BODY[] {5}\r\nhello UID 7 FLAGS (\\Seen \\Flagged) INTERNALDATE " 6-Dec-2026 01:02:03 +0100")\r\n'
        '* 4 FETCH (UID 8 BODY[] "hi" FLAGS ())\r\n'
        "* 5 FETCH (UID 9 FLAGS () BODY[] NIL)\r\n"  # no body: left out, the caller sees it missing
        '* 2 FETCH (UID 6 BODY[] "old")\r\n'  # at or below the cursor: not new
    )
    with ScriptedPushServer(exists=2, fetch_replies=[reply]) as server:
        connection = await listening(connections, server)
        fetched = await connection.fetch_new(6, [7, 8, 9])
        assert commands(server)[-1].endswith(b"UID FETCH 7,8,9 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    assert [(m.uid, m.raw, m.flags) for m in fetched] == [
        (7, b"hello", frozenset({"\\Seen", "\\Flagged"})),
        (8, b"hi", frozenset()),
    ]
    date = fetched[0].internal_date
    assert date is not None
    assert (date.day, date.hour, date.minute, date.utcoffset()) == (6, 1, 2, timedelta(hours=1))
    assert fetched[1].internal_date is None


async def test_fetch_new_without_uids_asks_for_everything_above(connections: list[PushConnection]) -> None:
    with ScriptedPushServer(exists=2, fetch_replies=['* 4 FETCH (UID 8 BODY[] "x")\r\n']) as server:
        connection = await listening(connections, server)
        assert [m.uid for m in await connection.fetch_new(8)] == []  # 9:* named UID 8
        assert commands(server)[-1].endswith(b"UID FETCH 9:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")


def test_fetch_items_refuses_what_is_not_a_fetch() -> None:
    assert fetch_items([b"* 4 EXISTS"]) is None
    assert fetch_items([b"* OK [UIDVALIDITY 3] ok"]) is None
    assert fetch_items([b'* 4 FETCH ("UID" 3)']) is None
    item = fetch_items([b"* 4 FETCH (UID 3 RFC822.SIZE x)"])
    assert item is not None
    assert (item.uid, item.size) == (3, None)


def _until(check: Callable[[], bool], seconds: float = SOON) -> None:
    """Block (in a worker thread) until `check()` is true."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not within the time allowed")
        time.sleep(0.01)


async def test_a_fetch_answer_beyond_the_announced_sizes_is_refused(connections: list[PushConnection]) -> None:
    big = "X" * (512 * 1024)
    replies = ["* 3 FETCH (UID 7 RFC822.SIZE 10)\r\n", f"* 3 FETCH (UID 7 BODY[] {{{len(big)}}}\r\n{big})\r\n"]
    with FloodingServer(exists=2, fetch_replies=replies) as server:  # hung up on, mid-answer
        connection = await listening(connections, server)
        assert await connection.sizes_after(6) == {7: 10}
        with pytest.raises(ServerUnavailable, match="malformed response"):
            await connection.fetch_new(6, [7])


async def test_many_fetch_responses_beyond_the_batch_are_refused(connections: list[PushConnection]) -> None:
    body = "X" * (60 * 1024)
    many = "".join(f"* 3 FETCH (UID 7 BODY[] {{{len(body)}}}\r\n{body})\r\n" for _ in range(8))
    replies = ["* 3 FETCH (UID 7 RFC822.SIZE 61440)\r\n", many]
    with FloodingServer(exists=2, fetch_replies=replies) as server:  # hung up on, mid-answer
        connection = await listening(connections, server)
        assert await connection.sizes_after(6) == {7: 61440}
        with pytest.raises(ServerUnavailable, match="malformed response"):
            await connection.fetch_new(6, [7])


async def test_a_messages_items_over_several_fetch_responses_are_merged(connections: list[PushConnection]) -> None:
    reply = (
        "* 3 FETCH (UID 7 BODY[] {5}\r\nhello)\r\n"
        '* 3 FETCH (UID 7 FLAGS (\\Seen) INTERNALDATE " 6-Dec-2026 01:02:03 +0100")\r\n'
        "* 4 FETCH (UID 8 FLAGS (\\Flagged))\r\n"
        '* 4 FETCH (BODY[] "hi")\r\n'  # the same message by its sequence number
    )
    with ScriptedPushServer(exists=2, fetch_replies=[reply]) as server:
        connection = await listening(connections, server)
        fetched = await connection.fetch_new(6, [7, 8])
    assert [(m.uid, m.raw, m.flags) for m in fetched] == [
        (7, b"hello", frozenset({"\\Seen"})),
        (8, b"hi", frozenset({"\\Flagged"})),
    ]
    assert fetched[0].internal_date is not None
