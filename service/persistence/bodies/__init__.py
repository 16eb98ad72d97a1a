"""The body store: where message bytes live, apart from their index rows (issue 20).

Two stores implement `BodyStore`, and `TRIBUTARY_BODY_STORE` picks the one that writes:

- `files` (files.py, segments.py): append-only segment files under `<data_dir>/bodies/`,
  references in `message_body_ref`; the default on SQLite, whose commit of every byte
  through the WAL (and again at checkpoint) was most of a retrieval's time.
- `database` (database.py): the `message_body` table; the default on PostgreSQL, where
  several hosts share a database without a shared filesystem.

Writing is two steps around the caller's transaction: `put` (before it: the files store
appends and fdatasyncs the batch there) and `record` (inside it, with the index rows and the
cursor). Reading never depends on the setting: a message with a reference is read from its
segment, any other from `message_body`, so `tributary bodies migrate` can move bodies while
the service runs. Bytes read from a segment are checked against the reference's length and
SHA-256, and a mismatch raises `BodyUnreadable` rather than serving other bytes.

`Database` builds one `Bodies` from the settings and hands it to every session it opens
(`session.info`), so use cases reach it through `bodies_of(session)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.persistence.bodies.database import DatabaseBodyStore
from service.persistence.bodies.files import FileBodyStore
from service.persistence.bodies.segments import SEGMENT_BYTES, BodyRef, Segments

__all__ = ["Bodies", "Body", "BodyRef", "BodyStore", "bodies_of"]

_INFO_KEY = "tributary_bodies"


class BodyStore(Protocol):
    """Put a batch durably, find bodies, delete them (verify: `bodies.verify`)."""

    name: str

    async def put(self, raws: Sequence[bytes], digests: Sequence[str | None] | None = None) -> list[BodyRef | None]: ...

    async def record(
        self, connection: AsyncConnection, bodies: Sequence[tuple[int, bytes, BodyRef | None]]
    ) -> None: ...

    async def load(self, connection: AsyncConnection, message_ids: Sequence[int]) -> dict[int, bytes]: ...

    async def delete(self, connection: AsyncConnection, message_ids: Sequence[int]) -> None: ...


@dataclass(frozen=True, slots=True)
class Body:
    """One message's stored bytes, opened: read whole, or streamed a megabyte at a time."""

    message_id: int
    length: int
    ref: BodyRef | None
    raw: bytes | None
    segments: Segments

    async def read(self) -> bytes:
        if self.raw is not None:
            return self.raw
        assert self.ref is not None
        return await asyncio.to_thread(self.segments.read, self.message_id, self.ref)

    async def check(self) -> None:
        """Raise BodyUnreadable unless the whole body is there as referenced (reads it through)."""
        if self.ref is not None:
            await asyncio.to_thread(self.segments.check, self.message_id, self.ref)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The bytes in pieces, each read in a worker thread; never the whole body in memory."""
        if self.raw is not None:
            yield self.raw
            return
        assert self.ref is not None
        pieces = self.segments.chunks(self.message_id, self.ref)
        end = object()
        while (piece := await asyncio.to_thread(next, pieces, end)) is not end:
            assert isinstance(piece, bytes)
            yield piece


class Bodies:
    """The store that writes (by setting), and both stores for reading."""

    def __init__(self, *, kind: Literal["database", "files"], segments: Segments) -> None:
        self.segments = segments
        self.files = FileBodyStore(segments)
        self.database = DatabaseBodyStore()
        self.writer: BodyStore = self.files if kind == "files" else self.database

    @classmethod
    def from_settings(cls, settings: Settings, *, roll_bytes: int = SEGMENT_BYTES) -> Bodies:
        return cls(
            kind=settings.resolved_body_store, segments=Segments(settings.data_dir / "bodies", roll_bytes=roll_bytes)
        )

    @property
    def kind(self) -> str:
        return self.writer.name

    def attach(self, session: AsyncSession) -> AsyncSession:
        session.info[_INFO_KEY] = self
        return session

    async def put(self, raws: Sequence[bytes], digests: Sequence[str | None] | None = None) -> list[BodyRef | None]:
        """Before the transaction: make the bodies durable where the writing store needs it
        (`digests`: each body's SHA-256 where the caller computed it already)."""
        return await self.writer.put(raws, digests)

    def put_now(self, raws: Sequence[bytes], digests: Sequence[str | None] | None = None) -> list[BodyRef | None]:
        """`put` in the calling thread, which it blocks on the disk: for a worker thread that has
        just downloaded the batch (retrieval), so the event loop's commit need not wait for it."""
        if self.writer is self.files:
            return list(self.segments.append(raws, digests))
        return [None] * len(raws)

    async def record(self, connection: AsyncConnection, bodies: Sequence[tuple[int, bytes, BodyRef | None]]) -> None:
        """Inside the transaction: store the bodies (or their references) of the new messages."""
        await self.writer.record(connection, bodies)

    async def open(self, connection: AsyncConnection, message_id: int) -> Body | None:
        """The message's body wherever it is; None when it has none.

        References are looked up first and again after a miss in `message_body`: `bodies migrate
        --to files` inserts the reference and deletes the row in one transaction, which may commit
        between the two queries (PostgreSQL reads each statement afresh), and the body is then in
        the files store, not gone."""
        for _ in range(2):
            refs = await self.files.locate(connection, [message_id])
            if message_id in refs:
                ref = refs[message_id]
                return Body(message_id, ref.length, ref, None, self.segments)
            raw = (await self.database.load(connection, [message_id])).get(message_id)
            if raw is not None:
                return Body(message_id, len(raw), None, raw, self.segments)
        return None

    async def load(self, connection: AsyncConnection, message_ids: Sequence[int]) -> dict[int, bytes]:
        """The bodies of many messages, wherever each is: a message without one, or whose segment
        bytes are missing or damaged (never served; `bodies verify` reports it), is left out. One
        that moved to files between the two lookups is looked for there again, as in `open`."""
        refs = await self.files.locate(connection, message_ids)
        rest = [mid for mid in message_ids if mid not in refs]
        found = await self.database.load(connection, rest)
        refs |= await self.files.locate(connection, [mid for mid in rest if mid not in found])
        return found | await self.files.read(refs)


def bodies_of(session: AsyncSession) -> Bodies:
    """The Bodies of the Database that opened this session."""
    bodies = session.info.get(_INFO_KEY)
    if not isinstance(bodies, Bodies):
        raise RuntimeError("this session was not opened by service.persistence.database.Database")
    return bodies
