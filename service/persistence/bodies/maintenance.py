"""Moving bodies between the two stores, and checking every stored body (`tributary bodies ...`).

`migrate` works in batches (ids first, then at most `batch_bytes` of bodies at a time),
each committed on its own, so it can run while the service runs and be stopped and
started again: it always picks up whatever is still in the other store. Moving to
files appends and fdatasyncs a batch first, then in one transaction inserts the
references and deletes the `message_body` rows of the messages that still exist with
those bytes (their index row's SHA-256: on SQLite a new message may reuse a deleted one's id).
Moving to the database reads each body (checked), then in one transaction inserts the
rows and deletes the references that still point where they did; the segment bytes
become garbage for compaction. A damaged body is left where it is and counted.

`verify` reads every body through: a reference's bytes against its length and SHA-256,
a `message_body` row against its message's SHA-256, and finds messages with no body at
all. It reports each problem through `report` and goes on to the end.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import and_, delete, exists, func, insert, not_, select
from sqlmodel import col
from sqlmodel import select as model_select

from service.errors import BodyMissing, BodyUnreadable
from service.persistence.bodies import Bodies
from service.persistence.bodies.segments import BodyRef
from service.persistence.database import Database
from service.persistence.search_index import byte_batches
from service.persistence.tables import Message, MessageBody, MessageBodyRef

BATCH_BYTES = 16 * 1024 * 1024
_IDS = 1000


@dataclass(frozen=True, slots=True)
class Problem:
    """One message whose body cannot be served: `kind` is "missing" or "damaged"."""

    message_id: int
    kind: Literal["missing", "damaged"]
    detail: str


@dataclass(slots=True)
class Tally:
    done: int = 0
    problems: int = 0


def _problem(exc: BodyUnreadable) -> Problem:
    return Problem(exc.message_id, "missing" if isinstance(exc, BodyMissing) else "damaged", exc.detail)


async def migrate(
    db: Database,
    *,
    to: Literal["files", "database"],
    batch_bytes: int = BATCH_BYTES,
    report: Callable[[Problem], None] = lambda _: None,
) -> Tally:
    """Move every body in the other store to `to`; how many moved, and how many could not be read.

    A pass goes through the other store once, in id order. A body it had to leave because it
    changed under it (compaction moved it, or on SQLite a new message took a deleted one's id
    below the pass's position) is still there when the pass ends: passes go on while they move
    something, so when `migrate` returns only unreadable bodies (each reported once) or mail
    that arrived after it are left in the other store."""
    tally = Tally()
    reported: set[int] = set()

    def once(problem: Problem) -> None:
        if problem.message_id not in reported:
            reported.add(problem.message_id)
            tally.problems += 1
            report(problem)

    while True:
        moved = tally.done
        await _pass(db, to, batch_bytes, tally, once)
        if tally.done == moved:
            return tally


async def _pass(
    db: Database, to: Literal["files", "database"], batch_bytes: int, tally: Tally, report: Callable[[Problem], None]
) -> None:
    last = 0
    while True:
        async with db.read() as session:
            if to == "files":
                query = select(col(MessageBody.message_id), func.length(col(MessageBody.raw)))
                key = col(MessageBody.message_id)
            else:
                query = select(col(MessageBodyRef.message_id), col(MessageBodyRef.length))
                key = col(MessageBodyRef.message_id)
            rows = (await (await session.connection()).execute(query.where(key > last).order_by(key).limit(_IDS))).all()
        sizes = [(int(mid), int(size or 0)) for mid, size in rows]
        if not sizes:
            return
        for ids in byte_batches(sizes, batch_bytes):
            if to == "files":
                tally.done += await _to_files(db, ids)
            else:
                await _to_database(db, ids, tally, report)
        last = sizes[-1][0]


async def _to_files(db: Database, ids: list[int]) -> int:
    bodies: Bodies = db.bodies
    async with db.read() as session:
        raws = await bodies.database.load(await session.connection(), ids)
    order = sorted(raws)
    refs = await asyncio.to_thread(bodies.segments.append, [raws[mid] for mid in order])
    placed = dict(zip(order, refs, strict=True))
    async with db.write() as session:
        connection = await session.connection()
        # Only the messages still there with the bytes just appended: on SQLite a deleted message's
        # id goes to the next one delivered, which must keep its own body (the index row's SHA-256
        # tells them apart). Locking the rows (PostgreSQL) makes a concurrent delete wait for us.
        current = await connection.execute(
            select(col(Message.id), col(Message.sha256))
            .join(MessageBody, col(MessageBody.message_id) == col(Message.id))
            .where(col(Message.id).in_(order))
            .with_for_update(read=True, key_share=True, of=Message)
        )
        still = sorted(mid for mid, digest in current if mid is not None and digest == placed[mid].sha256)
        if still:
            await connection.execute(insert(MessageBodyRef), [_ref_row(mid, placed[mid]) for mid in still])
            await connection.execute(delete(MessageBody).where(col(MessageBody.message_id).in_(still)))
    return len(still)


def _ref_row(message_id: int, ref: BodyRef) -> dict[str, object]:
    return {"message_id": message_id, "segment": ref.segment, "offset": ref.offset, "length": ref.length,
            "sha256": ref.sha256}  # fmt: skip


async def _to_database(db: Database, ids: list[int], tally: Tally, report: Callable[[Problem], None]) -> None:
    bodies: Bodies = db.bodies
    async with db.read() as session:
        refs = await bodies.files.locate(await session.connection(), ids)
    raws: dict[int, bytes] = {}
    for mid, ref in sorted(refs.items()):
        try:
            raws[mid] = await asyncio.to_thread(bodies.segments.read, mid, ref)
        except BodyUnreadable as exc:
            report(_problem(exc))
    if not raws:
        return
    async with db.write() as session:
        connection = await session.connection()
        await connection.execute(  # a concurrent delete of one of them waits for this commit (PostgreSQL)
            select(col(Message.id)).where(col(Message.id).in_(list(raws))).with_for_update(read=True, key_share=True)
        )
        now = await bodies.files.locate(connection, list(raws))
        moving = [mid for mid in raws if now.get(mid) == refs[mid]]
        if moving:
            await bodies.database.record(connection, [(mid, raws[mid], None) for mid in moving])
            await bodies.files.delete(connection, moving)
    tally.done += len(moving)


async def verify(db: Database, *, report: Callable[[Problem], None], batch_bytes: int = BATCH_BYTES) -> Tally:
    """Check every stored body; each problem goes to `report`, and the check goes on to the end."""
    tally = Tally()
    bodies: Bodies = db.bodies
    last = 0
    while True:  # references: read each through against its length and SHA-256
        async with db.read() as session:
            rows = (
                await session.exec(
                    model_select(MessageBodyRef).where(col(MessageBodyRef.message_id) > last).order_by(
                        col(MessageBodyRef.message_id)).limit(_IDS)
                )
            ).all()  # fmt: skip
        if not rows:
            break
        for row in rows:
            tally.done += 1
            try:
                await asyncio.to_thread(
                    bodies.segments.check, row.message_id, BodyRef(row.segment, row.offset, row.length, row.sha256)
                )
            except BodyUnreadable as exc:
                tally.problems += 1
                report(_problem(exc))
        last = int(rows[-1].message_id)
    last = 0
    while True:  # message_body rows: against the SHA-256 their message was indexed with
        async with db.read() as session:
            sizes = (
                await (await session.connection()).execute(
                    select(col(MessageBody.message_id), func.length(col(MessageBody.raw)))
                    .where(col(MessageBody.message_id) > last).order_by(col(MessageBody.message_id)).limit(_IDS)
                )
            ).all()  # fmt: skip
            for ids in byte_batches([(int(m), int(s or 0)) for m, s in sizes], batch_bytes):
                rows2 = (
                    await (await session.connection()).execute(
                        select(col(MessageBody.message_id), col(MessageBody.raw), col(Message.sha256))
                        .join(Message, col(Message.id) == col(MessageBody.message_id))
                        .where(col(MessageBody.message_id).in_(ids))
                    )
                ).all()
                for mid, raw, digest in rows2:
                    tally.done += 1
                    if hashlib.sha256(bytes(raw)).hexdigest() != digest:
                        tally.problems += 1
                        report(Problem(int(mid), "damaged", "message_body row: SHA-256 differs from the message's"))
        if not sizes:
            break
        last = int(sizes[-1][0])
    async with db.read() as session:  # messages with no body anywhere
        orphans = (
            await (await session.connection()).execute(
                select(col(Message.id)).where(
                    not_(exists().where(and_(col(MessageBody.message_id) == col(Message.id)))),
                    not_(exists().where(and_(col(MessageBodyRef.message_id) == col(Message.id)))),
                )
            )
        ).all()
    for (orphan,) in orphans:
        tally.problems += 1
        report(Problem(int(orphan or 0), "missing", "no stored body"))
    return tally
