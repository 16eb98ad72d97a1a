"""The search backlog (migration 0013): bulk retrieval queues its messages for the full-text
index, and the scheduler's job and every search index them, once each, whoever drains."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import col, delete

from service.config import Settings
from service.persistence import mailstore, migrations, search_backlog, search_index
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Message
from service.scheduler import Scheduler
from service.usecases.search import search
from tests.stored_bodies import user_with_inbox
from tests.test_search import make


async def queue(db: Database, user_id: int, folder_id: int, *raws: bytes) -> list[int]:
    """Store as bulk retrieval does: bodies first, then the rows, queued for the index."""
    incoming = await mailstore.prestore(db.bodies, [mailstore.IncomingMessage(raw=raw) for raw in raws])
    async with db.write() as session:
        return await mailstore.deliver_many(
            session, user_id=user_id, folder_id=folder_id, messages=incoming, search_later=True
        )


def held_texts(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make a drain stop while it derives a batch's text: `deriving` is set once it has read the
    batch, and it goes on when `release` is set."""
    deriving, release = threading.Event(), threading.Event()
    original = search_backlog._texts

    def slow_texts(*args: Any) -> Any:
        deriving.set()
        release.wait(10)
        return original(*args)

    monkeypatch.setattr(search_backlog, "_texts", slow_texts)
    return deriving, release


async def index_rows(db: Database) -> int:
    async with db.read() as session:
        return int((await session.exec(text("SELECT count(*) FROM message_search"))).one()[0])  # type: ignore[call-overload]


async def subjects(db: Database, user_id: int, query: str) -> list[str]:
    return [hit.message.subject for hit in (await search(db=db, user_id=user_id, query=query)).hits]


async def test_queued_mail_is_indexed_once_by_drains_racing_each_other(db: Database) -> None:
    user_id, inbox = await user_with_inbox(db)
    await queue(db, user_id, inbox, *(make(f"Report {n}", body=f"quarterly figures {n}") for n in range(7)))
    assert (await index_rows(db), await search_backlog.pending(db)) == (0, 7)
    # Three drains at once (a search, the job, a second worker): every message indexed exactly once.
    taken = await asyncio.gather(*(search_backlog.drain(db) for _ in range(3)))
    assert sum(taken) >= 7
    assert (await index_rows(db), await search_backlog.pending(db)) == (7, 0)
    assert len(await subjects(db, user_id, "quarterly")) == 7


