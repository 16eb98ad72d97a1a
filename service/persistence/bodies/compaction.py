"""Compaction: reclaiming segment bytes nothing references any more (housekeeping, issue 20).

Deleting a message deletes its reference; a killed batch leaves bytes never referenced.
A round looks at the sealed segments (not the highest, which writers append to, and not
written to for `settle_seconds`, longer than any batch takes from its write to its commit,
so no reference to them is still on its way) whose live share (the referenced bytes over
the file's size) is under `threshold`. Their live bodies are read (checked), appended to
the current segment (fdatasynced), and their references swapped in one transaction per
batch, each only if it still points where it did. A segment left with no reference is
marked retired and unlinked `grace_seconds` later, so a reader that looked up an old
reference just before the swap still finds the bytes: readers never wait for compaction.

A round takes `fcntl.flock(LOCK_EX | LOCK_NB)` on `<data_dir>/bodies/compaction.lock` and
is skipped when that is busy: a backup holds LOCK_SH while it copies the segments.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update
from sqlmodel import col
from sqlmodel import select as model_select

from service.errors import BodyUnreadable
from service.persistence.bodies.segments import BodyRef, Segments
from service.persistence.database import Database
from service.persistence.tables import MessageBodyRef

THRESHOLD = 0.5
SETTLE_SECONDS = 600
GRACE_SECONDS = 3600
BATCH_BYTES = 16 * 1024 * 1024
LOCK_NAME = "compaction.lock"


@dataclass(slots=True)
class Round:
    """What a round did: segments compacted, bodies moved, segment files removed, bytes freed."""

    compacted: int = 0
    moved: int = 0
    removed: int = 0
    freed: int = 0


def _marker(segments: Segments, segment: int) -> str:
    return str(segments.path(segment)) + ".retired"


async def _live(db: Database) -> dict[int, tuple[int, int]]:
    """Per segment: (references, referenced bytes)."""
    async with db.read() as session:
        rows = await (await session.connection()).execute(
            select(col(MessageBodyRef.segment), func.count(), func.sum(col(MessageBodyRef.length))).group_by(
                col(MessageBodyRef.segment)
            )
        )
        return {int(seg): (int(n), int(total or 0)) for seg, n, total in rows}


async def compact(
    db: Database,
    *,
    threshold: float = THRESHOLD,
    settle_seconds: float = SETTLE_SECONDS,
    grace_seconds: float = GRACE_SECONDS,
) -> Round | None:
    """One round; None when another round or a backup holds the lock."""
    segments = db.bodies.segments
    if not segments.root.is_dir():
        return Round()
    lock = _lock(segments.root / LOCK_NAME)
    if lock is None:
        return None
    try:
        done = Round()
        await _remove_retired(db, segments, grace_seconds, done)
        live = await _live(db)
        for segment, size in _sealed(segments, settle_seconds):
            _, referenced = live.get(segment, (0, 0))
            if size and referenced / size >= threshold:
                continue
            if await _move_live(db, segments, segment, done):
                _mark(segments, segment)
                done.compacted += 1
        await _remove_retired(db, segments, grace_seconds, done)
        return done
    finally:
        os.close(lock)


def _lock(path: Path) -> int | None:
    """The compaction lock's descriptor, held (LOCK_EX); None when a backup or another round has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _sealed(segments: Segments, settle_seconds: float) -> list[tuple[int, int]]:
    """(segment, size) of the segments a round may compact: not the highest, not retired, settled."""
    now = time.time()
    found = []
    for segment in segments.numbers()[:-1]:
        if os.path.exists(_marker(segments, segment)):
            continue
        try:
            stat = segments.path(segment).stat()
        except FileNotFoundError:
            continue
        if now - stat.st_mtime >= settle_seconds:
            found.append((segment, stat.st_size))
    return found


def _mark(segments: Segments, segment: int) -> None:
    os.close(os.open(_marker(segments, segment), os.O_WRONLY | os.O_CREAT, 0o600))


async def _move_live(db: Database, segments: Segments, segment: int, done: Round) -> bool:
    """Move the segment's live bodies to the current segment; True when none is left in it."""
    async with db.read() as session:
        rows = (
            await session.exec(
                model_select(MessageBodyRef)
                .where(col(MessageBodyRef.segment) == segment)
                .order_by(col(MessageBodyRef.offset))
            )
        ).all()  # fmt: skip
    refs = {row.message_id: BodyRef(row.segment, row.offset, row.length, row.sha256) for row in rows}
    batch: list[int] = []
    size = 0
    left = False
    for mid, ref in refs.items():
        batch.append(mid)
        size += ref.length
        if size >= BATCH_BYTES:
            left |= not await _move_batch(db, segments, {m: refs[m] for m in batch}, done)
            batch, size = [], 0
    if batch:
        left |= not await _move_batch(db, segments, {m: refs[m] for m in batch}, done)
    if left:
        return False
    async with db.read() as session:
        remaining = (
            await (await session.connection()).execute(
                select(func.count()).where(col(MessageBodyRef.segment) == segment)
            )
        ).scalar_one()
    return int(remaining) == 0


async def _move_batch(db: Database, segments: Segments, refs: dict[int, BodyRef], done: Round) -> bool:
    """Copy the bodies, then swap their references in one transaction; False if one could not be read."""
    raws: dict[int, bytes] = {}
    whole = True
    for mid, ref in refs.items():
        try:
            raws[mid] = await asyncio.to_thread(segments.read, mid, ref)
        except BodyUnreadable:
            whole = False  # left in place: `bodies verify` reports it, and the segment stays
    order = list(raws)
    placed = await asyncio.to_thread(segments.append, [raws[mid] for mid in order])
    async with db.write() as session:
        connection = await session.connection()
        for mid, new in zip(order, placed, strict=True):
            old = refs[mid]
            moved = await connection.execute(
                update(MessageBodyRef)
                .where(
                    col(MessageBodyRef.message_id) == mid,
                    col(MessageBodyRef.segment) == old.segment,
                    col(MessageBodyRef.offset) == old.offset,
                )
                .values(segment=new.segment, offset=new.offset)
            )
            done.moved += int(moved.rowcount or 0)
    return whole


async def _remove_retired(db: Database, segments: Segments, grace_seconds: float, done: Round) -> None:
    """Unlink retired segments once their grace has passed (and no reference came back to them)."""
    live = await _live(db)
    now = time.time()
    for segment in segments.numbers():
        marker = _marker(segments, segment)
        try:
            marked = os.stat(marker).st_mtime
        except FileNotFoundError:
            continue
        if now - marked < grace_seconds:
            continue
        if segment not in live:
            done.freed += segments.size(segment)
            segments.path(segment).unlink(missing_ok=True)
            done.removed += 1
        os.unlink(marker)
