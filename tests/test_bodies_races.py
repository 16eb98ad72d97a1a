"""The body store under races (issue 20): `bodies migrate` while messages are deleted and new ones
arrive, readers while bodies move, and appends from several processes at once."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from service.config import Settings
from service.persistence import mailstore, search_index
from service.persistence.bodies import maintenance
from service.persistence.bodies import segments as segments_module
from service.persistence.bodies.segments import BodyRef, Segments
from service.persistence.database import Database
from service.persistence.tables import Message, MessageBody, MessageBodyRef
from service.usecases.search import search
from tests.stored_bodies import store_raws, user_with_inbox


async def test_migrate_to_files_never_gives_a_new_message_a_deleted_ones_bytes(settings: Settings) -> None:
    """The newest message is deleted and a new one arrives (on SQLite it gets the same id) while
    `bodies migrate --to files` has read the old body: the new message keeps its own bytes."""
    db = Database(settings.model_copy(update={"body_store": "database"}))
    try:
        user_id, inbox = await user_with_inbox(db, "racer@example.test")
        first, doomed = await store_raws(
            db, user_id, inbox, [b"Subject: one\r\n\r\n1\r\n", b"Subject: old\r\n\r\nold\r\n"]
        )
        load = db.bodies.database.load
        arrived: list[int] = []

        async def load_then_race(connection: AsyncConnection, message_ids: Sequence[int]) -> dict[int, bytes]:
            found = await load(connection, message_ids)
            if not arrived:
                async with db.write() as session:
                    await session.exec(delete(Message).where(col(Message.id) == doomed))
                arrived.extend(await store_raws(db, user_id, inbox, [b"Subject: new\r\n\r\nnew\r\n"]))
            return found

        db.bodies.database.load = load_then_race  # type: ignore[method-assign]
        assert (await maintenance.migrate(db, to="files")).done == 2  # the new one too, in one run
        db.bodies.database.load = load  # type: ignore[method-assign]
        async with db.read() as session:
            assert await mailstore.read_raw(session, user_id=user_id, message_id=arrived[0]) == (
                b"Subject: new\r\n\r\nnew\r\n"
            )
            assert await mailstore.read_raw(session, user_id=user_id, message_id=first) == b"Subject: one\r\n\r\n1\r\n"
        async with db.read() as session:
            assert (await session.exec(select(MessageBody.message_id))).all() == []
            assert sorted((await session.exec(select(MessageBodyRef.message_id))).all()) == sorted([first, arrived[0]])
            assert await mailstore.read_raw(session, user_id=user_id, message_id=arrived[0]) == (
                b"Subject: new\r\n\r\nnew\r\n"
            )
    finally:
        await db.dispose()


async def test_a_reader_finds_a_body_that_bodies_migrate_moves_under_it(settings: Settings) -> None:
    """The reader looked for a reference, found none, and before it read `message_body` the body
    moved to files (PostgreSQL reads each statement afresh): it still gets the message, not NotFound."""
    db = Database(settings.model_copy(update={"body_store": "database"}))
    try:
        user_id, inbox = await user_with_inbox(db, "racer@example.test")
        raws = [b"Subject: moving\r\n\r\nmoving\r\n", b"Subject: also\r\n\r\nalso\r\n"]
        ids = await store_raws(db, user_id, inbox, raws)
        load = db.bodies.database.load
        moving = False

        async def migrate_then_load(connection: AsyncConnection, message_ids: Sequence[int]) -> dict[int, bytes]:
            nonlocal moving
            if not moving:
                moving = True
                assert (await maintenance.migrate(db, to="files")).done == len(raws)
                moving = False
            return await load(connection, message_ids)

        db.bodies.database.load = migrate_then_load  # type: ignore[method-assign]
        async with db.read() as session:
            assert await mailstore.read_raw(session, user_id=user_id, message_id=ids[0]) == raws[0]
        async with db.write() as session:  # back to the table, to race the many-bodies read too
            await session.exec(delete(MessageBodyRef))
        db.bodies.database.load = load  # type: ignore[method-assign]
        await _restore_table(db, ids, raws)
        db.bodies.database.load = migrate_then_load  # type: ignore[method-assign]
        async with db.read() as session:
            loaded = await db.bodies.load(await session.connection(), ids)
        assert loaded == dict(zip(ids, raws, strict=True))
    finally:
        await db.dispose()


async def _restore_table(db: Database, ids: list[int], raws: list[bytes]) -> None:
    async with db.write() as session:
        await db.bodies.database.record(
            await session.connection(), [(m, r, None) for m, r in zip(ids, raws, strict=True)]
        )


def test_a_segment_another_process_created_gets_its_name_made_durable_before_a_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer killed after creating a segment, before fsyncing the directory, leaves a name that a
    power cut may still lose: the next process to write there fsyncs the directory before its
    references commit (once per segment, not per batch)."""
    root = tmp_path / "bodies"
    root.mkdir()
    (root / "00000001.seg").write_bytes(b"torn")  # the killed writer's segment
    synced: list[Path] = []
    real = segments_module._fsync_directory

    def fsync_directory(path: Path) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(segments_module, "_fsync_directory", fsync_directory)
    segments = Segments(root)
    [ref] = segments.append([b"mail"])
    assert ref.segment == 1
    assert synced == [root]
    segments.append([b"more mail"])
    assert synced == [root]


