"""What an export reads: a folder's messages in batches, and each message's bytes as chunks.

`message_chunks` is the one seam between exports and wherever bodies live. Today it reads
the body through `service.usecases.reading.export_raw` (the app's read path) and hands it
on a megabyte at a time; when the body store of issue 20 offers a streaming read, only this
function changes, and a huge message is then never whole in memory. No database session is
held while a chunk is being written out (the download's client may be slow).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from service.errors import NotFound
from service.persistence.database import Database
from service.persistence.tables import Message
from service.usecases.reading import export_raw

CHUNK = 1024 * 1024
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
    """The message's bytes exactly as stored, in chunks of at most CHUNK bytes; NotFound when the
    message is gone (deleted since its folder was listed)."""
    raw = await export_raw(db=db, user_id=user_id, message_id=message_id)
    view = memoryview(raw)
    for start in range(0, len(raw), CHUNK):
        yield bytes(view[start : start + CHUNK])


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
