"""The engine and its sessions, for SQLite (embedded default) and PostgreSQL (psycopg 3).

SQLite is set up for a server: WAL (readers never wait for the writer), a busy
timeout, foreign keys on, synchronous=FULL (a committed batch survives a power
cut, which POP3 deletion relies on) and BEGIN IMMEDIATE for write transactions,
so two writers queue on the busy timeout instead of failing with "database is
locked" half-way through. Reads use a deferred BEGIN and never block writers.

Use cases open `db.read()` for queries and `db.write()` for changes; a write
commits when its block ends and rolls back if the block raises. Never hold
either across network I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings

_BEGIN_OPTION = "tributary_sqlite_begin"
PING_TIMEOUT_SECONDS = 5


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """One engine per process, and the two kinds of session the use cases open."""

    def __init__(self, settings: Settings, *, echo: bool = False) -> None:
        self.url = settings.async_database_url
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            self.engine = create_async_engine(self.url, echo=echo)
            _configure_sqlite(self.engine, settings.sqlite_busy_timeout_ms)
            self._write_engine = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        else:
            self.engine = create_async_engine(self.url, echo=echo, pool_pre_ping=True)
            self._write_engine = self.engine

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for queries. Anything it changes is rolled back."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that commits when the block ends (BEGIN IMMEDIATE on SQLite)."""
        async with AsyncSession(self._write_engine, expire_on_commit=False) as session, session.begin():
            yield session

    async def ping(self) -> bool:
        """True when the database answers a SELECT 1 within PING_TIMEOUT_SECONDS."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError, TimeoutError):
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
