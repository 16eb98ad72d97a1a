"""The full-text index `message_search` (migration 0009): filling it and asking it.

One table name, two implementations (the migration's text says why):

- SQLite: an FTS5 table, a column per field, whose rowid is a sort key: the message's
  sort_date in whole seconds since 2000 (clamped to 32 bits signed) times 2^32, plus its
  id. `ORDER BY rowid DESC` is then newest first, and FTS5 walks a term's matches in that
  order and stops after a page, however common the word; date filters are rowid ranges.
  Within one second, the newest id comes first.
- PostgreSQL: (message_id, user_id, sort_date, tsvector) with a GIN index and a
  (user_id, sort_date, message_id) index; the planner picks the GIN index for rare terms
  and walks the user's mail newest first for common ones. Text is reduced by
  `plain_words` so both databases split words and fold accents alike.

Rows leave with their message (trigger / cascade); the folder is not indexed, so moves
need nothing. Every value travels as a bound parameter; the MATCH / tsquery text comes
from `service.domain.search_query`, which quotes each user term.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, Select, TextClause, column, table, text
from sqlalchemy import select as core_select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from service.domain.search_query import SearchQuery, fts5_match, pg_tsquery
from service.domain.search_text import SearchText, plain_words
from service.persistence.tables import Folder, Message

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


_SQLITE_INSERT = text(
    f"""INSERT INTO message_search (rowid, subject, sender, recipients, body, attachments)
    SELECT {sqlite_key("message")}, :subject, :sender, :recipients, :body, :attachments
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


async def plan_postgresql(connection: AsyncConnection, query: SearchQuery) -> None:
    """Choose how PostgreSQL finds the matches, in this transaction (SET LOCAL).

    Joined with the user's rows and a LIMIT, the planner can walk all of a user's mail
    newest first for a word that is in one message, or fetch and sort 100,000 matches of
    "the"; each costs seconds at 100,000 messages. Its estimate of how many documents the
    words are in (the relaxed query: every word anywhere, which the column statistics
    answer well) is the better guide, and costs a plan, not a scan: up to DENSE_MATCHES,
    fetch the matches through the GIN index and sort them (index walks off); above, walk
    the (user_id, sort_date) index newest first and stop after the page (bitmap scans off).
    """
    relaxed = pg_tsquery(query, relaxed=True)
    if relaxed is None:
        return
    plan = await connection.execute(
        text("EXPLAIN (FORMAT JSON) SELECT 1 FROM message_search WHERE document @@ to_tsquery('simple', :tsq)"),
        {"tsq": relaxed},
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
    and dates, newest first, walking the index; None for a query without terms that names a
    folder (the caller then walks that folder's messages in `message` itself)."""
    if dialect == "sqlite":
        expression = fts5_match(query)
        if expression is None and query.folder is not None:
            return None  # the folder's own (sort_date, id) index is the better walk
        key = _FTS.c.rowid
        statement = core_select(*columns).select_from(_FTS).join(Message, col(Message.id) == key.op("&")(_MASK))
        if expression is not None:
            statement = statement.where(text("message_search MATCH :fts").bindparams(fts=expression))
        if query.after is not None:
            statement = statement.where(key >= _key_of(query.after))
        if query.before is not None:
            statement = statement.where(key < _key_of(query.before))
        order: list[Any] = [key.desc()]
    else:
        tsquery = pg_tsquery(query)
        if tsquery is None and query.folder is not None:
            return None  # the folder's own (sort_date, id) index is the better walk
        statement = (
            core_select(*columns)
            .select_from(_PG)
            .join(Message, col(Message.id) == _PG.c.message_id)
            .where(_PG.c.user_id == user_id)
        )
        if tsquery is not None:
            statement = statement.where(
                text("message_search.document @@ to_tsquery('simple', :tsq)").bindparams(tsq=tsquery)
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
