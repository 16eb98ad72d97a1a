"""The folder tree: the user's folders in display order, each with its message and unread counts.

The counts are columns of the folder row, kept exact by database triggers on
`message` (migration 0004), so a 100,000-message folder costs nothing to show.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.mailbox import FolderView
from service.domain.values import SPECIAL_FOLDER_NAMES
from service.errors import NotFound
from service.persistence.database import Database
from service.persistence.mailstore import list_folders as stored_folders
from service.persistence.tables import Folder


def _tree_order(folders: Sequence[Folder]) -> list[Folder]:
    """Depth first: special folders first in their fixed order, then by name; children under their parent."""
    order = list(SPECIAL_FOLDER_NAMES)
    known = {f.id for f in folders}
    children: dict[int | None, list[Folder]] = {}
    for folder in folders:
        children.setdefault(folder.parent_id if folder.parent_id in known else None, []).append(folder)

    def visit(parent_id: int | None) -> list[Folder]:
        ranked = sorted(
            children.get(parent_id, []),
            key=lambda f: (order.index(f.special_use) if f.special_use else len(order), f.name.casefold()),
        )
        return [item for f in ranked for item in (f, *visit(f.id))]

    return visit(None)


def folder_view(folder: Folder) -> FolderView:
    assert folder.id is not None
    return FolderView(
        folder.id,
        folder.name,
        folder.path,
        folder.parent_id,
        folder.special_use,
        folder.message_count,
        folder.unread_count,
    )


async def folders_in(session: AsyncSession, user_id: int) -> list[FolderView]:
    """The user's folders as a tree in depth-first order (special ones first), with message and unread counts."""
    return [folder_view(f) for f in _tree_order(await stored_folders(session, user_id))]


async def list_folders(*, db: Database, user_id: int) -> list[FolderView]:
    """The user's folders as a tree (see `folders_in`)."""
    async with db.read() as session:
        return await folders_in(session, user_id)


async def own_folder(session: AsyncSession, user_id: int, folder_id: int) -> FolderView:
    """The user's folder with its counts; NotFound for one that is not theirs."""
    folder = (await session.exec(select(Folder).where(Folder.id == folder_id, Folder.user_id == user_id))).first()
    if folder is None:
        raise NotFound("This folder does not exist.")
    return folder_view(folder)
