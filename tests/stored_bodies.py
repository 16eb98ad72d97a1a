"""What the body store holds, wherever each body is (segment files or `message_body`), for assertions;
a user with an Inbox, and messages delivered as retrieval does, to fill it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.values import SpecialUse
from service.persistence import mailstore
from service.persistence.bodies import bodies_of
from service.persistence.database import Database
from service.persistence.tables import Message, MessageBody, MessageBodyRef
from service.usecases.users import add_user


async def user_with_inbox(db: Database, email: str = "reader@example.test") -> tuple[int, int]:
    """A new user's id and their Inbox's id."""
    user = await add_user(db=db, email=email, password="long enough")
    async with db.write() as session:
        inbox = (await mailstore.ensure_special_folders(session, user.id))[SpecialUse.INBOX]
        assert inbox.id is not None
        return user.id, inbox.id


async def store_raws(db: Database, user_id: int, folder_id: int, raws: list[bytes]) -> list[int]:
    """Deliver as retrieval does: bodies made durable first, then one transaction; the new ids."""
    incoming = await mailstore.prestore(db.bodies, [mailstore.IncomingMessage(raw=raw) for raw in raws])
    async with db.write() as session:
        return await mailstore.deliver_many(session, user_id=user_id, folder_id=folder_id, messages=incoming)


async def stored_raws(session: AsyncSession, *where: Any) -> list[bytes]:
    """The stored bodies of the messages matching `where` (all by default), in message id order."""
    ids = list((await session.exec(select(Message.id).where(*where).order_by(col(Message.id)))).all())
    loaded = await bodies_of(session).load(await session.connection(), [int(i) for i in ids if i is not None])
    return [loaded[int(i)] for i in ids if i is not None and int(i) in loaded]


async def body_count(session: AsyncSession, *where: Any) -> int:
    """How many bodies are stored (rows in `message_body` plus references), of messages matching `where`."""
    total = 0
    for table in (MessageBody, MessageBodyRef):
        query = select(func.count()).select_from(table).join(Message, col(Message.id) == table.message_id)
        total += int((await session.exec(query.where(*where))).one())
    return total
