"""The `database` body store: each message's bytes in a `message_body` row beside its index row.

The default on PostgreSQL, where several hosts share one database and no filesystem. The
bytes are written inside the transaction that commits the index rows; on SQLite a body
over STREAM_BYTES goes in through incremental blob I/O so the driver never copies it whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from service.persistence.bodies.segments import BodyRef
from service.persistence.tables import MessageBody

STREAM_BYTES = 8 * 1024 * 1024  # bodies above this go to SQLite in pieces (see _stream_body)
_PIECE = 1024 * 1024


class DatabaseBodyStore:
    """Bodies in the `message_body` table."""

    name = "database"

    async def put(self, raws: Sequence[bytes], digests: Sequence[str | None] | None = None) -> list[BodyRef | None]:
        """Nothing to do before the transaction: the bytes go in with the index rows."""
        return [None] * len(raws)

    async def record(self, connection: AsyncConnection, bodies: Sequence[tuple[int, bytes, BodyRef | None]]) -> None:
        """Insert the bodies (one batched INSERT; large ones streamed on SQLite) in the open transaction."""
        rows = [(mid, raw) for mid, raw, _ in bodies]
        sqlite = connection.dialect.name == "sqlite"
        streamed = [(mid, raw) for mid, raw in rows if sqlite and len(raw) > STREAM_BYTES]
        small = [(mid, raw) for mid, raw in rows if not (sqlite and len(raw) > STREAM_BYTES)]
        if small:
            await connection.execute(insert(MessageBody), [{"message_id": mid, "raw": raw} for mid, raw in small])
        for mid, raw in streamed:
            await _stream_body(connection, mid, raw)

    async def load(self, connection: AsyncConnection, message_ids: Sequence[int]) -> dict[int, bytes]:
        """The bodies of those messages this table holds."""
        if not message_ids:
            return {}
        rows = await connection.execute(
            select(col(MessageBody.message_id), col(MessageBody.raw)).where(
                col(MessageBody.message_id).in_(message_ids)
            )
        )
        return {int(mid): bytes(raw) for mid, raw in rows}

    async def delete(self, connection: AsyncConnection, message_ids: Sequence[int]) -> None:
        if message_ids:
            await connection.execute(delete(MessageBody).where(col(MessageBody.message_id).in_(message_ids)))


async def _stream_body(connection: AsyncConnection, message_id: int, raw: bytes) -> None:
    """Store a large body through SQLite's incremental blob I/O: a zeroblob row, then writes of
    a megabyte each on the driver's own thread (aiosqlite's queue), in the open transaction.
    Binding the bytes as a parameter would make SQLite take a private copy first, and keep
    twice the message in memory."""
    await connection.exec_driver_sql(
        "INSERT INTO message_body (message_id, raw) VALUES (?, zeroblob(?))", (message_id, len(raw))
    )
    driver: Any = (await connection.get_raw_connection()).driver_connection  # aiosqlite.Connection

    def write() -> None:
        with driver._conn.blobopen("message_body", "raw", message_id) as blob:
            view = memoryview(raw)
            for start in range(0, len(raw), _PIECE):
                blob.write(view[start : start + _PIECE])

    await driver._execute(write)
