"""The full-text index `message_search` (migration 0009): filling it and asking it.

One table name, two implementations: an FTS5 table on SQLite (rowid = message id, a
column per field) and a (message_id, tsvector) side table with a GIN index on
PostgreSQL (fields as weights A-D, text reduced by `plain_words` so both databases split
words and fold accents alike). Rows leave with their message (trigger / cascade); the
folder is not indexed, so moves need nothing.

Every value travels as a bound parameter; the MATCH / tsquery text comes from
`service.domain.search_query`, which quotes each user term.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, TextClause, column, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from service.domain.search_query import SearchQuery, fts5_match, pg_tsquery
from service.domain.search_text import SearchText, plain_words
from service.persistence.tables import Message

_SQLITE_INSERT = text(
    "INSERT INTO message_search (rowid, subject, sender, recipients, body, attachments)"
    " VALUES (:id, :subject, :sender, :recipients, :body, :attachments)"
)
_PG_INSERT = text(
    "INSERT INTO message_search (message_id, document) VALUES (:id,"
    " setweight(to_tsvector('simple', :subject), 'A') || setweight(to_tsvector('simple', :sender), 'B')"
    " || setweight(to_tsvector('simple', :recipients), 'C') || setweight(to_tsvector('simple', :body), 'D'))"
)


def insert_statement(dialect: str) -> TextClause:
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


def matching_ids(dialect: str, query: SearchQuery) -> ColumnElement[bool] | None:
    """A condition on `message.id`: the message's index row matches the query's terms.
    None when the query has no terms (only filters)."""
    if dialect == "sqlite":
        expression = fts5_match(query)
        if expression is None:
            return None
        found = text("SELECT rowid FROM message_search WHERE message_search MATCH :fts").bindparams(fts=expression)
        return col(Message.id).in_(found.columns(column("rowid")))
    tsquery = pg_tsquery(query)
    if tsquery is None:
        return None
    found = text("SELECT message_id FROM message_search WHERE document @@ to_tsquery('simple', :tsq)")
    return col(Message.id).in_(found.bindparams(tsq=tsquery).columns(column("message_id")))
