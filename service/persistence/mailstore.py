"""The local mailbox: folders per user, delivering a message, reading it back.

Every user has the special-use folders (Inbox, Sent, Drafts, Trash, Junk,
Outbox) from the moment they exist. A message is stored byte for byte in the body
store (service.persistence.bodies: segment files or `message_body`); its index row
in `message` is derived from those bytes and may be degraded, never missing.
Functions here work inside the caller's session, because the caller's transaction
also commits the retrieval cursor. A batch whose bodies were `prestore`d before the
transaction only records their references in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.message_index import MessageIndex, index_message, sort_date
from service.domain.search_text import SearchText, search_text
from service.domain.values import SPECIAL_FOLDER_NAMES, SpecialUse
from service.errors import InvalidInput, NotFound
from service.persistence import search_backlog, search_index
from service.persistence.bodies import Bodies, Body, BodyRef, bodies_of
from service.persistence.tables import Folder, Message
from service.persistence.types import utcnow


@dataclass(frozen=True, slots=True)
class MessageOrigin:
    """Where a retrieved message came from: its identity for exactly-once retrieval."""

    task_id: int | None
    remote_folder: str | None = None
    uidvalidity: int | None = None
    uid: int | None = None


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


async def folder_by_path(session: AsyncSession, user_id: int, path: str) -> Folder:
    """The user's folder at `path` ("A/B/C"), creating it and any missing parents.

    Each folder found is locked FOR KEY SHARE (PostgreSQL; a no-op on SQLite) until the caller's
    transaction ends, as storing a message in it would: a folder being renamed, moved or deleted
    (`usecases.folders` locks it FOR UPDATE) is waited for, and then no longer matches its old
    path, so it is created again instead of the delivery failing on, or being cascaded away with,
    a folder that is gone."""
    parts = [part for part in path.split("/") if part]
    if not parts:
        raise InvalidInput("A folder needs a name.")
    parent: Folder | None = None
    for depth in range(1, len(parts) + 1):
        current = "/".join(parts[:depth])
        query = select(Folder).where(Folder.user_id == user_id, Folder.path == current)
        folder = (await session.exec(query.with_for_update(read=True, key_share=True))).first()
        if folder is None:
            folder = Folder(
                user_id=user_id, parent_id=parent.id if parent else None, name=parts[depth - 1], path=current
            )
            session.add(folder)
            await session.flush()
        parent = folder
    assert parent is not None
    return parent


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message to store: its bytes, flags and arrival time, and where it came from.

    `index` may be computed ahead (`index_message(raw)`, e.g. in the worker thread that
    downloaded the message) so the event loop only writes; else it is derived on delivery.
    """

    raw: bytes
    seen: bool = False
    flagged: bool = False
    answered: bool = False
    draft: bool = False
    received_at: datetime | None = None
    origin: MessageOrigin | None = None
    index: MessageIndex | None = None
    body: BodyRef | None = None  # where `prestore` put the bytes, before the transaction


async def prestore(bodies: Bodies, messages: Sequence[IncomingMessage]) -> list[IncomingMessage]:
    """Make a batch's bodies durable before the transaction that commits it (the files store
    appends and fdatasyncs them here); the messages, carrying their references."""
    pending = [m for m in messages if m.body is None]
    if not pending:
        return list(messages)
    return _referenced(messages, await bodies.put([m.raw for m in pending], _digests(pending)))


def prestore_now(bodies: Bodies, messages: Sequence[IncomingMessage]) -> list[IncomingMessage]:
    """`prestore` in the calling worker thread, blocking on the disk: retrieval's download thread
    makes each batch durable as soon as it has it, so the commit on the event loop does not wait."""
    pending = [m for m in messages if m.body is None]
    if not pending:
        return list(messages)
    return _referenced(messages, bodies.put_now([m.raw for m in pending], _digests(pending)))


def _digests(messages: Sequence[IncomingMessage]) -> list[str | None]:
    """The SHA-256 each message's index computed (a body is hashed once)."""
    return [m.index.sha256 if m.index is not None else None for m in messages]


def _referenced(messages: Sequence[IncomingMessage], refs: Sequence[BodyRef | None]) -> list[IncomingMessage]:
    """The messages, each without a body reference given the next of `refs`."""
    given = iter(refs)
    return [replace(m, body=next(given)) if m.body is None else m for m in messages]


def _search(incoming: IncomingMessage, row: dict[str, Any]) -> SearchText:
    if incoming.index is not None and incoming.index.search is not None:
        return incoming.index.search
    return search_text(
        incoming.raw, subject=row["subject"], sender=row["from_address"], to=row["to_addresses"], cc=row["cc_addresses"]
    )


def _index_row(user_id: int, folder_id: int, incoming: IncomingMessage, *, full_index: bool) -> dict[str, Any]:
    index = (
        incoming.index
        if incoming.index is not None
        else index_message(incoming.raw, with_body=full_index, with_search=False)
    )
    arrived = incoming.received_at or utcnow()
    origin = incoming.origin
    return {
        "user_id": user_id,
        "folder_id": folder_id,
        "task_id": origin.task_id if origin else None,
        "remote_folder": origin.remote_folder if origin else None,
        "remote_uidvalidity": origin.uidvalidity if origin else None,
        "remote_uid": origin.uid if origin else None,
        "message_id_header": index.message_id,
        "in_reply_to": index.in_reply_to,
        "subject": index.subject,
        "from_address": index.from_address,
        "to_addresses": index.to_addresses,
        "cc_addresses": index.cc_addresses,
        "date": index.date,
        "sort_date": sort_date(index.date, arrived),
        "size": index.size,
        "sha256": index.sha256,
        "preview": index.preview,
        "has_attachments": index.has_attachments,
        "parse_error": index.parse_error,
        "seen": incoming.seen,
        "flagged": incoming.flagged,
        "answered": incoming.answered,
        "draft": incoming.draft,
        "received_at": arrived,
        "created_at": utcnow(),
    }


