"""The local mailbox: folders per user. Message delivery and reading join this module later.

Every user has the special-use folders (Inbox, Sent, Drafts, Trash, Junk,
Outbox) from the moment they exist.
"""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.values import SPECIAL_FOLDER_NAMES, SpecialUse
from service.persistence.tables import Folder


async def ensure_special_folders(session: AsyncSession, user_id: int) -> dict[SpecialUse, Folder]:
    """Create whichever special-use folders the user lacks; return all of them."""
    existing = {
        folder.special_use: folder
        for folder in (
            await session.exec(select(Folder).where(Folder.user_id == user_id, Folder.special_use.is_not(None)))  # type: ignore[union-attr]
        ).all()
        if folder.special_use is not None
    }
    for use, name in SPECIAL_FOLDER_NAMES.items():
        if use not in existing:
            folder = Folder(user_id=user_id, name=name, path=name, special_use=use)
            session.add(folder)
            existing[use] = folder
    await session.flush()
    return existing


async def list_folders(session: AsyncSession, user_id: int) -> list[Folder]:
    """The user's folders, special ones first in their fixed order, then by path."""
    folders = (await session.exec(select(Folder).where(Folder.user_id == user_id))).all()
    order = list(SPECIAL_FOLDER_NAMES)
    return sorted(
        folders,
        key=lambda f: (order.index(f.special_use) if f.special_use else len(order), f.path.casefold()),
    )
