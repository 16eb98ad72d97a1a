"""What an export reads: a folder's messages in batches, and each message's bytes as chunks.

`message_chunks` is the one seam between exports and wherever bodies live: it opens the body
through `service.usecases.reading.open_raw` (the app's read path, which checks a segment's
length and SHA-256 before a byte is handed on) and streams it a megabyte at a time from its
segment file, so a huge message is never whole in memory (a body still in the `message_body`
table comes as one piece). No database session is held while a chunk is being written out
(the download's client may be slow).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from service.errors import NotFound
from service.persistence.database import Database
from service.persistence.tables import Message
from service.usecases.reading import open_raw

BATCH = 500


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """What an export needs of a message's index row: its id, flags and arrival time."""

    id: int
    seen: bool
    answered: bool
    flagged: bool
    draft: bool
    received_at: datetime


async def folder_messages(*, db: Database, user_id: int, folder_id: int) -> AsyncIterator[StoredMessage]:
    """The folder's messages, oldest first (by id), read in short batches (keyset on id)."""
    after = 0
    while True:
        async with db.read() as session:
            rows = (
                await session.exec(
                    select(Message)
                    .where(Message.user_id == user_id, Message.folder_id == folder_id, col(Message.id) > after)
                    .order_by(col(Message.id))
                    .limit(BATCH)
                )
            ).all()
        for row in rows:
            assert row.id is not None
            yield StoredMessage(row.id, row.seen, row.answered, row.flagged, row.draft, row.received_at)
        if len(rows) < BATCH:
            return
        after = rows[-1].id or after


async def message_chunks(*, db: Database, user_id: int, message_id: int) -> AsyncIterator[bytes]:
    """The message's bytes exactly as stored, in pieces; NotFound when the message is gone (deleted
    since its folder was listed), BodyUnreadable (before any piece) when its body is damaged."""
    body = await open_raw(db=db, user_id=user_id, message_id=message_id)
    async for piece in body.chunks():
        yield piece


async def present(*, db: Database, user_id: int, message_id: int) -> AsyncIterator[bytes] | None:
    """`message_chunks` once the message is known to exist (its first chunk read), else None."""
    chunks = message_chunks(db=db, user_id=user_id, message_id=message_id)
    try:
        first = await anext(chunks, b"")
    except NotFound:
        return None

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    return rest()
