"""The full-text index `message_search` (migration 0009): filling it and asking it.

One table name, two implementations (the migration's text says why):

- SQLite: an FTS5 table, a column per field plus `owner` (the token `u<user_id>`), whose
  rowid is a sort key: the message's
  sort_date in whole seconds since 2000 (clamped to 32 bits signed) times 2^32, plus its
  id. `ORDER BY rowid DESC` is then newest first, and FTS5 walks a term's matches in that
  order and stops after a page, however common the word; date filters are rowid ranges.
  Within one second, the newest id comes first. Every MATCH is ANDed with the column
  filter `owner : u<id>` (and the user's terms kept off that column), so FTS5 steps
  through the searcher's matches only, skipping other users' doclist entries by rowid:
  another user's 300,000 messages with the word cost nothing.
- PostgreSQL: (message_id, user_id, sort_date, tsvector) with a GIN index and a
  (user_id, sort_date, message_id) index; the planner picks the GIN index for rare terms
  and walks the user's mail newest first for common ones. Text is reduced by
  `plain_words` so both databases split words and fold accents alike.

Rows leave with their message (trigger / cascade); the folder is not indexed, so moves
need nothing. A query without words walks `message` itself (the caller does: the
(user_id, sort_date, id) or (folder_id, sort_date, id) index), never the index. Every
value travels as a bound parameter; the MATCH / tsquery text comes from
`service.domain.search_query`, which quotes each user term.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, Select, TextClause, bindparam, column, delete, table, text
from sqlalchemy import select as core_select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from service.domain.search_query import SearchQuery, fts5_match, pg_tsquery
from service.domain.search_text import SearchText, plain_words, search_text
from service.persistence.bodies import bodies_of
from service.persistence.database import Database
from service.persistence.tables import Folder, Message, SearchBacklog

_EPOCH_2000 = 946_684_800
_LOW = 2**32
_MASK = _LOW - 1


def sqlite_key(row: str) -> str:
    """The FTS5 rowid of `row` (a table alias or OLD/NEW in a trigger), in SQL."""
    seconds = f"coalesce(CAST(strftime('%s', {row}.sort_date) AS INTEGER), {_EPOCH_2000}) - {_EPOCH_2000}"
    return f"(max(-2147483648, min(2147483647, {seconds})) * {_LOW} + {row}.id)"


def _key_of(when: datetime) -> int:
    """The lowest sort key of a moment, for rowid ranges (`sqlite_key` in Python)."""
    seconds = int(when.astimezone(UTC).timestamp()) - _EPOCH_2000
    return max(-(2**31), min(2**31 - 1, seconds)) * _LOW


OWNER_SQL = "'u' || message.user_id"
"""The owner token of a `message` row, in SQL (`owner_token` in Python)."""


def owner_token(user_id: int) -> str:
    """The FTS5 `owner` column's one token for a user's messages."""
    return f"u{int(user_id)}"


def owned_match(expression: str, user_id: int) -> str:
    """`expression` (from `fts5_match`) restricted to the user's rows, its terms kept off `owner`.

    `- owner : (...)` is FTS5's "every column but owner" filter; a column filter inside it
    (`sender : "x"`) narrows it further, so a search for "u7" never matches user 7's token.
    """
    return f"owner : {owner_token(user_id)} AND - owner : ({expression})"


_SQLITE_INSERT = text(
    f"""INSERT INTO message_search (rowid, owner, subject, sender, recipients, body, attachments)
    SELECT {sqlite_key("message")}, {OWNER_SQL}, :subject, :sender, :recipients, :body, :attachments
    FROM message WHERE message.id = :id"""  # noqa: S608  (constant text; the values are bound)
)
_PG_INSERT = text(
    "INSERT INTO message_search (message_id, user_id, sort_date, document)"
    " SELECT message.id, message.user_id, message.sort_date,"
    " setweight(to_tsvector('simple', :subject), 'A') || setweight(to_tsvector('simple', :sender), 'B')"
    " || setweight(to_tsvector('simple', :recipients), 'C') || setweight(to_tsvector('simple', :body), 'D')"
    " FROM message WHERE message.id = :id"
)


def insert_statement(dialect: str) -> TextClause:
    """Index a stored message (its row in `message` must exist: the key comes from it)."""
    return _SQLITE_INSERT if dialect == "sqlite" else _PG_INSERT


def parameters(dialect: str, texts: Sequence[tuple[int, SearchText]]) -> list[dict[str, Any]]:
    """One parameter set per message for `insert_statement(dialect)`."""
    if dialect == "sqlite":
        return [
            {"id": mid, "subject": t.subject, "sender": t.sender, "recipients": t.recipients, "body": t.body,
             "attachments": t.attachments}
            for mid, t in texts
        ]  # fmt: skip
    return [
        {"id": mid, "subject": plain_words(t.subject), "sender": plain_words(t.sender),
         "recipients": plain_words(t.recipients), "body": plain_words(f"{t.body} {t.attachments}")}
        for mid, t in texts
    ]  # fmt: skip


async def add(connection: AsyncConnection, texts: Sequence[tuple[int, SearchText]]) -> None:
    """Index stored messages, in the caller's transaction (one batched statement)."""
    if texts:
        dialect = connection.dialect.name
        await connection.execute(insert_statement(dialect), parameters(dialect, texts))


