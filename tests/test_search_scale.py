"""Search costs what the searcher's own mail costs: another user's large mailbox, deep pages
and real-sized bodies (migration 0009, `tributary search reindex`) stay out of the bill.

The plans are asserted, not timed: SQLite's FTS5 walk is restricted by the `owner` token
(counted as the rows the index yields), a query without words walks `message`'s
(user_id, sort_date, id) index, and PostgreSQL restricts by user_id through an index.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from service.config import Settings
from service.domain.search_query import fts5_match, parse
from service.errors import InvalidInput
from service.persistence import search_index
from service.persistence.database import Database
from service.usecases import search as searching
from service.usecases.users import add_user
from tests.cli_runner import tributary
from tests.test_search import PASSWORD, found, make, store

OTHERS = 5000


def _migration() -> ModuleType:
    path = Path(__file__).parents[1] / "alembic" / "versions" / "0009_search.py"
    spec = importlib.util.spec_from_file_location("migration_0009", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _plan(db: Database, statement: Any, user_id: int, query: str) -> str:
    """The database's plan for `statement` (values inlined), in one transaction with plan_postgresql."""
    async with db.read() as session:
        connection = await session.connection()
        sql = str(statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
        if connection.dialect.name == "sqlite":
            rows = (await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)).all()
            return "\n".join(str(r[-1]) for r in rows)
        await search_index.plan_postgresql(connection, parse(query), user_id)
        return "\n".join(r[0] for r in (await connection.exec_driver_sql("EXPLAIN " + sql.replace("%", "%%"))).all())


def _statement(dialect: str, user_id: int, query: str) -> Any:
    parsed = parse(query)
    statement = search_index.newest_first(dialect, parsed, user_id, searching._COLUMNS)
    assert statement is not None
    return statement.limit(51)


@pytest.fixture
async def crowded(db: Database) -> tuple[int, int]:
    """alice with one message; mallory with OTHERS messages that all have the word."""
    alice = (await add_user(db=db, email="alice@example.test", password=PASSWORD)).id
    mallory = (await add_user(db=db, email="mallory@example.test", password=PASSWORD)).id
    await store(db, alice, "Inbox", make("Alice's", body="ledger entry"))
    for start in range(0, OTHERS, 1000):
        await store(db, mallory, "Inbox", *(make(f"M {n}", body="ledger spam") for n in range(start, start + 1000)))
    async with db.write() as session:
        if (await session.connection()).dialect.name == "postgresql":
            await session.exec(text("ANALYZE message_search"))  # type: ignore[call-overload]
            await session.exec(text("ANALYZE message"))  # type: ignore[call-overload]
    return alice, mallory


async def test_another_users_large_mailbox_is_not_walked(db: Database, crowded: tuple[int, int]) -> None:
    alice, mallory = crowded
    assert await found(db, alice, "ledger") == ["Alice's"]
    assert len((await searching.search(db=db, user_id=mallory, query="ledger", per_page=200)).hits) == 200
    async with db.read() as session:
        dialect = (await session.connection()).dialect.name
        if dialect == "sqlite":
            expression = fts5_match(parse("ledger"))
            assert expression is not None
            walk = "SELECT count(*) FROM message_search WHERE message_search MATCH :m"
            owned = search_index.owned_match(expression, alice)
            # the index itself yields only alice's row: mallory's 5,000 are skipped inside FTS5
            assert (await session.exec(text(walk).bindparams(m=owned))).one()[0] == 1  # type: ignore[call-overload]
            assert (await session.exec(text(walk).bindparams(m=expression))).one()[0] == OTHERS + 1  # type: ignore[call-overload]
    statement = _statement(dialect, alice, "ledger")
    if dialect == "sqlite":  # the search walks the index with exactly that restriction
        assert search_index.owned_match('"ledger"', alice) in str(
            statement.compile(compile_kwargs={"literal_binds": True})
        )
    plan = await _plan(db, statement, alice, "ledger")
    if dialect == "sqlite":
        assert "VIRTUAL TABLE INDEX" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:  # the user's rows come through an index on user_id (a walk or a BitmapAnd), never all matches
        assert "Index Cond: (message_search.user_id =" in plan or "Index Cond: (user_id =" in plan, plan


@pytest.mark.parametrize("query", ["is:unread", "has:attachment", "after:2020-01-01 is:unread"])
async def test_a_query_without_words_walks_the_users_messages(
    db: Database, crowded: tuple[int, int], query: str
) -> None:
    alice, _ = crowded
    async with db.read() as session:
        dialect = (await session.connection()).dialect.name
    assert search_index.newest_first(dialect, parse(query), alice, searching._COLUMNS) is None
    parsed = parse(query)
    statement = searching.filter_only(parsed, alice).limit(51)
    plan = await _plan(db, statement, alice, query)
    assert "message_search" not in plan
    assert "ix_message_user_listing" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
    assert "Sort" not in plan, plan


