"""The database behaves as DESIGN.md section 3 says: SQLite pragmas, queued writers, UTC times."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from service.persistence.database import Database
from service.persistence.tables import Domain, Folder


async def test_sqlite_is_configured_for_a_server(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite pragmas")
    async with db.read() as session:
        pragmas = {
            name: (await (await session.connection()).execute(text(f"PRAGMA {name}"))).scalar_one()
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        }
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 2, "busy_timeout": 30000}


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.write() as session:
            session.add(Folder(user_id=424242, name="Orphan", path="Orphan"))


async def test_sqlite_writers_queue_instead_of_failing(db: Database) -> None:
    """Read-then-write transactions from many tasks at once: under BEGIN IMMEDIATE none fails
    with "database is locked" and no increment is lost (a deferred BEGIN loses or fails some)."""
    if not db.is_sqlite:
        pytest.skip("SQLite's locking; PostgreSQL queues writers on row locks")
    async with db.write() as session:
        session.add(Domain(name="counter.test", max_message_bytes=1_000_000))

    async def bump() -> None:
        async with db.write() as session:
            domain = (await session.exec(select(Domain).where(Domain.name == "counter.test"))).one()
            await asyncio.sleep(0.01)  # widen the window between the read and the write
            domain.max_message_bytes += 1
            session.add(domain)

    await asyncio.gather(*(bump() for _ in range(20)))
    async with db.read() as session:
        domain = (await session.exec(select(Domain).where(Domain.name == "counter.test"))).one()
    assert domain.max_message_bytes == 1_000_020


async def test_timestamps_come_back_aware_in_utc(db: Database) -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    async with db.write() as session:
        session.add(Domain(name="tz.test", created_at=moment))
    async with db.read() as session:
        stored = (await session.exec(select(Domain).where(Domain.name == "tz.test"))).one()
    assert stored.created_at == moment
    assert stored.created_at.tzinfo == UTC


async def test_naive_timestamps_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with db.write() as session:
            session.add(Domain(name="naive.test", created_at=datetime(2024, 1, 1)))
