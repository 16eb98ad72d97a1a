"""Searching the user's mail: the search box, `GET /api/v1/messages/search`, `tributary search`.

The query language is `service.domain.search_query`; the text is matched by the
database's own full-text index (`service.persistence.search_index`, migration 0009),
the filters (`has:`, `is:`, `in:`, `before:`, `after:`) on the message rows. Results
come newest first, as in a folder's list, a page at a time by page number (a search
has no stable position to keep a cursor on), each with its folder.

Tenant isolation: every row is the user's own message in the user's own folder. The
index restricts its walk to the searcher (SQLite: the `owner` token; PostgreSQL: user_id),
which keeps the cost proportional to the searcher's own matches; the join to `message`
and `folder` on user_id is the filter that guarantees it. A query without words (only
`is:`, `has:`, dates, `in:`) never touches the index: it walks the user's messages (or the
folder's) newest first through `message`'s (user_id | folder_id, sort_date, id) index.

Paging is by offset, so a page costs as many rows as it skips: the offset stops at
MAX_OFFSET, and past it the results say so (`older_hidden`) instead of walking further.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy import select as core_select
from sqlmodel import col, select

from service.domain.mailbox import FolderView, MessageSummary
from service.domain.search_query import SearchQuery, parse
from service.errors import InvalidInput
from service.persistence import search_backlog, search_index
from service.persistence.database import Database
from service.persistence.tables import Folder, Message

log = logging.getLogger(__name__)

PAGE_SIZE = 50
MAX_PER_PAGE = 200
MAX_PAGE = 1000
MAX_OFFSET = 10_000
NARROW_HINT = "Narrow the search to see older results."


def last_page(per_page: int = PAGE_SIZE) -> int:
    """The deepest page `search` shows at this page size (its offset is at most MAX_OFFSET)."""
    return min(MAX_PAGE, MAX_OFFSET // per_page + 1)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A message found, as a list row, with the folder it is in."""

    message: MessageSummary
    folder: FolderView


@dataclass(frozen=True, slots=True)
class SearchResults:
    """One page of results, newest first. `has_more`: a next page exists (within MAX_OFFSET);
    `older_hidden`: more matches exist past the last page that can be shown (NARROW_HINT)."""

    query: str
    page: int
    per_page: int
    hits: tuple[SearchHit, ...]
    has_more: bool
    older_hidden: bool = False
    indexing: int = 0  # the searcher's messages still waiting for the index: results may miss them

    @property
    def next_page(self) -> int | None:
        return self.page + 1 if self.has_more else None

    @property
    def previous_page(self) -> int | None:
        return self.page - 1 if self.page > 1 else None


_COLUMNS: tuple[Any, ...] = tuple(
    col(column).label(label)
    for column, label in (
        (Message.id, "id"), (Message.subject, "subject"), (Message.from_address, "from_address"),
        (Message.date, "date"), (Message.sort_date, "sort_date"), (Message.message_id_header, "message_id"),
        (Message.size, "size"), (Message.seen, "seen"), (Message.flagged, "flagged"),
        (Message.has_attachments, "has_attachments"), (Folder.id, "folder_id"), (Folder.name, "folder_name"),
        (Folder.path, "folder_path"), (Folder.parent_id, "folder_parent_id"),
        (Folder.special_use, "folder_special_use"), (Folder.message_count, "folder_total"),
        (Folder.unread_count, "folder_unread"),
    )
)  # fmt: skip


def _hit(row: Any) -> SearchHit:
    folder = FolderView(
        row.folder_id, row.folder_name, row.folder_path, row.folder_parent_id, row.folder_special_use,
        row.folder_total, row.folder_unread,
    )  # fmt: skip
    message = MessageSummary(
        id=row.id,
        folder=row.folder_path,
        subject=row.subject,
        from_address=row.from_address,
        date=row.date or row.sort_date,  # undated: when it arrived, as the list shows it
        message_id=row.message_id,
        size=row.size,
        seen=row.seen,
        flagged=row.flagged,
        has_attachments=row.has_attachments,
    )
    return SearchHit(message, folder)