async def test_a_word_like_the_owner_token_is_only_a_word(db: Database, crowded: tuple[int, int]) -> None:
    alice, _ = crowded
    assert await found(db, alice, f"u{alice}") == []
    assert await found(db, alice, f"sender:u{alice} ledger") == []


async def test_pages_stop_before_a_deep_offset(db: Database) -> None:
    alice = (await add_user(db=db, email="alice@example.test", password=PASSWORD)).id
    await store(db, alice, "Inbox", *(make(f"N {n}", body="word") for n in range(3)))
    last = searching.MAX_OFFSET // 20 + 1  # per_page 20: this page's offset is MAX_OFFSET
    assert searching.last_page(20) == last
    assert searching.last_page(1) == searching.MAX_PAGE
    results = await searching.search(db=db, user_id=alice, query="word", page=last, per_page=20)
    assert results.hits == ()
    assert not results.has_more
    assert not results.older_hidden
    with pytest.raises(InvalidInput, match="Narrow the search to see older results"):
        await searching.search(db=db, user_id=alice, query="word", page=last + 1, per_page=20)
    with pytest.raises(InvalidInput):
        await searching.search(db=db, user_id=alice, query="word", page=searching.MAX_PAGE, per_page=200)


async def test_the_last_page_says_older_results_are_hidden(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(searching, "MAX_OFFSET", 2)
    alice = (await add_user(db=db, email="alice@example.test", password=PASSWORD)).id
    await store(db, alice, "Inbox", *(make(f"N {n}", body="word") for n in range(5)))
    page = await searching.search(db=db, user_id=alice, query="word", page=2, per_page=2)
    assert len(page.hits) == 2
    assert page.next_page is None
    assert page.older_hidden


def test_bodies_are_batched_by_bytes() -> None:
    for batches in (_migration()._batches, search_index.byte_batches):
        sizes = [(1, 10), (2, 30), (3, 100), (4, 5), (5, 5), (6, 60)]
        assert batches(sizes, 40) == [[1, 2], [3], [4, 5], [6]]
        assert batches([], 40) == []


async def test_the_migration_builds_in_byte_batches(settings: Settings, db: Database) -> None:
    await db.dispose()
    # Migration 0009 ran before the body store (0012): every body was in message_body then.
    settings = settings.model_copy(update={"body_store": "database"})
    db = Database(settings)
    alice = (await add_user(db=db, email="alice@example.test", password=PASSWORD)).id
    await store(db, alice, "Inbox", *(make(f"B {n}", body=f"bulky {n} " + "x" * 3000) for n in range(7)))
    await db.dispose()
    engine = create_engine(settings.sync_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM message_search"))
            _migration()._build(connection, limit=5000)  # one or two messages a batch
    finally:
        engine.dispose()
    again = Database(settings)
    try:
        assert len(await found(again, alice, "bulky")) == 7
        assert await found(again, alice, "6") == ["B 6"]
    finally:
        await again.dispose()


async def test_reindex_restores_a_users_missing_rows(settings: Settings, db: Database) -> None:
    alice = (await add_user(db=db, email="alice@example.test", password=PASSWORD)).id
    bob = (await add_user(db=db, email="bob@example.test", password=PASSWORD)).id
    await store(db, alice, "Inbox", *(make(f"A {n}", body="drifted") for n in range(4)))
    await store(db, bob, "Inbox", make("Bob's", body="drifted"))
    async with db.write() as session:  # as if stored by a worker older than the upgrade
        await session.exec(text("DELETE FROM message_search"))  # type: ignore[call-overload]
    assert await found(db, alice, "drifted") == []
    assert await search_index.rebuild(db, user_id=alice, limit=1) == 4  # one message a batch
    assert sorted(await found(db, alice, "drifted")) == ["A 0", "A 1", "A 2", "A 3"]
    assert await found(db, bob, "drifted") == []
    assert await search_index.rebuild(db, user_id=alice) == 4  # again: replaced, not doubled
    assert len(await found(db, alice, "drifted")) == 4
    await db.dispose()

    result = tributary(settings, "search", "reindex", "--user", "bob@example.test")
    assert result.returncode == 0, result.stderr
    assert "Indexed 1 of bob@example.test's messages again." in result.stdout
    everyone = tributary(settings, "search", "reindex")
    assert everyone.returncode == 0
    assert "Indexed 5 of all messages again." in everyone.stdout
    unknown = tributary(settings, "search", "reindex", "--user", "nobody@example.test")
    assert unknown.returncode == 1
    assert unknown.stderr.strip()
    searched = tributary(settings, "search", "--user", "bob@example.test", "drifted")
    assert searched.returncode == 0
    assert "Bob's" in searched.stdout
    again = Database(settings)
    try:
        async with again.read() as session:
            rows = (await session.exec(text("SELECT count(*) FROM message_search"))).one()[0]  # type: ignore[call-overload]
        assert rows == 5
    finally:
        await again.dispose()
