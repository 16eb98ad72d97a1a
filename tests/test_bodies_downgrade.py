"""Migration 0012's downgrade (issue 20): bodies in segment files go back into `message_body`,
byte for byte, and a damaged one stops the downgrade before anything is dropped."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from service.config import Settings
from service.domain.values import SpecialUse
from service.persistence import mailstore, migrations
from service.persistence.database import Database
from service.usecases.users import add_user

RAWS = [b"", b"Subject: one\r\n\r\nCR\rLF\n\x00\xff\r\n", b"Subject: big\r\n\r\n" + b"z" * (2 * 1024 * 1024)]


async def _store_in_files(settings: Settings) -> list[int]:
    db = Database(settings.model_copy(update={"body_store": "files"}))
    try:
        user = await add_user(db=db, email="down@example.test", password="long enough")
        incoming = await mailstore.prestore(db.bodies, [mailstore.IncomingMessage(raw=raw) for raw in RAWS])
        async with db.write() as session:
            inbox = (await mailstore.ensure_special_folders(session, user.id))[SpecialUse.INBOX]
            assert inbox.id is not None
            return await mailstore.deliver_many(session, user_id=user.id, folder_id=inbox.id, messages=incoming)
    finally:
        await db.dispose()


async def test_downgrading_past_0012_brings_every_body_back_into_the_table(settings: Settings) -> None:
    ids = await _store_in_files(settings)
    migrations.downgrade(settings, "0011")
    engine = create_engine(settings.sync_database_url)
    try:
        assert "message_body_ref" not in inspect(engine).get_table_names()
        with engine.connect() as connection:
            result = connection.execute(text("SELECT message_id, raw FROM message_body"))
            rows = {int(mid): bytes(raw) for mid, raw in result}
        assert rows == dict(zip(ids, RAWS, strict=True))
    finally:
        engine.dispose()
    migrations.upgrade(settings)
    migrations.check(settings)


async def test_a_damaged_body_stops_the_downgrade_with_nothing_lost(settings: Settings) -> None:
    await _store_in_files(settings)
    segment = settings.data_dir / "bodies" / "00000001.seg"
    damaged = bytearray(segment.read_bytes())
    damaged[len(b"".join(RAWS)) - 1] ^= 0xFF  # the last body's last byte (zeros to a whole block follow it)
    segment.write_bytes(bytes(damaged))
    with pytest.raises(RuntimeError, match="damaged; not downgrading"):
        migrations.downgrade(settings, "0011")
    engine = create_engine(settings.sync_database_url)
    try:
        assert "message_body_ref" in inspect(engine).get_table_names()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM message_body_ref")).scalar_one() == len(RAWS)
            assert connection.execute(text("SELECT count(*) FROM message_body")).scalar_one() == 0
    finally:
        engine.dispose()