_FTS = table("message_search", column("rowid", BigInteger))
_PG = table(
    "message_search",
    column("message_id", Integer),
    column("user_id", Integer),
    column("sort_date", DateTime(timezone=True)),
)


DENSE_MATCHES = 5000


async def plan_postgresql(connection: AsyncConnection, query: SearchQuery, user_id: int) -> None:
    """Choose how PostgreSQL finds the matches, in this transaction (SET LOCAL).

    Joined with the user's rows and a LIMIT, the planner can walk all of a user's mail
    newest first for a word that is in one message, or fetch and sort 100,000 matches of
    "the"; each costs seconds at 100,000 messages. Its estimate of how many documents the
    words are in (the relaxed query: every word anywhere, which the column statistics
    answer well) is the better guide, and costs a plan, not a scan: up to DENSE_MATCHES,
    fetch the matches through the GIN index and sort them (index walks off); above, walk
    the (user_id, sort_date) index newest first and stop after the page (bitmap scans off).

    The estimate is the searcher's: `AND user_id = :uid` makes the planner scale the
    words' count by the user's share of the rows (user_id's statistics), so another
    user's 300,000 messages with the word do not send a searcher with few matches on a
    walk through all of their mail.
    """
    relaxed = pg_tsquery(query, relaxed=True)
    if relaxed is None:
        return
    plan = await connection.execute(
        text(
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM message_search"
            " WHERE document @@ to_tsquery('simple', :tsq) AND user_id = :uid"
        ),
        {"tsq": relaxed, "uid": user_id},
    )
    document = plan.scalar_one()
    estimate = float((json.loads(document) if isinstance(document, str) else document)[0]["Plan"]["Plan Rows"])
    if estimate > DENSE_MATCHES:
        await connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    else:
        await connection.exec_driver_sql("SET LOCAL enable_indexscan = off")
        await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")


def newest_first(
    dialect: str, query: SearchQuery, user_id: int, columns: Sequence[Any]
) -> Select[tuple[Any, ...]] | None:
    """`columns` of the user's messages (joined with their folders) that match the query's terms
    and dates, newest first, walking the index; None for a query without terms (the caller
    then walks the user's or the folder's messages in `message` itself: the index would only
    add a join)."""
    if dialect == "sqlite":
        expression = fts5_match(query)
        if expression is None:
            return None
        key = _FTS.c.rowid
        statement = (
            core_select(*columns)
            .select_from(_FTS)
            .join(Message, col(Message.id) == key.op("&")(_MASK))
            .where(text("message_search MATCH :fts").bindparams(fts=owned_match(expression, user_id)))
        )
        if query.after is not None:
            statement = statement.where(key >= _key_of(query.after))
        if query.before is not None:
            statement = statement.where(key < _key_of(query.before))
        order: list[Any] = [key.desc()]
    else:
        tsquery = pg_tsquery(query)
        if tsquery is None:
            return None
        statement = (
            core_select(*columns)
            .select_from(_PG)
            .join(Message, col(Message.id) == _PG.c.message_id)
            .where(_PG.c.user_id == user_id)
            .where(text("message_search.document @@ to_tsquery('simple', :tsq)").bindparams(tsq=tsquery))
        )
        if query.after is not None:
            statement = statement.where(_PG.c.sort_date >= query.after)
        if query.before is not None:
            statement = statement.where(_PG.c.sort_date < query.before)
        order = [_PG.c.sort_date.desc(), _PG.c.message_id.desc()]
    return (
        statement.join(Folder, col(Folder.id) == col(Message.folder_id))
        .where(col(Message.user_id) == user_id, col(Folder.user_id) == user_id)
        .order_by(*order)
    )


