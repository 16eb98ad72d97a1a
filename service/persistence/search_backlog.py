"""The search backlog: stored messages waiting for the full-text index (migration 0013).

Bulk retrieval (full IMAP and POP3 runs, push, the filters' deliveries) stores a batch and
queues its messages in the same transaction (`enqueue`) instead of extracting their body
text and writing their `message_search` rows there: that work was about half of a full
run's CPU, and showing the mail does not need it. Single deliveries (Sent copies, drafts)
are still indexed as they are stored (`mailstore.deliver_many`).

`index_pending` takes the oldest queued messages (of one user, or anyone's), reads their
bodies through the body store and derives their text in a worker thread, holding no write
lock; then, in one short write transaction, it takes them off the queue and writes their
index rows. Taking them off with DELETE ... RETURNING makes a message indexed once whoever
else is draining (two workers on PostgreSQL, a search beside the background job, `search
rebuild`, which clears the rows it indexes): the second finds the row gone and writes
nothing. A message deleted meanwhile has left the queue with its row (ON DELETE CASCADE),
and an id SQLite gave again to a new message since is indexed with that message's text.
A message whose body cannot be read is indexed by its headers, so it never blocks the queue.

Who drains it: the scheduler's `search_index` job in `tributary serve` and `tributary
worker`, seconds after the mail is stored; and `usecases.search`, for the searcher's own
queue first (up to CATCH_UP messages), so a search does not miss mail already listed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert
from sqlalchemy import select as core_select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from service.domain.search_text import SearchText, search_text
from service.persistence import search_index
from service.persistence.bodies import Bodies
from service.persistence.database import Database
from service.persistence.tables import Message, SearchBacklog

BATCH_MESSAGES = 250
BATCH_BYTES = 16 * 1024 * 1024  # bodies read at once (a bigger message makes a batch of its own)
CATCH_UP = 500  # messages a search indexes for its searcher before it runs (a fraction of a second)


async def enqueue(connection: AsyncConnection, user_id: int, message_ids: Sequence[int]) -> None:
    """Queue stored messages for the index, in the caller's (storing) transaction."""
    if message_ids:
        await connection.execute(
            insert(SearchBacklog), [{"message_id": mid, "user_id": user_id} for mid in message_ids]
        )


async def pending(db: Database, *, user_id: int | None = None) -> int:
    """How many messages (of the user, or of everyone) wait for the index."""
    query = core_select(func.count()).select_from(SearchBacklog)
    if user_id is not None:
        query = query.where(col(SearchBacklog.user_id) == user_id)
    async with db.read() as session:
        return int((await (await session.connection()).execute(query)).scalar_one())


async def drain(db: Database, *, user_id: int | None = None, most: int | None = None) -> int:
    """Index queued messages a batch at a time until the queue (the user's, or everyone's) is
    empty, or `most` have been taken; the number taken off the queue."""
    done = 0
    while most is None or done < most:
        limit = BATCH_MESSAGES if most is None else min(BATCH_MESSAGES, most - done)
        taken = await index_pending(db, user_id=user_id, limit=limit)
        if taken == 0:
            return done
        done += taken
    return done


async def index_pending(db: Database, *, user_id: int | None = None, limit: int = BATCH_MESSAGES) -> int:
    """Index one batch of the oldest queued messages (see the module docstring); the number of
    messages taken off the queue (0: it is empty).

    On PostgreSQL, where several workers drain at once, the batch is read, indexed and taken off
    in one transaction whose rows are locked FOR UPDATE SKIP LOCKED: each worker takes a batch
    of its own instead of all of them deriving the same texts. The locks (and its messages' FOR
    KEY SHARE, `_key_shared`) make only a delete of one of those messages wait for the batch.
    SQLite has one writer for the whole database, which must not wait for text extraction:
    there the batch is read first and taken off after (a second drain finds it gone)."""
    if not db.is_sqlite:
        async with db.write() as session:
            connection = await session.connection()
            rows, raws = await _oldest(connection, db.bodies, user_id, limit, lock=True)
            if rows:  # (a message being deleted is not among them: its delete takes its queue row)
                texts = await asyncio.to_thread(_texts, rows, raws)
                await _take_off(connection, texts)
            return len(rows)
    async with db.read() as session:
        rows, raws = await _oldest(await session.connection(), db.bodies, user_id, limit, lock=False)
    if not rows:
        return 0
    texts = await asyncio.to_thread(_texts, rows, raws)
    async with db.write() as session:
        connection = await session.connection()
        await _take_off(connection, {mid: texts[mid] for mid in await _unchanged(connection, rows)})
    return len(rows)


