"""The body store (issue 20): bytes kept exactly in either store, damage reported and never served
as other bytes, compaction while readers read, and `tributary bodies` from the command line."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar
from sqlmodel import select

from service.config import Settings
from service.domain.values import SpecialUse
from service.errors import BodyDamaged, BodyMissing
from service.persistence import mailstore
from service.persistence.bodies import Bodies, compaction
from service.persistence.bodies.segments import Segments
from service.persistence.database import Database
from service.persistence.tables import Message, MessageBody, MessageBodyRef
from service.usecases.reading import open_message, open_raw
from service.usecases.users import find_user
from tests.cli_runner import tributary
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, set_up_admin
from tests.stored_bodies import body_count, store_raws, user_with_inbox
from web.app import create_app

WORST = [
    b"",
    b"Subject: =?utf-8?q?a=0D=0ABcc:_x@y?=\r\n\r\nCR\rLF\nCRLF\r\n",
    b"Subject: latin-1 \xe9\xff\r\n\r\n\x00\x80\xfe binary\r\n",
    b"Subject: big\r\n\r\n" + b"y" * (9 * 1024 * 1024),  # over SQLite's streamed-insert size
]


@pytest.fixture(params=["files", "database"])
def store_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    return settings.model_copy(update={"body_store": request.param})


@pytest.fixture
async def store_db(store_settings: Settings) -> AsyncIterator[Database]:
    database = Database(store_settings)
    yield database
    await database.dispose()


async def test_every_store_keeps_the_worst_bodies_byte_for_byte(store_db: Database, store_settings: Settings) -> None:
    user_id, inbox = await user_with_inbox(store_db)
    ids = await store_raws(store_db, user_id, inbox, WORST)
    async with store_db.read() as session:
        for message_id, raw in zip(ids, WORST, strict=True):
            assert await mailstore.read_raw(session, user_id=user_id, message_id=message_id) == raw
        in_files = (await session.exec(select(MessageBodyRef.message_id))).all()
        in_table = (await session.exec(select(MessageBody.message_id))).all()
    if store_settings.body_store == "files":
        assert (sorted(in_files), in_table) == (sorted(ids), [])
        assert [p.name for p in (store_settings.data_dir / "bodies").glob("*.seg")] == ["00000001.seg"]
    else:
        assert (in_files, sorted(in_table)) == ([], sorted(ids))
        assert not (store_settings.data_dir / "bodies").exists()
    streamed = await open_raw(db=store_db, user_id=user_id, message_id=ids[-1])
    assert b"".join([piece async for piece in streamed.chunks()]) == WORST[-1]


def test_a_segment_rolls_over_once_full_and_appends_after_a_torn_tail(tmp_path: Path) -> None:
    segments = Segments(tmp_path / "bodies", roll_bytes=100)
    first = segments.append([b"a" * 60, b"b" * 60])  # one batch stays in one segment, even past the size
    with open(segments.path(1), "ab") as torn:  # a writer killed half-way through its write
        torn.write(b"half a mess")
    second = segments.append([b"c" * 10])
    assert [(r.segment, r.offset) for r in first] == [(1, 0), (1, 60)]
    assert (second[0].segment, second[0].offset) == (2, 0)
    assert segments.read(3, second[0]) == b"c" * 10
    assert segments.numbers() == [1, 2]


async def test_a_damaged_or_truncated_segment_is_reported_never_served_as_other_bytes(settings: Settings) -> None:
    files = settings.model_copy(update={"body_store": "files"})
    db = Database(files)
    try:
        user_id, inbox = await user_with_inbox(db)
        one, two, three = (
            b"Subject: one\r\n\r\n111\r\n",
            b"Subject: two\r\n\r\n222\r\n",
            b"Subject: 3\r\n\r\n3333\r\n",
        )
        ids = await store_raws(db, user_id, inbox, [one, two, three])
        segment = files.data_dir / "bodies" / "00000001.seg"
        data = segment.read_bytes()
        assert data == one + two + three
        assert len(one) == len(two)
        # Message two's place now holds message one's bytes (same length), and message three is cut short.
        segment.write_bytes(one + one + three[:-3])
        with pytest.raises(BodyDamaged):
            await open_message(db=db, user_id=user_id, message_id=ids[1])
        with pytest.raises(BodyMissing):
            await open_raw(db=db, user_id=user_id, message_id=ids[2])
        assert (await open_message(db=db, user_id=user_id, message_id=ids[0])).view.subject == "one"

        verified = tributary(files, "bodies", "verify", "--json")
        assert verified.returncode == 1, verified.stderr
        assert verified.stdout, verified.stderr
        report = json.loads(verified.stdout)
        assert report["checked"] == 3
        assert [(p["message_id"], p["kind"]) for p in report["problems"]] == [(ids[1], "damaged"), (ids[2], "missing")]
        plain = tributary(files, "bodies", "verify")
        assert "Checked 3 message bodies: 1 missing, 1 damaged." in plain.stdout
    finally:
        await db.dispose()


@pytest.fixture
def web_app(settings: Settings) -> Litestar:
    return create_app(settings.model_copy(update={"body_store": "files"}))


async def test_the_message_page_and_download_word_a_damaged_body(web_client: WebClient, settings: Settings) -> None:
    files = settings.model_copy(update={"body_store": "files"})
    db = Database(files)
    try:
        await set_up_admin(web_client)
        user = await find_user(db=db, email=ADMIN_EMAIL)
        async with db.write() as session:
            inbox = (await mailstore.ensure_special_folders(session, user.id))[SpecialUse.INBOX]
            assert inbox.id is not None
        secret = b"Subject: payroll\r\n\r\nthe secret figures\r\n"
        [message_id] = await store_raws(db, user.id, inbox.id, [secret])
        assert (await web_client.get(f"/mail/messages/{message_id}")).status_code == 200
        segment = files.data_dir / "bodies" / "00000001.seg"
        segment.write_bytes(secret.replace(b"secret", b"SECRET"))

        page = await web_client.get(f"/mail/messages/{message_id}")
        assert page.headers["content-type"].startswith("text/html")
        assert "stored copy is damaged or missing" in page.text
        assert "figures" not in page.text
        download = await web_client.get(f"/mail/messages/{message_id}/raw")
        assert download.status_code >= 500
        assert b"figures" not in download.content
    finally:
        await db.dispose()


async def _reader(db: Database, user_id: int, expected: dict[int, bytes], stop: asyncio.Event) -> int:
    """Read every message again and again until `stop`; how many reads, each checked."""
    reads = 0
    while not stop.is_set():
        for message_id, raw in expected.items():
            async with db.read() as session:
                assert await mailstore.read_raw(session, user_id=user_id, message_id=message_id) == raw
            reads += 1
        await asyncio.sleep(0)
    return reads


async def test_compaction_moves_live_bodies_while_readers_read_and_frees_dead_segments(settings: Settings) -> None:
    files = settings.model_copy(update={"body_store": "files"})
    db = Database(files)
    db.bodies = Bodies(kind="files", segments=Segments(files.data_dir / "bodies", roll_bytes=4096))
    try:
        user_id, inbox = await user_with_inbox(db)
        raws = [f"Subject: {n}\r\n\r\n".encode() + bytes([65 + n % 26]) * 1500 for n in range(24)]
        ids: list[int] = []
        for start in range(0, len(raws), 3):  # batches of three: a segment each, about
            ids += await store_raws(db, user_id, inbox, raws[start : start + 3])
        before = db.bodies.segments.numbers()
        assert len(before) >= 6
        async with db.write() as session:  # most mail deleted: its bytes are garbage now
            for message_id in ids[::4] + ids[1::4] + ids[2::4]:
                await session.delete(await session.get(Message, message_id))
        kept = {mid: raw for mid, raw in zip(ids, raws, strict=True) if mid in ids[3::4]}
        size_before = sum(p.stat().st_size for p in (files.data_dir / "bodies").glob("*.seg"))

        first_kept = next(iter(kept))
        async with db.read() as session:  # a reader that looked its reference up before the swap
            held = await mailstore.open_body(session, user_id=user_id, message_id=first_kept)
        stop = asyncio.Event()
        readers = [asyncio.ensure_future(_reader(db, user_id, kept, stop)) for _ in range(2)]
        first = await compaction.compact(db, settle_seconds=0)  # retired files stay for the grace time
        assert first is not None
        assert (first.compacted, first.moved, first.removed) == (7, 5, 0)
        assert held.ref is not None
        assert held.ref.segment == 2
        assert await held.read() == kept[first_kept]  # its old segment is still there
        second = await compaction.compact(db, settle_seconds=0, grace_seconds=0)
        stop.set()
        assert all(await asyncio.gather(*readers))
        assert second is not None
        assert second.removed == 8
        with pytest.raises(BodyMissing):  # gone after the grace: reported, never other bytes
            await held.read()
        size_after = sum(p.stat().st_size for p in (files.data_dir / "bodies").glob("*.seg"))
        assert size_after < size_before / 2
        async with db.read() as session:
            for message_id, raw in kept.items():
                assert await mailstore.read_raw(session, user_id=user_id, message_id=message_id) == raw
            assert await body_count(session) == len(kept)

        backup = _shared_lock(files.data_dir / "bodies" / compaction.LOCK_NAME)  # a backup copying
        try:
            assert await compaction.compact(db, settle_seconds=0, grace_seconds=0) is None
        finally:
            os.close(backup)
    finally:
        await db.dispose()


def _shared_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def test_bodies_migrate_and_verify_from_the_command_line_on_an_empty_store(settings: Settings) -> None:
    for target in ("files", "database"):
        moved = tributary(settings, "bodies", "migrate", "--to", target, "--json")
        assert moved.returncode == 0, moved.stderr
        assert json.loads(moved.stdout) == {"moved": 0, "unreadable": []}
    checked = tributary(settings, "bodies", "verify")
    assert (checked.returncode, checked.stdout.strip()) == (0, "Checked 0 message bodies: 0 missing, 0 damaged.")


async def test_migrate_moves_every_body_both_ways_and_resumes(settings: Settings) -> None:
    db = Database(settings.model_copy(update={"body_store": "database"}))
    try:
        user_id, inbox = await user_with_inbox(db)
        raws = [f"Subject: m{n}\r\n\r\n{n}\r\n".encode() for n in range(30)] + WORST
        ids = await store_raws(db, user_id, inbox, raws)
        result = tributary(settings, "bodies", "migrate", "--to", "files")
        assert result.returncode == 0
        assert f"Moved {len(raws)} message bodies to files." in result.stdout
        again = tributary(settings, "bodies", "migrate", "--to", "files")  # resumable: nothing left to move
        assert "Moved 0 message bodies" in again.stdout
        async with db.read() as session:
            assert (await session.exec(select(MessageBody.message_id))).all() == []
            for message_id, raw in zip(ids, raws, strict=True):
                assert await mailstore.read_raw(session, user_id=user_id, message_id=message_id) == raw
        back = tributary(settings, "bodies", "migrate", "--to", "database")
        assert back.returncode == 0
        assert f"Moved {len(raws)} message bodies to database." in back.stdout
        async with db.read() as session:
            assert (await session.exec(select(MessageBodyRef.message_id))).all() == []
            for message_id, raw in zip(ids, raws, strict=True):
                assert await mailstore.read_raw(session, user_id=user_id, message_id=message_id) == raw
        assert tributary(settings, "bodies", "verify").returncode == 0
        assert (settings.data_dir / "bodies" / "00000001.seg").stat().st_size > 0  # garbage until compaction
    finally:
        await db.dispose()


def test_the_body_store_defaults_to_files_on_sqlite_and_the_table_on_postgresql(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).resolved_body_store == "files"
    postgres = Settings(data_dir=tmp_path, database_url="postgresql://u@127.0.0.1/db")
    assert postgres.resolved_body_store == "database"
    chosen = Settings(data_dir=tmp_path, database_url="postgresql://u@127.0.0.1/db", body_store="files")
    assert chosen.resolved_body_store == "files"