_APPENDER = """
import json, sys
from pathlib import Path
from service.persistence.bodies.segments import Segments
segments = Segments(Path(sys.argv[1]), roll_bytes=200_000)
found = []
for batch in range(40):
    raws = [f"{sys.argv[2]}:{batch}:{n}:".encode() * (50 + 37 * n) for n in range(5)]
    found += [[r.segment, r.offset, r.length, r.sha256, raw.decode()] for r, raw in zip(segments.append(raws), raws)]
print(json.dumps(found))
"""


def test_processes_appending_at_once_never_overlap_and_every_reference_reads_back(tmp_path: Path) -> None:
    """A `serve`, a `worker` and `bodies migrate` on one data directory append at the same time:
    each batch's offset is taken under the inter-process lock, so no two references share bytes."""
    root = tmp_path / "bodies"
    writers = [
        subprocess.Popen([sys.executable, "-c", _APPENDER, str(root), name], stdout=subprocess.PIPE)
        for name in ("serve", "worker", "migrate")
    ]
    outputs = [writer.communicate(timeout=120)[0] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0, 0]
    refs = [(BodyRef(seg, off, length, sha), raw) for out in outputs for seg, off, length, sha, raw in json.loads(out)]
    assert len(refs) == 3 * 40 * 5
    segments = Segments(root)
    for ref, raw in refs:
        assert segments.read(0, ref) == raw.encode()
    spans = sorted((ref.segment, ref.offset, ref.offset + ref.length) for ref, _ in refs)
    for (seg_a, _, end_a), (seg_b, start_b, _) in itertools.pairwise(spans):
        assert seg_a != seg_b or end_a <= start_b
    assert len(segments.numbers()) > 1  # the writers rolled over to new segments too


async def test_rebuilding_the_search_index_goes_past_a_damaged_body(settings: Settings) -> None:
    """One damaged body (which `bodies verify` reports) does not stop the rebuild of everyone's
    search index: the other messages are indexed again, the damaged one by its headers only
    (its bytes are never read as text), as the search backlog's drain indexes it."""
    db = Database(settings.model_copy(update={"body_store": "files"}))
    try:
        user_id, inbox = await user_with_inbox(db, "search@example.test")
        raws = [b"Subject: fine\r\n\r\nfine words\r\n", b"Subject: hurt\r\n\r\nhurt words\r\n"]
        await store_raws(db, user_id, inbox, raws)
        segment = settings.data_dir / "bodies" / "00000001.seg"
        segment.write_bytes(raws[0] + raws[1].replace(b"hurt words", b"HURT WORDS"))
        assert await search_index.rebuild(db) == 2
        found = {
            q: [h.message.subject for h in (await search(db=db, user_id=user_id, query=q)).hits]
            for q in ("words", "hurt")
        }
        assert found == {"words": ["fine"], "hurt": ["hurt"]}
    finally:
        await db.dispose()