async def _oldest(
    connection: AsyncConnection, bodies: Bodies, user_id: int | None, limit: int, *, lock: bool
) -> tuple[Sequence[Any], dict[int, bytes]]:
    """The oldest queued messages' rows (within BATCH_BYTES) and their bodies."""
    query = (
        core_select(
            col(Message.id), col(Message.user_id), col(Message.sha256), col(Message.size), col(Message.subject),
            col(Message.from_address), col(Message.to_addresses), col(Message.cc_addresses),
        )
        .join_from(SearchBacklog, Message, col(Message.id) == col(SearchBacklog.message_id))
        .order_by(col(SearchBacklog.message_id))
        .limit(limit)
    )  # fmt: skip
    if user_id is not None:
        query = query.where(col(SearchBacklog.user_id) == user_id)
    if lock:
        query = query.with_for_update(skip_locked=True, of=SearchBacklog)
    rows = _within_bytes((await connection.execute(query)).all())
    if lock and rows:
        rows = await _key_shared(connection, rows)
    if not rows:
        return rows, {}
    return rows, await bodies.load(connection, [int(r.id) for r in rows])


async def _key_shared(connection: AsyncConnection, rows: Sequence[Any]) -> Sequence[Any]:
    """The rows whose message this transaction could lock FOR KEY SHARE (SKIP LOCKED).

    The index row's foreign key needs that lock on the message when it is inserted. A message
    being deleted holds its row, and its delete waits for the queue row this drain holds (ON
    DELETE CASCADE): taking the lock only at the insert is a deadlock, which PostgreSQL breaks
    by failing one of them, often the user's delete. Taken here, it makes a delete that comes
    later wait for this batch, and a message already being deleted is left to its delete."""
    ids = [int(r.id) for r in rows]
    locked = await connection.execute(
        core_select(col(Message.id))
        .where(col(Message.id).in_(ids))
        .with_for_update(read=True, key_share=True, skip_locked=True)
    )
    held = {int(mid) for mid in locked.scalars() if mid is not None}
    return [r for r in rows if int(r.id) in held]


async def _unchanged(connection: AsyncConnection, rows: Sequence[Any]) -> set[int]:
    """The ids that still name the messages read (same owner, same bytes), in the write transaction.

    SQLite gives a new row the id of a deleted newest one: a message deleted after the batch was
    read and another stored (and queued) under its id must get its own text, not the deleted
    one's, which may be another user's."""
    read = {int(r.id): (int(r.user_id), str(r.sha256)) for r in rows}
    now = await connection.execute(
        core_select(col(Message.id), col(Message.user_id), col(Message.sha256)).where(col(Message.id).in_(list(read)))
    )
    return {int(r.id) for r in now if read.get(int(r.id)) == (int(r.user_id), str(r.sha256))}


async def _take_off(connection: AsyncConnection, texts: dict[int, SearchText]) -> None:
    """Take the messages off the queue and index those this caller took off (DELETE ... RETURNING:
    one whose row another drain took, or that was deleted, is not indexed again)."""
    claimed = set(
        (
            await connection.execute(
                delete(SearchBacklog)
                .where(col(SearchBacklog.message_id).in_(list(texts)))
                .returning(col(SearchBacklog.message_id))
            )
        ).scalars()
    )
    await search_index.add(connection, [(mid, text) for mid, text in texts.items() if mid in claimed])


def _within_bytes(rows: Sequence[Any]) -> Sequence[Any]:
    """The first rows whose sizes add up to at most BATCH_BYTES (at least one)."""
    total = 0
    for position, row in enumerate(rows):
        total += int(row.size or 0)
        if total > BATCH_BYTES and position > 0:
            return rows[:position]
    return rows


def _texts(rows: Sequence[Any], raws: dict[int, bytes]) -> dict[int, SearchText]:
    """Each message's search fields: its body's from its bytes (none when they cannot be read)."""
    return {
        int(r.id): search_text(
            raws.get(int(r.id), b""), subject=r.subject, sender=r.from_address, to=r.to_addresses, cc=r.cc_addresses
        )
        for r in rows
    }
