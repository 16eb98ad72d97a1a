"""What the body store holds, wherever each body is (segment files or `message_body`), for assertions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.persistence.bodies import bodies_of
from service.persistence.tables import Message, MessageBody, MessageBodyRef


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
