"""Reading the local mailbox: the folder tree with counts (message lists and views join later)."""

from __future__ import annotations

from sqlalchemy import case, func
from sqlmodel import col, select

from service.domain.mailbox import FolderView
from service.persistence.database import Database
from service.persistence.mailstore import list_folders as stored_folders
from service.persistence.tables import Message


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
