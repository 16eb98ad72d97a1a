"""Reading the local mailbox: the folder tree with counts, a folder's messages, a message's bytes."""

from __future__ import annotations

from sqlalchemy import case, func
from sqlmodel import col, select

from service.domain.mailbox import FolderView, MessageSummary
from service.errors import NotFound
from service.persistence.database import Database
from service.persistence.mailstore import list_folders as stored_folders
from service.persistence.mailstore import read_raw
from service.persistence.tables import Folder, Message


async def list_folders(*, db: Database, user_id: int) -> list[FolderView]:
    """The user's folders (special ones first), each with its message and unread counts."""
    async with db.read() as session:
        folders = await stored_folders(session, user_id)
        counts = {
            folder_id: (total, unread)
            for folder_id, total, unread in (
                await session.exec(
                    select(
                        Message.folder_id,
                        func.count(),
                        func.coalesce(func.sum(case((col(Message.seen).is_(False), 1), else_=0)), 0),
                    )
                    .where(Message.user_id == user_id)
                    .group_by(col(Message.folder_id))
                )
            ).all()
        }
    views = []
    for folder in folders:
        assert folder.id is not None
        total, unread = counts.get(folder.id, (0, 0))
        views.append(
            FolderView(
                id=folder.id,
                name=folder.name,
                path=folder.path,
                parent_id=folder.parent_id,
                special_use=folder.special_use,
                total=int(total),
                unread=int(unread),
            )
        )
    return views


async def list_messages(
    *, db: Database, user_id: int, folder_path: str, limit: int = 100, offset: int = 0
) -> list[MessageSummary]:
    """A page of a folder's messages, newest first. NotFound for a folder the user lacks."""
    async with db.read() as session:
        folder = (
            await session.exec(select(Folder).where(Folder.user_id == user_id, Folder.path == folder_path))
        ).first()
        if folder is None:
            raise NotFound(f"There is no folder {folder_path}.")
        rows = (
            await session.exec(
                select(Message)
                .where(Message.folder_id == folder.id)
                .order_by(col(Message.sort_date).desc(), col(Message.id).desc())
                .offset(offset)
                .limit(limit)
            )
        ).all()
    return [
        MessageSummary(
            id=m.id or 0,
            folder=folder.path,
            subject=m.subject,
            from_address=m.from_address,
            date=m.date,
            message_id=m.message_id_header,
            size=m.size,
            seen=m.seen,
            flagged=m.flagged,
            has_attachments=m.has_attachments,
        )
        for m in rows
    ]


async def export_raw(*, db: Database, user_id: int, message_id: int) -> bytes:
    """The message's bytes exactly as they were received."""
    async with db.read() as session:
        return await read_raw(session, user_id=user_id, message_id=message_id)
