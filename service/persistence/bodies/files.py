"""The `files` body store: bytes in append-only segment files, references in `message_body_ref`.

The default on SQLite. `put` appends a batch's bodies to a segment and fdatasyncs it before
the caller opens the transaction that commits the index rows, the references and the
retrieval cursor (see segments.py for why a crash in between is harmless). Deleting a
message deletes its reference (ON DELETE CASCADE); its bytes stay until compaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from service.errors import BodyUnreadable
from service.persistence.bodies.segments import BodyRef, Segments
from service.persistence.tables import MessageBodyRef

log = logging.getLogger(__name__)


class FileBodyStore:
    """Bodies in segment files under `segments.root`."""

    name = "files"

    def __init__(self, segments: Segments) -> None:
        self.segments = segments

    async def put(self, raws: Sequence[bytes], digests: Sequence[str | None] | None = None) -> list[BodyRef | None]:
        """Append the bodies durably, in a worker thread; their references (`digests`: their
        SHA-256 where known)."""
        return list(await asyncio.to_thread(self.segments.append, raws, digests))

    async def record(self, connection: AsyncConnection, bodies: Sequence[tuple[int, bytes, BodyRef | None]]) -> None:
        """Insert the references in the open transaction; bodies not `put` ahead are appended now."""
        late = [raw for _, raw, ref in bodies if ref is None]
        appended = iter(await asyncio.to_thread(self.segments.append, late) if late else [])
        rows = []
        for mid, _, ref in bodies:
            where = ref if ref is not None else next(appended)
            rows.append(
                {
                    "message_id": mid,
                    "segment": where.segment,
                    "offset": where.offset,
                    "length": where.length,
                    "sha256": where.sha256,
                }
            )
        if rows:
            await connection.execute(insert(MessageBodyRef), rows)

    async def locate(self, connection: AsyncConnection, message_ids: Sequence[int]) -> dict[int, BodyRef]:
        """The references of those messages that have one."""
        if not message_ids:
            return {}
        rows = await connection.execute(
            select(
                col(MessageBodyRef.message_id),
                col(MessageBodyRef.segment),
                col(MessageBodyRef.offset),
                col(MessageBodyRef.length),
                col(MessageBodyRef.sha256),
            ).where(col(MessageBodyRef.message_id).in_(message_ids))
        )
        return {int(mid): BodyRef(int(seg), int(off), int(length), sha) for mid, seg, off, length, sha in rows}

    async def load(self, connection: AsyncConnection, message_ids: Sequence[int]) -> dict[int, bytes]:
        """The checked bytes of those messages that have a readable reference. A missing or damaged
        body is left out, never served: bulk readers (the search index's rebuild) go past it, and
        `tributary bodies verify` reports it."""
        return await self.read(await self.locate(connection, message_ids))

    async def read(self, refs: dict[int, BodyRef]) -> dict[int, bytes]:
        """The checked bytes at those references, each read in a worker thread; the unreadable left out,
        also one the operating system will not read (EIO, EACCES: logged), so that one bad segment
        does not stop a bulk reader (the search backlog, which would retry that batch forever)."""
        found: dict[int, bytes] = {}
        for mid, ref in refs.items():
            try:
                found[mid] = await asyncio.to_thread(self.segments.read, mid, ref)
            except BodyUnreadable:
                continue
            except OSError as exc:
                log.warning("message %d: segment %d cannot be read: %s", mid, ref.segment, exc)
        return found

    async def delete(self, connection: AsyncConnection, message_ids: Sequence[int]) -> None:
        """Drop the references; the bytes become garbage for compaction."""
        if message_ids:
            await connection.execute(delete(MessageBodyRef).where(col(MessageBodyRef.message_id).in_(message_ids)))
