"""One message: opening it to read (which marks it read), its body for the frame, its parts, its bytes.

Rendering (service.domain.rendering) parses the whole message, which is CPU
work: it runs in a worker thread so a large message never stalls the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import col, select

from service.domain.mailbox import FolderView
from service.domain.rendering import MessageView, PartContent, find_attachment, find_inline_image, render_message
from service.errors import NotFound
from service.persistence.bodies import Body
from service.persistence.database import Database
from service.persistence.mailstore import open_body, read_raw
from service.persistence.tables import Message
from service.usecases.reading.folders import own_folder


@dataclass(frozen=True, slots=True)
class OpenedMessage:
    """A message opened for reading: where it is, its flags, and its rendered view."""

    id: int
    folder: FolderView
    seen: bool
    flagged: bool
    size: int
    view: MessageView


async def open_message(
    *,
    db: Database,
    user_id: int,
    message_id: int,
    allow_remote_images: bool = False,
    inline_url: Callable[[str], str] | None = None,
    mark_read: bool = True,
) -> OpenedMessage:
    """The message as the reader sees it (see service.domain.rendering); opening it marks it read."""
    async with db.read() as session:
        message = (
            await session.exec(select(Message).where(Message.id == message_id, Message.user_id == user_id))
        ).first()
        if message is None:
            raise NotFound("This message does not exist.")
        folder = await own_folder(session, user_id, message.folder_id)
        raw = await read_raw(session, user_id=user_id, message_id=message_id)
    # Parsing a large message is CPU work: keep it off the event loop.
    view = await asyncio.to_thread(render_message, raw, allow_remote_images=allow_remote_images, inline_url=inline_url)
    if mark_read and not message.seen:
        async with db.write() as session:
            await session.exec(
                update(Message).where(col(Message.id) == message_id, col(Message.user_id) == user_id).values(seen=True)
            )
    return OpenedMessage(
        id=message_id,
        folder=folder,
        seen=message.seen or mark_read,
        flagged=message.flagged,
        size=message.size,
        view=view,
    )


async def render_body(
    *,
    db: Database,
    user_id: int,
    message_id: int,
    allow_remote_images: bool = False,
    inline_url: Callable[[str], str] | None = None,
) -> MessageView:
    """The message's rendered view for its body frame; unlike `open_message`, changes nothing."""
    raw = await export_raw(db=db, user_id=user_id, message_id=message_id)
    return await asyncio.to_thread(render_message, raw, allow_remote_images=allow_remote_images, inline_url=inline_url)


async def attachment(*, db: Database, user_id: int, message_id: int, part_id: str) -> PartContent:
    """One part of the message, decoded, for download."""
    raw = await export_raw(db=db, user_id=user_id, message_id=message_id)
    part = await asyncio.to_thread(find_attachment, raw, part_id)
    if part is None:
        raise NotFound("This attachment does not exist.")
    return part


async def inline_image(*, db: Database, user_id: int, message_id: int, part_id: str) -> PartContent:
    """An image part the message's HTML shows through cid: (raster images only)."""
    raw = await export_raw(db=db, user_id=user_id, message_id=message_id)
    part = await asyncio.to_thread(find_inline_image, raw, part_id)
    if part is None:
        raise NotFound("This image does not exist.")
    return part


async def export_raw(*, db: Database, user_id: int, message_id: int) -> bytes:
    """The message's bytes exactly as they were received."""
    async with db.read() as session:
        return await read_raw(session, user_id=user_id, message_id=message_id)


async def open_raw(*, db: Database, user_id: int, message_id: int) -> Body:
    """The message's stored bytes to stream (a download), read through once first: a damaged body
    raises BodyUnreadable before a byte of it is sent, never half-way through the download."""
    async with db.read() as session:
        body = await open_body(session, user_id=user_id, message_id=message_id)
    await body.check()
    return body
