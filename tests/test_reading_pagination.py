"""The message list pages by keyset (sort_date, id), never OFFSET: a page deep in a
100,000-message folder is as quick as the first, and the query walks the index
ix_message_folder_listing without sorting.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, insert, text
from sqlalchemy.engine import Connection
from sqlmodel import col

from service.domain.mailbox import MessageSummary
from service.persistence.database import Database
from service.persistence.mailstore import folder_by_path
from service.persistence.tables import Message, MessageBody
from service.usecases.reading import PageCursor, list_folders, list_page
from service.usecases.users import add_user

BIG = 100_000
BASE = datetime(2020, 1, 1, tzinfo=UTC)


def _row(n: int, *, message_id: int, user_id: int, folder_id: int) -> dict[str, Any]:
    # Three messages share each timestamp, so the id has to break ties.
    when = BASE + timedelta(seconds=n // 3)
    return {
        "id": message_id,
        "user_id": user_id,
        "folder_id": folder_id,
        "subject": f"Message {n}",
        "from_address": f"Sender {n % 97} <s{n % 97}@example.test>",
        "to_addresses": "reader@example.test",
        "cc_addresses": "",
        "date": when,
        "sort_date": when,
        "size": 1000 + n,
        "sha256": f"{n:064x}",
        "preview": "",
        "has_attachments": n % 10 == 0,
        "seen": n % 4 != 0,
        "flagged": False,
        "answered": False,
        "draft": False,
        "received_at": when,
        "created_at": when,
    }


async def _fill(db: Database, user_id: int, folder_id: int, count: int) -> None:
    """Bulk-insert index and body rows with SQLAlchemy Core, in chunks (no IMAP, no parsing)."""
    chunk = 20_000
    async with db.write() as session:
        connection = await session.connection()
        for start in range(0, count, chunk):
            numbers = range(start, min(start + chunk, count))
            await connection.execute(  # RETURNING makes SQLAlchemy send a few multi-row INSERTs, as deliver_many
                # does; PostgreSQL's folder-count triggers run per statement, and one statement per row
                # would rewrite the folder row 100,000 times in one transaction.
                insert(Message).returning(col(Message.id)),
                [_row(n, message_id=n + 1, user_id=user_id, folder_id=folder_id) for n in numbers],
            )
            await connection.execute(
                insert(MessageBody), [{"message_id": n + 1, "raw": b"Subject: x\r\n\r\nx\r\n"} for n in numbers]
            )


def _expected(n: int) -> str:
    return f"Message {n}"


@contextmanager
def _captured_queries(db: Database) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(_conn: Connection, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


async def _plan(db: Database, statement: str, parameters: Any) -> str:
    async with db.read() as session:
        connection = await session.connection()
        if db.is_sqlite:
            rows = await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            return "\n".join(str(row[-1]) for row in rows)
        await connection.execute(text("ANALYZE message"))
        rows = await connection.exec_driver_sql("EXPLAIN " + statement, parameters)
        return "\n".join(str(row[0]) for row in rows)


def _subjects(messages: tuple[MessageSummary, ...]) -> list[str]:
    return [m.subject for m in messages]


async def test_a_100000_message_folder_pages_by_keyset(db: Database) -> None:
    user = await add_user(db=db, email="big@example.test", password="long enough")
    async with db.write() as session:
        folder = await folder_by_path(session, user.id, "Archive")
    assert folder.id is not None
    started = time.monotonic()
    await _fill(db, user.id, folder.id, BIG)
    fill_seconds = time.monotonic() - started

    started = time.monotonic()
    first = await list_page(db=db, user_id=user.id, folder_id=folder.id)
    first_seconds = time.monotonic() - started
    assert first.folder.total == BIG
    assert first.folder.unread == BIG // 4
    assert first.newer is None
    assert _subjects(first.messages) == [_expected(n) for n in range(BIG - 1, BIG - 51, -1)]

    second = await list_page(db=db, user_id=user.id, folder_id=folder.id, before=first.older)
    assert _subjects(second.messages) == [_expected(n) for n in range(BIG - 51, BIG - 101, -1)]
    back = await list_page(db=db, user_id=user.id, folder_id=folder.id, after=second.newer)
    assert back.messages == first.messages
    assert back.newer is None

    # Deep inside: the page below message 50,000 (n = 49,999), reached by its cursor.
    deep_cursor = PageCursor(BASE + timedelta(seconds=49_999 // 3), 50_000).token
    with _captured_queries(db) as queries:
        started = time.monotonic()
        deep = await list_page(db=db, user_id=user.id, folder_id=folder.id, before=deep_cursor)
        deep_seconds = time.monotonic() - started
    assert _subjects(deep.messages) == [_expected(n) for n in range(49_998, 49_948, -1)]
    assert deep.older is not None
    assert deep.newer is not None
    up = await list_page(db=db, user_id=user.id, folder_id=folder.id, after=deep.newer)
    assert _subjects(up.messages) == [_expected(n) for n in range(50_048, 49_998, -1)]

    last = await list_page(
        db=db, user_id=user.id, folder_id=folder.id, before=PageCursor(BASE + timedelta(seconds=39 // 3), 40).token
    )
    assert _subjects(last.messages) == [_expected(n) for n in range(38, -1, -1)]
    assert last.older is None

    [(page_sql, page_params)] = [(s, p) for s, p in queries if "ORDER BY" in s and "LIMIT" in s and "<" in s][:1]
    plan = await _plan(db, page_sql, page_params)
    assert "ix_message_folder_listing" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
    assert "Sort" not in plan, plan
    # SQLAlchemy's SQLite dialect always writes "LIMIT ? OFFSET ?"; the offset must stay 0.
    assert "OFFSET" not in page_sql.upper() or list(page_params)[-1] == 0, (page_sql, page_params)

    started = time.monotonic()
    folders = await list_folders(db=db, user_id=user.id)
    tree_seconds = time.monotonic() - started
    assert next(f for f in folders if f.path == "Archive").total == BIG

    print(
        f"fill {fill_seconds:.1f}s first {first_seconds * 1000:.0f}ms deep {deep_seconds * 1000:.0f}ms "
        f"tree {tree_seconds * 1000:.0f}ms\n{plan}"
    )
    assert deep_seconds < 1.0
    assert first_seconds < 1.0