async def search(*, db: Database, user_id: int, query: str, page: int = 1, per_page: int = PAGE_SIZE) -> SearchResults:
    """The page-th page of the user's messages that match `query`, newest first.

    A query with nothing to look for (empty, only spaces or punctuation) finds nothing,
    as does `in:` naming a folder the user does not have.
    """
    if not 1 <= page <= MAX_PAGE:
        raise InvalidInput(f"The page must be a number from 1 to {MAX_PAGE}.")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInput(f"A page holds from 1 to {MAX_PER_PAGE} messages.")
    if page > last_page(per_page):
        raise InvalidInput(f"Search shows the newest {MAX_OFFSET + per_page} results at most. {NARROW_HINT}")
    query = query.encode("utf-8", "replace").decode("utf-8")  # an unpaired surrogate (argv, JSON) becomes "?"
    parsed = parse(query)
    empty = SearchResults(query, page, per_page, (), has_more=False)
    if parsed.is_empty:
        return empty
    indexing = await _catch_up(db, user_id) if parsed.terms else 0
    async with db.read() as session:
        connection = await session.connection()
        folder_ids: list[int] | None = None
        if parsed.folder is not None:
            wanted = parsed.folder.casefold()
            folders = (await session.exec(select(Folder.id, Folder.path).where(Folder.user_id == user_id))).all()
            folder_ids = [fid for fid, path in folders if path.casefold() == wanted and fid is not None]
            if not folder_ids:
                return empty
        statement = search_index.newest_first(connection.dialect.name, parsed, user_id, _COLUMNS)
        if statement is not None and connection.dialect.name == "postgresql":
            await search_index.plan_postgresql(connection, parsed, user_id)
        if statement is None:
            statement = filter_only(parsed, user_id)
        if folder_ids is not None:
            statement = statement.where(col(Message.folder_id).in_(folder_ids))
        statement = statement.where(*_filters(parsed))
        rows = list((await connection.execute(statement.offset((page - 1) * per_page).limit(per_page + 1))).all())
    more = len(rows) > per_page
    deepest = page * per_page > MAX_OFFSET  # the next page's offset is past the cap
    return SearchResults(
        query, page, per_page, tuple(_hit(r) for r in rows[:per_page]), more and not deepest, more and deepest, indexing
    )


async def _catch_up(db: Database, user_id: int) -> int:
    """Index the searcher's messages that bulk retrieval queued (search_backlog), up to CATCH_UP
    of them, so words find mail the list already shows; how many still wait after that. Indexing
    that fails (a body the disk will not give back, a lock the database gave up on) is logged and
    left to the background job: the search still answers from the index, and says what waits."""
    try:
        taken = await search_backlog.drain(db, user_id=user_id, most=search_backlog.CATCH_UP)
    except Exception:
        log.exception("indexing the searcher's queued messages failed")
        taken = search_backlog.CATCH_UP
    return await search_backlog.pending(db, user_id=user_id) if taken >= search_backlog.CATCH_UP else 0


def filter_only(parsed: SearchQuery, user_id: int) -> Select[tuple[Any, ...]]:
    """A query without words: the user's messages newest first, through `message`'s
    (user_id, sort_date, id) index (or, with `in:`, the folder's (folder_id, sort_date, id)),
    its dates a range of that index; never the full-text index."""
    return (
        core_select(*_COLUMNS)
        .join_from(Message, Folder, col(Folder.id) == col(Message.folder_id))
        .where(col(Message.user_id) == user_id, col(Folder.user_id) == user_id, *_dates(parsed))
        .order_by(col(Message.sort_date).desc(), col(Message.id).desc())
    )


def _dates(parsed: SearchQuery) -> list[Any]:
    conditions: list[Any] = []
    if parsed.after is not None:
        conditions.append(col(Message.sort_date) >= parsed.after)
    if parsed.before is not None:
        conditions.append(col(Message.sort_date) < parsed.before)
    return conditions


def _filters(parsed: SearchQuery) -> list[Any]:
    conditions: list[Any] = []
    if parsed.has_attachment:
        conditions.append(col(Message.has_attachments).is_(True))
    if parsed.unread is not None:
        conditions.append(col(Message.seen).is_(not parsed.unread))
    if parsed.flagged:
        conditions.append(col(Message.flagged).is_(True))
    return conditions
