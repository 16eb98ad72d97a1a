"""The engine and its sessions, for SQLite (embedded default) and PostgreSQL (psycopg 3).

SQLite is set up for a server: WAL (readers never wait for the writer), a busy
timeout, foreign keys on, synchronous=FULL (a committed batch survives a power
cut, which POP3 deletion relies on) and BEGIN IMMEDIATE for write transactions,
so two writers queue on the busy timeout instead of failing with "database is
locked" half-way through. Reads use a deferred BEGIN and never block writers.

Use cases open `db.read()` for queries and `db.write()` for changes; a write
commits when its block ends and rolls back if the block raises. Never hold
either across network I/O.

The data directory is created mode 0700 and the SQLite file 0600 (SQLite gives
its -wal and -shm files the database file's mode; an older file readable by
others is narrowed to 0600, with its side files), so only the service's user
reads the mail. `problem()` says, in one sentence, why the database cannot be
used yet (unreachable, or not migrated): `/health` and the start-up checks ask it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.errors import DataDirUnwritable
from service.persistence.bodies import Bodies

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


@dataclass(frozen=True, slots=True)
class DatabaseProblem:
    """Why the database cannot be used yet: `state` and `reason` are safe to show anyone (/health);
    `detail` is for the operator (it names the database, never its password)."""

    state: Literal["unavailable", "not migrated"]
    reason: str
    detail: str


def prepare_data_dir(settings: Settings) -> None:
    """Create TRIBUTARY_DATA_DIR (mode 0700) and, on SQLite, the database file (mode 0600) if missing.

    Raises DataDirUnwritable, naming the directory, when this user cannot create or write it.
    """
    directory = settings.data_dir
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(directory)
        database_file = _sqlite_file(settings)
        if database_file is not None:
            database_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(database_file, os.O_WRONLY | os.O_CREAT, 0o600))
            _owner_only(database_file, *(database_file.with_name(database_file.name + end) for end in _SIDE_FILES))
    except OSError as exc:
        reason = exc.strerror.lower() if exc.strerror else "permission denied"
        raise DataDirUnwritable(
            f"The data directory {directory} cannot be written ({reason}): "
            "give this user write access to it or set TRIBUTARY_DATA_DIR to another directory."
        ) from exc


_SIDE_FILES = ("-wal", "-shm", "-journal")


def _owner_only(*paths: Path) -> None:
    """Take group and other access off existing files of this user (a database from before files were
    created 0600); a file someone else owns is left as its owner chose."""
    for path in paths:
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            path.chmod(info.st_mode & 0o700)


def _sqlite_file(settings: Settings) -> Path | None:
    """The SQLite database's file, or None (PostgreSQL, or an in-memory SQLite)."""
    if not settings.is_sqlite:
        return None
    name = make_url(settings.sync_database_url).database
    return Path(name) if name and name != ":memory:" and not name.startswith("file:") else None


def describe_url(url: str) -> str:
    """The database's URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "TRIBUTARY_DATABASE_URL"


class Database:
    """One engine per process, and the two kinds of session the use cases open."""

    def __init__(self, settings: Settings, *, echo: bool = False) -> None:
        self.url = settings.async_database_url
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            prepare_data_dir(settings)
            self.engine = create_async_engine(self.url, echo=echo)
            _configure_sqlite(self.engine, settings.sqlite_busy_timeout_ms)
            self._write_engine = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        else:
            self.engine = create_async_engine(self.url, echo=echo, pool_pre_ping=True)
            self._write_engine = self.engine
        self.bodies = Bodies.from_settings(settings)  # every session carries it (bodies_of)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for queries. Anything it changes is rolled back."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            yield self.bodies.attach(session)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that commits when the block ends (BEGIN IMMEDIATE on SQLite)."""
        async with AsyncSession(self._write_engine, expire_on_commit=False) as session, session.begin():
            yield self.bodies.attach(session)

    async def ping(self) -> bool:
        """True when the database answers a SELECT 1 within PING_TIMEOUT_SECONDS."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError, TimeoutError):
            return False
        return True

    async def problem(self) -> DatabaseProblem | None:
        """None when the database answers and is fully migrated; else what is wrong."""
        from service.persistence.migrations import pending_message  # Alembic is slow to import

        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self.engine.connect() as connection:
                pending = await connection.run_sync(pending_message)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            return DatabaseProblem("unavailable", "The database cannot be reached.", unreachable_message(self.url, exc))
        if pending is None:
            return None
        return DatabaseProblem("not migrated", pending, pending)

    async def dispose(self) -> None:
        await self.engine.dispose()


def unreachable_message(url: str, exc: BaseException) -> str:
    """One sentence for a database that cannot be opened or connected to, with the driver's reason."""
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(reason).strip().splitlines()
    detail = " ".join(lines[0].split())[:200] if lines else type(reason).__name__
    if isinstance(exc, TimeoutError):
        detail = f"no answer within {PING_TIMEOUT_SECONDS} s"
    return (
        f"The database {describe_url(url)} cannot be reached ({detail}): "
        "check TRIBUTARY_DATABASE_URL and that the database server runs."
    )