REBUILD_BYTES = 64 * 1024 * 1024
_SIZES = 10_000


def byte_batches(sizes: Sequence[tuple[int, int]], limit: int) -> list[list[int]]:
    """(id, size) pairs, in order, grouped so a group's sizes add up to at most `limit`
    (a message bigger than `limit` makes a group of its own)."""
    groups: list[list[int]] = []
    total = limit + 1
    for mid, size in sizes:
        if total + size > limit:
            groups.append([])
            total = 0
        groups[-1].append(mid)
        total += size
    return groups


async def rebuild(db: Database, *, user_id: int | None = None, limit: int = REBUILD_BYTES) -> int:
    """Index the user's (or everyone's) stored messages again; the number of messages.

    For an index that drifted, or mail a worker older than migration 0009 stored during
    the upgrade. Ids and body sizes are read a slice at a time, then bodies in batches of
    at most `limit` bytes; each batch replaces its messages' rows in one short transaction,
    so searches keep finding everything while it runs and memory stays bounded. Messages it
    indexes leave the search backlog (service.persistence.search_backlog) in that transaction.
    """
    last, done = 0, 0
    owner = [col(Message.user_id) == user_id] if user_id is not None else []
    while True:
        async with db.read() as session:
            sizes = [
                (int(mid), int(size or 0))
                for mid, size in (
                    await session.exec(
                        core_select(col(Message.id), col(Message.size))  # type: ignore[call-overload]
                        .where(col(Message.id) > last, *owner)
                        .order_by(col(Message.id))
                        .limit(_SIZES)
                    )
                ).all()
            ]
        if not sizes:
            return done
        for ids in byte_batches(sizes, limit):
            done += await _reindex(db, ids)
        last = sizes[-1][0]


async def _reindex(db: Database, ids: list[int]) -> int:
    async with db.write() as session:
        connection = await session.connection()
        rows = (
            await connection.execute(
                core_select(
                    col(Message.id), col(Message.subject), col(Message.from_address), col(Message.to_addresses),
                    col(Message.cc_addresses),
                )
                .where(col(Message.id).in_(ids))
            )
        ).all()  # fmt: skip
        # Wherever each body is (files or table); one that cannot be read (missing, damaged: `bodies
        # verify` reports it) is indexed by its headers, as the search backlog's drain does.
        raws = await bodies_of(session).load(connection, ids)
        # The queue rows first: on PostgreSQL a drain holding them (search_backlog) commits its
        # index rows before this goes on, and the DELETE below, a statement later, sees them.
        await connection.execute(delete(SearchBacklog).where(col(SearchBacklog.message_id).in_(ids)))
        if connection.dialect.name == "sqlite":
            keys = text(f"SELECT {sqlite_key('message')} FROM message WHERE message.id IN :ids")  # noqa: S608
            doomed = text(f"DELETE FROM message_search WHERE rowid IN ({keys.text})")  # noqa: S608
        else:
            doomed = text("DELETE FROM message_search WHERE message_id IN :ids")
        await connection.execute(doomed.bindparams(bindparam("ids", expanding=True)), {"ids": ids})
        await add(
            connection,
            [
                (int(r.id), search_text(raws.get(int(r.id), b""), subject=r.subject, sender=r.from_address,
                                        to=r.to_addresses, cc=r.cc_addresses))
                for r in rows
            ],
        )  # fmt: skip
        return len(rows)