async def deliver_many(
    session: AsyncSession,
    *,
    user_id: int,
    folder_id: int,
    messages: Sequence[IncomingMessage],
    full_index: bool = False,
    search_later: bool = False,
) -> list[int]:
    """Store messages byte for byte with their index rows, in the caller's transaction.

    Three batched INSERTs (index rows, bodies, full-text search rows), not round trips
    per message: bulk retrieval is bound by the server, not by us. With `search_later`
    (bulk retrieval) the messages are queued for the full-text index instead of indexed
    here (service.persistence.search_backlog).
    """
    if not messages:
        return []
    rows = [_index_row(user_id, folder_id, m, full_index=full_index) for m in messages]
    connection = await session.connection()
    if connection.dialect.name == "sqlite":
        # SQLAlchemy cannot batch an INSERT whose RETURNING must follow parameter order on
        # SQLite (it sends one statement per row). A write transaction holds SQLite's only
        # write lock, so the next ids are known: everything above max(id).
        top = (await connection.execute(select(func.max(Message.id)))).scalar() or 0
        ids = list(range(top + 1, top + 1 + len(rows)))
        await connection.execute(insert(Message), [row | {"id": mid} for row, mid in zip(rows, ids, strict=True)])
    else:
        inserted = await connection.execute(
            insert(Message).returning(col(Message.id), sort_by_parameter_order=True), rows
        )
        ids = [int(message_id) for (message_id,) in inserted if message_id is not None]
    await bodies_of(session).record(connection, [(mid, m.raw, m.body) for mid, m in zip(ids, messages, strict=True)])
    if search_later:
        await search_backlog.enqueue(connection, user_id, ids)
    else:
        await search_index.add(
            connection, [(mid, _search(m, row)) for mid, m, row in zip(ids, messages, rows, strict=True)]
        )
    return ids


async def deliver(
    session: AsyncSession,
    *,
    user_id: int,
    folder_id: int,
    raw: bytes,
    seen: bool = False,
    flagged: bool = False,
    answered: bool = False,
    draft: bool = False,
    received_at: datetime | None = None,
    origin: MessageOrigin | None = None,
    full_index: bool = True,
) -> Message:
    """Store one message (see `deliver_many`) and return its index row."""
    incoming = IncomingMessage(
        raw=raw, seen=seen, flagged=flagged, answered=answered, draft=draft, received_at=received_at, origin=origin
    )
    [message_id] = await deliver_many(
        session, user_id=user_id, folder_id=folder_id, messages=[incoming], full_index=full_index
    )
    message = await session.get(Message, message_id)
    assert message is not None
    return message


async def open_body(session: AsyncSession, *, user_id: int, message_id: int) -> Body:
    """The message's stored body, to read whole or stream; NotFound for another user's message."""
    owned = (await session.exec(select(Message.id).where(Message.id == message_id, Message.user_id == user_id))).first()
    body = await bodies_of(session).open(await session.connection(), message_id) if owned is not None else None
    if body is None:
        raise NotFound("This message does not exist.")
    return body


async def read_body(session: AsyncSession, message_id: int | None) -> bytes:
    """Any message's bytes by id, for the service's own use (sending an outbox entry)."""
    body = await bodies_of(session).open(await session.connection(), message_id) if message_id else None
    if body is None:
        raise NotFound("This message does not exist.")
    return await body.read()


async def read_raw(session: AsyncSession, *, user_id: int, message_id: int) -> bytes:
    """A message's bytes exactly as stored; NotFound for another user's message, BodyUnreadable
    when its stored copy is missing or damaged (never other bytes)."""
    return await (await open_body(session, user_id=user_id, message_id=message_id)).read()


async def move_folder_contents(
    session: AsyncSession, *, user_id: int, folder_ids: Sequence[int], to_folder_id: int
) -> int:
    """Move every message of the user's `folder_ids` into `to_folder_id`; returns how many moved.

    One UPDATE: migration 0004's triggers move the counts with the rows, and the search index
    (keyed by message, not folder) needs nothing, so `in:` finds them in their new folder.
    """
    if not folder_ids:
        return 0
    result = await session.exec(
        update(Message)
        .where(col(Message.user_id) == user_id, col(Message.folder_id).in_(folder_ids))
        .values(folder_id=to_folder_id)
    )
    return int(result.rowcount or 0)


async def delete_folder_contents(session: AsyncSession, *, user_id: int, folder_id: int) -> int:
    """Delete every message of the user's folder for good; returns how many.

    The bodies and search rows go with their index rows (ON DELETE CASCADE, and on SQLite the
    FTS5 table's delete trigger of migration 0009); the folder's counts fall by trigger.
    """
    result = await session.exec(
        delete(Message).where(col(Message.user_id) == user_id, col(Message.folder_id) == folder_id)
    )
    return int(result.rowcount or 0)
