"""A folder's messages, page by page, by keyset (never OFFSET).

A page is the `limit` messages just below (older) or above (newer) a cursor,
the (sort_date, id) of a message, in the order of the index
ix_message_folder_listing (folder_id, sort_date, id): the database walks the
index from the cursor and stops after one page, so a page deep in a
100,000-message folder costs the same as the first one. The cursor travels as
an opaque token (`PageCursor.token`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, tuple_
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.mailbox import FolderView, MessageSummary
from service.domain.values import SpecialUse
from service.errors import InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.tables import Folder, Message
from service.usecases.reading.folders import folder_view, folders_in, own_folder

PAGE_SIZE = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_BAD_CURSOR = "This page of the message list no longer exists; start again from the newest messages."


@dataclass(frozen=True, slots=True)
class PageCursor:
    """A position in a folder's list: the (sort_date, id) of a message; the token is `<µs since 1970>_<id>`."""

    sort_date: datetime
    id: int

    @property
    def token(self) -> str:
        return f"{(self.sort_date - _EPOCH) // _MICROSECOND}_{self.id}"

    @classmethod
    def parse(cls, token: str) -> PageCursor:
        micros, sep, message_id = token.partition("_")
        try:
            if not sep or len(token) > 40:
                raise ValueError(token)
            return cls(_EPOCH + int(micros) * _MICROSECOND, int(message_id))
        except (ValueError, OverflowError) as exc:
            raise InvalidInput(_BAD_CURSOR) from exc


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One page of a folder's list, newest first, with the tokens for the pages around it."""

    folder: FolderView
    messages: tuple[MessageSummary, ...]
    older: str | None
    newer: str | None


_SUMMARY_COLUMNS = tuple(
    col(column)
    for column in (
        Message.id, Message.subject, Message.from_address, Message.date, Message.sort_date,
        Message.message_id_header, Message.size, Message.seen, Message.flagged, Message.has_attachments,
    )
)  # fmt: skip


def page_query(
    folder_id: int, *, before: PageCursor | None = None, after: PageCursor | None = None
) -> Select[*tuple[Any, ...]]:
    """The list query: the folder's messages below `before` (newest first) or above `after` (oldest first)."""
    key = tuple_(col(Message.sort_date), col(Message.id))
    query = core_select(*_SUMMARY_COLUMNS).where(col(Message.folder_id) == folder_id)
    if after is not None:
        return query.where(key > tuple_(after.sort_date, after.id)).order_by(
            col(Message.sort_date).asc(), col(Message.id).asc()
        )
    if before is not None:
        query = query.where(key < tuple_(before.sort_date, before.id))
    return query.order_by(col(Message.sort_date).desc(), col(Message.id).desc())


def _summary(row: Any, folder: FolderView, *, arrival_if_undated: bool = False) -> MessageSummary:
    return MessageSummary(
        id=row.id,
        folder=folder.path,
        subject=row.subject,
        from_address=row.from_address,
        date=row.date or (row.sort_date if arrival_if_undated else None),
        message_id=row.message_id_header,
        size=row.size,
        seen=row.seen,
        flagged=row.flagged,
        has_attachments=row.has_attachments,
    )


async def _rows(session: AsyncSession, query: Select[*tuple[Any, ...]]) -> list[Row[Any]]:
    """Run a Core select of several columns (SQLModel's `exec` types at most four)."""
    return list((await (await session.connection()).execute(query)).all())


async def _exists(
    session: AsyncSession, folder_id: int, *, before: PageCursor | None = None, after: PageCursor | None = None
) -> bool:
    return bool(await _rows(session, page_query(folder_id, before=before, after=after).limit(1)))


def _cursor(row: Any) -> PageCursor:
    return PageCursor(row.sort_date, row.id)


async def list_page(
    *,
    db: Database,
    user_id: int,
    folder_id: int,
    before: str | None = None,
    after: str | None = None,
    limit: int = PAGE_SIZE,
) -> MessagePage:
    """A page of the folder's messages, newest first: the first page, or the one older than
    `before`, or the one newer than `after` (cursor tokens from an earlier page). Near the
    top, or past the end, it is the first page rather than a short or empty one.
    """
    async with db.read() as session:
        return await _page_in(session, await own_folder(session, user_id, folder_id), before, after, limit)


async def folders_and_page(
    *,
    db: Database,
    user_id: int,
    folder_id: int | None = None,
    before: str | None = None,
    after: str | None = None,
) -> tuple[list[FolderView], MessagePage]:
    """What the mail page shows, in one read: the folder tree with counts and a page of one
    folder (`list_page`), the Inbox when `folder_id` is None."""
    async with db.read() as session:
        folders = await folders_in(session, user_id)
        if folder_id is None:
            folder = next((f for f in folders if f.special_use is SpecialUse.INBOX), folders[0])
        else:
            folder = next((f for f in folders if f.id == folder_id), None) or await own_folder(
                session, user_id, folder_id
            )
        return folders, await _page_in(session, folder, before, after, PAGE_SIZE)


async def _page_in(
    session: AsyncSession, folder: FolderView, before: str | None, after: str | None, limit: int
) -> MessagePage:
    older_than = PageCursor.parse(before) if before else None
    newer_than = PageCursor.parse(after) if after else None
    folder_id = folder.id
    rows: list[Any] = []
    has_newer = has_older = False
    if newer_than is not None:
        above = await _rows(session, page_query(folder_id, after=newer_than).limit(limit + 1))
        if len(above) > limit:
            rows, has_newer = above[:limit][::-1], True
            has_older = await _exists(session, folder_id, before=_cursor(rows[-1]))
    if not rows:
        below = await _rows(session, page_query(folder_id, before=older_than).limit(limit + 1))
        if not below and older_than is not None:
            below = await _rows(session, page_query(folder_id).limit(limit + 1))
            older_than = None
        rows, has_older = below[:limit], len(below) > limit
        has_newer = older_than is not None and bool(rows) and await _exists(session, folder_id, after=_cursor(rows[0]))
    return MessagePage(
        folder=folder,
        # A message without a usable Date header is listed by when it arrived (its sort_date).
        messages=tuple(_summary(row, folder, arrival_if_undated=True) for row in rows),
        older=_cursor(rows[-1]).token if has_older else None,
        newer=_cursor(rows[0]).token if has_newer else None,
    )


async def list_messages(
    *, db: Database, user_id: int, folder_path: str, limit: int = 100, offset: int = 0
) -> list[MessageSummary]:
    """The newest `limit` messages of a folder after skipping `offset` (for the CLI; pages use `list_page`)."""
    async with db.read() as session:
        folder = (
            await session.exec(select(Folder).where(Folder.user_id == user_id, Folder.path == folder_path))
        ).first()
        if folder is None:
            raise NotFound(f"There is no folder {folder_path}.")
        view = folder_view(folder)
        rows = await _rows(session, page_query(view.id).offset(offset).limit(limit))
    return [_summary(row, view) for row in rows]