async def test_a_search_indexes_only_its_searchers_queue_and_says_what_still_waits(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, alice_inbox = await user_with_inbox(db, "alice@example.test")
    bob, bob_inbox = await user_with_inbox(db, "bob@example.test")
    await queue(db, alice, alice_inbox, *(make(f"Alice {n}", body="lighthouse") for n in range(5)))
    await queue(db, bob, bob_inbox, make("Bob's", body="lighthouse"))
    monkeypatch.setattr(search_backlog, "CATCH_UP", 3)
    first = await search(db=db, user_id=alice, query="lighthouse")
    assert (len(first.hits), first.indexing) == (3, 2)
    assert await search_backlog.pending(db, user_id=bob) == 1  # another user's queue is not the searcher's work
    second = await search(db=db, user_id=alice, query="lighthouse")
    assert (len(second.hits), second.indexing) == (5, 0)
    assert await subjects(db, bob, "lighthouse") == ["Bob's"]
    assert (await search(db=db, user_id=alice, query="is:unread")).indexing == 0  # no words: no index needed


async def test_a_message_deleted_while_queued_is_skipped_and_an_unreadable_body_is_indexed_by_its_headers(
    settings: Settings,
) -> None:
    db = Database(settings.model_copy(update={"body_store": "files"}))
    try:
        user_id, inbox = await user_with_inbox(db)
        gone, damaged, fine = await queue(
            db,
            user_id,
            inbox,
            make("Deleted before indexing", body="zeppelin"),
            make("Torn body", body="zeppelin"),
            make("Whole", body="zeppelin"),
        )
        async with db.write() as session:
            await session.exec(delete(Message).where(col(Message.id) == gone))
        segment = settings.data_dir / "bodies" / "00000001.seg"
        data = bytearray(segment.read_bytes())
        torn = data.index(b"Torn body")
        data[torn : torn + 4] = b"XXXX"  # the body no longer matches its SHA-256: never read as text
        segment.write_bytes(bytes(data))
        assert await search_backlog.drain(db) == 2
        assert await search_backlog.pending(db) == 0
        assert await subjects(db, user_id, "zeppelin") == ["Whole"]
        assert await subjects(db, user_id, "subject:torn") == ["Torn body"]
        assert damaged != fine
    finally:
        await db.dispose()


async def test_rebuild_takes_what_it_indexes_off_the_queue(db: Database) -> None:
    user_id, inbox = await user_with_inbox(db)
    await queue(db, user_id, inbox, make("Invoice", body="copper kettle"), make("Receipt", body="copper pan"))
    assert await search_index.rebuild(db, user_id=user_id) == 2
    assert (await search_backlog.pending(db), await search_backlog.drain(db)) == (0, 0)
    assert await index_rows(db) == 2
    assert sorted(await subjects(db, user_id, "copper")) == ["Invoice", "Receipt"]


async def test_the_scheduler_job_indexes_everyones_queue(
    db: Database, settings: Settings, secret_box: SecretBox
) -> None:
    alice, alice_inbox = await user_with_inbox(db, "alice@example.test")
    bob, bob_inbox = await user_with_inbox(db, "bob@example.test")
    many = [make(f"Note {n}", body="harbour") for n in range(search_backlog.BATCH_MESSAGES + 3)]
    await queue(db, alice, alice_inbox, *many)
    await queue(db, bob, bob_inbox, make("Bob", body="harbour"))
    scheduler = Scheduler(settings=settings, db=db, secret_box=secret_box)
    assert await scheduler.search_index() == len(many) + 1  # more than one batch, both users
    assert (await search_backlog.pending(db), await index_rows(db)) == (0, len(many) + 1)


async def test_a_message_deleted_while_its_batch_is_being_indexed_is_deleted_without_a_deadlock(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL the drain holds its batch's queue rows while it derives their text; a delete
    # arriving then waits for it (the delete's cascade needs the queue row), and the drain's index
    # insert must not in turn wait for the deleted message row (a deadlock: one of them failed).
    user_id, inbox = await user_with_inbox(db)
    doomed, kept = await queue(db, user_id, inbox, make("Doomed", body="walrus"), make("Kept", body="walrus"))
    deriving, release = held_texts(monkeypatch)

    async def delete_doomed() -> None:
        async with db.write() as session:
            await session.exec(delete(Message).where(col(Message.id) == doomed))

    drain = asyncio.create_task(search_backlog.drain(db))
    await asyncio.to_thread(deriving.wait, 10)
    deleting = asyncio.create_task(delete_doomed())
    await asyncio.sleep(0.5)  # the delete is under way (on PostgreSQL: waiting for the drain)
    release.set()
    results = await asyncio.gather(drain, deleting, return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert (await search_backlog.pending(db), await index_rows(db)) == (0, 1)
    assert await subjects(db, user_id, "walrus") == ["Kept"]
    assert kept != doomed


async def test_a_rebuild_beside_a_drain_indexes_each_message_once_and_both_finish(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rebuild replaces a batch's index rows while the drain (holding the same messages' queue
    # rows on PostgreSQL) derives their text: whichever commits second must find the first's work.
    user_id, inbox = await user_with_inbox(db)
    await queue(db, user_id, inbox, make("Invoice", body="copper kettle"), make("Receipt", body="copper pan"))
    deriving, release = held_texts(monkeypatch)
    drain = asyncio.create_task(search_backlog.drain(db))
    await asyncio.to_thread(deriving.wait, 10)
    rebuilding = asyncio.create_task(search_index.rebuild(db, user_id=user_id))
    await asyncio.sleep(0.5)  # the rebuild is under way (on PostgreSQL: waiting for the drain's queue rows)
    release.set()
    results = await asyncio.gather(drain, rebuilding, return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert (await search_backlog.pending(db), await index_rows(db)) == (0, 2)
    assert sorted(await subjects(db, user_id, "copper")) == ["Invoice", "Receipt"]


async def test_a_message_id_reused_while_a_batch_is_indexed_gets_its_own_text_not_the_deleted_ones(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite gives a new row the id of a deleted newest one. A drain that read Alice's message and
    # finds its id queued again when it commits must not index Bob's new message with her words.
    alice, alice_inbox = await user_with_inbox(db, "alice@example.test")
    bob, bob_inbox = await user_with_inbox(db, "bob@example.test")
    (secret,) = await queue(db, alice, alice_inbox, make("Alice's plans", body="nightingale"))
    original = search_backlog._texts
    deriving, release = held_texts(monkeypatch)
    first = asyncio.create_task(search_backlog.index_pending(db))
    await asyncio.to_thread(deriving.wait, 10)
    if db.is_sqlite:  # (PostgreSQL: the delete waits for this batch; its ids come from a sequence)
        async with db.write() as session:
            await session.exec(delete(Message).where(col(Message.id) == secret))
        (reused,) = await queue(db, bob, bob_inbox, make("Bob's lunch", body="sandwich"))
        assert reused == secret
    release.set()
    await first
    monkeypatch.setattr(search_backlog, "_texts", original)
    await search_backlog.drain(db)
    assert await subjects(db, bob, "nightingale") == []
    if db.is_sqlite:
        assert await subjects(db, bob, "sandwich") == ["Bob's lunch"]
    assert await search_backlog.pending(db) == 0


async def test_a_search_whose_catch_up_fails_still_answers_and_says_what_waits(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    user_id, inbox = await user_with_inbox(db)
    await queue(db, user_id, inbox, make("Indexed", body="otter"))
    await search_backlog.drain(db)
    await queue(db, user_id, inbox, make("Waiting", body="otter"))

    async def unreadable(*args: Any, **kwargs: Any) -> int:
        raise OSError(5, "Input/output error")  # a segment the disk will not give back

    monkeypatch.setattr(search_backlog, "index_pending", unreadable)
    results = await search(db=db, user_id=user_id, query="otter")
    assert ([hit.message.subject for hit in results.hits], results.indexing) == (["Indexed"], 1)
    assert "indexing the searcher's queued messages failed" in caplog.text


async def test_a_body_the_disk_will_not_read_does_not_hold_up_the_queue(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(settings.model_copy(update={"body_store": "files"}))
    try:
        user_id, inbox = await user_with_inbox(db)
        broken, _ = await queue(db, user_id, inbox, make("Bad sector", body="puffin"), make("Fine", body="puffin"))
        read = db.bodies.segments.read

        def failing(message_id: int, ref: Any) -> bytes:
            if message_id == broken:
                raise OSError(5, "Input/output error")
            return read(message_id, ref)

        monkeypatch.setattr(db.bodies.segments, "read", failing)
        assert await search_backlog.drain(db) == 2
        assert await search_backlog.pending(db) == 0
        assert await subjects(db, user_id, "puffin") == ["Fine"]
        assert await subjects(db, user_id, "subject:sector") == ["Bad sector"]
    finally:
        await db.dispose()


async def test_mail_a_downgrade_left_unindexed_is_queued_again_by_the_upgrade(settings: Settings) -> None:
    db = Database(settings)
    user_id, inbox = await user_with_inbox(db)
    await queue(db, user_id, inbox, make("Indexed before", body="albatross"))
    await search_backlog.drain(db)
    await queue(db, user_id, inbox, make("Queued at the downgrade", body="albatross"))
    await db.dispose()
    migrations.downgrade(settings, "0012")  # the queue goes; 0012's code never indexes that message
    migrations.upgrade(settings)
    db = Database(settings)
    try:
        assert await search_backlog.pending(db) == 1  # the indexed one is not queued twice
        await search_backlog.drain(db)
        assert sorted(await subjects(db, user_id, "albatross")) == ["Indexed before", "Queued at the downgrade"]
        assert await index_rows(db) == 2
    finally:
        await db.dispose()
