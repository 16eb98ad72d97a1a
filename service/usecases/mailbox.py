"""Changing the local mailbox: marking messages read or unread, moving them, deleting them.

Each change is one short transaction over messages of one user; ids that are
not the user's are ignored exactly like ids that do not exist, and a change
that finds none of its messages is `NotFound`. Deleting moves messages to the
Trash; deleting what is already in the Trash removes it for good (the stored
bytes go with the index row, by the foreign key's ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.values import SpecialUse
from service.errors import InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.mailstore import ensure_special_folders
from service.persistence.tables import Folder, Message

MAX_BATCH = 1000
NO_MESSAGES = "These messages do not exist (any more)."
NOT_INTO_OUTBOX = "Messages cannot be moved to the Outbox; it holds only mail waiting to be sent."


@dataclass(frozen=True, slots=True)
class DeleteOutcome:
    """What a delete did: how many messages went to the Trash, and how many are gone for good."""

    trashed: int
    deleted: int


def _checked_ids(message_ids: Sequence[int]) -> list[int]:
    ids = sorted(set(message_ids))
    if not ids:
        raise InvalidInput("Choose at least one message.")
    if len(ids) > MAX_BATCH:
        raise InvalidInput(f"Choose at most {MAX_BATCH} messages at a time.")
    return ids


async def _owned(session: AsyncSession, user_id: int, ids: list[int]) -> list[tuple[int, int]]:
    """(message id, folder id) of those of `ids` that are the user's; NotFound if none is."""
    rows = (
        await session.exec(
            select(Message.id, Message.folder_id).where(col(Message.id).in_(ids), Message.user_id == user_id)
        )
    ).all()
    if not rows:
        raise NotFound(NO_MESSAGES)
    return [(int(message_id or 0), folder_id) for message_id, folder_id in rows]


async def set_seen(*, db: Database, user_id: int, message_ids: Sequence[int], seen: bool) -> int:
    """Mark the messages read (`seen`) or unread; returns how many there were."""
    ids = _checked_ids(message_ids)
    async with db.write() as session:
        owned = [message_id for message_id, _ in await _owned(session, user_id, ids)]
        await session.exec(
            update(Message).where(col(Message.id).in_(owned), col(Message.user_id) == user_id).values(seen=seen)
        )
    return len(owned)


async def move_messages(*, db: Database, user_id: int, message_ids: Sequence[int], folder_id: int) -> int:
    """Move the messages into one of the user's folders; returns how many there were."""
    ids = _checked_ids(message_ids)
    async with db.write() as session:
        target = (await session.exec(select(Folder).where(Folder.id == folder_id, Folder.user_id == user_id))).first()
        if target is None:
            raise NotFound("This folder does not exist.")
        if target.special_use is SpecialUse.OUTBOX:
            raise InvalidInput(NOT_INTO_OUTBOX)
        owned = [message_id for message_id, _ in await _owned(session, user_id, ids)]
        await session.exec(
            update(Message)
            .where(col(Message.id).in_(owned), col(Message.user_id) == user_id)
            .values(folder_id=folder_id)
        )
    return len(owned)


async def delete_messages(*, db: Database, user_id: int, message_ids: Sequence[int]) -> DeleteOutcome:
    """Move the messages to the Trash; those already in the Trash are deleted for good."""
    ids = _checked_ids(message_ids)
    async with db.write() as session:
        trash = (await ensure_special_folders(session, user_id))[SpecialUse.TRASH]
        owned = await _owned(session, user_id, ids)
        to_trash = [message_id for message_id, folder_id in owned if folder_id != trash.id]
        for_good = [message_id for message_id, folder_id in owned if folder_id == trash.id]
        if to_trash:
            await session.exec(
                update(Message)
                .where(col(Message.id).in_(to_trash), col(Message.user_id) == user_id)
                .values(folder_id=trash.id)
            )
        if for_good:
            await session.exec(delete(Message).where(col(Message.id).in_(for_good), col(Message.user_id) == user_id))
    return DeleteOutcome(trashed=len(to_trash), deleted=len(for_good))
