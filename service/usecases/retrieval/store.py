"""Committing retrieved mail: each batch and the cursor that covers it in one transaction.

The IMAP cursor is (UIDVALIDITY, last UID) per folder; the POP3 cursor is the
set of UIDL keys stored.

This is what makes retrieval exactly-once (DESIGN.md section 3): a run killed
at any instant leaves either the batch and its cursor, or neither, so the next
run starts right after the last committed UID and neither loses nor repeats.
With the files body store the batch's bodies are appended and fdatasynced
first (`prestore`): a kill between that and the commit leaves only bytes that
nothing references.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import delete, insert, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.retrieval import LocalTarget, RunProgress
from service.domain.values import LogLevel, LogSource
from service.persistence.database import Database
from service.persistence.mailstore import (
    IncomingMessage,
    deliver_many,
    ensure_special_folders,
    folder_by_path,
    prestore,
)
from service.persistence.tables import Folder, ImapCursor, Message, PopUidl, RetrievalTask
from service.persistence.types import utcnow
from service.usecases.logs import record
from service.usecases.retrieval.filtering import InboxFilter, Screened, deliver_filtered, screen
from service.usecases.retrieval.lease import Lease, renew_in
from service.usecases.sending.known_copies import unknown_positions


@dataclass(frozen=True, slots=True)
class Cursor:
    uidvalidity: int
    last_uid: int


@dataclass(frozen=True, slots=True)
class Adoption:
    """Stored copies a batch matched by content in folders now `gone` (imap_renames): one copy per
    (SHA-256, UID) in `matches` takes the batch's origin, in the batch's transaction."""

    gone: Sequence[str]
    matches: Sequence[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose mail this is (the task and its user), the lease the run holds, and its stop signal.

    With a lease, every commit renews it in the same transaction and fails when
    it was lost, so only the lease's holder can store batches.
    """

    task_id: int
    user_id: int
    lease: Lease | None = None
    stop: asyncio.Event | None = None  # set at shutdown: finish the current batch, then return
    filtering: InboxFilter | None = None  # "Apply spam and content filtering" is on
    progress: RunProgress = field(default_factory=RunProgress)  # messages committed so far (in memory)

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    @property
    def apply_filters(self) -> bool:
        return self.filtering is not None

    def filters(self, folder_id: int) -> InboxFilter | None:
        """The filtering for a batch bound for this folder: only mail arriving in the Inbox is filtered."""
        return self.filtering if self.filtering is not None and self.filtering.inbox_id == folder_id else None


async def load_cursors(db: Database, task_id: int) -> dict[str, Cursor]:
    """Every folder cursor of the task, by remote folder: one query for a whole run."""
    async with db.read() as session:
        rows = (await session.exec(select(ImapCursor).where(ImapCursor.task_id == task_id))).all()
    return {row.remote_folder: Cursor(row.uidvalidity, row.last_uid) for row in rows}


async def stored_hashes(db: Database, task_id: int, remote_folder: str) -> Counter[str]:
    """How many copies of each message (by SHA-256 of its bytes) this task stored from the folder."""
    async with db.read() as session:
        hashes = (
            await session.exec(
                select(Message.sha256).where(Message.task_id == task_id, Message.remote_folder == remote_folder)
            )
        ).all()
    return Counter(hashes)


async def resolve_folder(db: Database, user_id: int, target: LocalTarget) -> int:
    """The local folder's id, creating it (and its parents) when needed. A read finds it almost
    always; only a missing folder costs a write transaction (on SQLite, BEGIN IMMEDIATE
    serialises every writer of the database, so an empty one is not free)."""
    async with db.read() as session:
        found = await find_folder(session, user_id, target)
    if found is not None:
        return found
    async with db.write() as session:
        if target.special_use is not None:
            folder = (await ensure_special_folders(session, user_id))[target.special_use]
        else:
            folder = await folder_by_path(session, user_id, target.path)
        assert folder.id is not None
        return folder.id


async def find_folder(session: AsyncSession, user_id: int, target: LocalTarget) -> int | None:
    """The local folder's id if it exists (resolve_folder's read, for a caller's own transaction)."""
    query = select(Folder.id).where(Folder.user_id == user_id)
    if target.special_use is not None:
        query = query.where(Folder.special_use == target.special_use)
    else:
        query = query.where(Folder.path == "/".join(part for part in target.path.split("/") if part))
    return (await session.exec(query)).first()


async def _save_cursor(session: AsyncSession, task_id: int, remote_folder: str, cursor: Cursor) -> None:
    """Move the folder's cursor: one UPDATE, or an INSERT the first time."""
    moved = await session.exec(
        update(ImapCursor)
        .where(col(ImapCursor.task_id) == task_id, col(ImapCursor.remote_folder) == remote_folder)
        .values(uidvalidity=cursor.uidvalidity, last_uid=cursor.last_uid, updated_at=utcnow())
    )
    if moved.rowcount == 0:
        session.add(
            ImapCursor(
                task_id=task_id,
                remote_folder=remote_folder,
                uidvalidity=cursor.uidvalidity,
                last_uid=cursor.last_uid,
                updated_at=utcnow(),
            )
        )


async def commit_batch(
    db: Database,
    *,
    owner: Owner,
    folder_id: int,
    remote_folder: str,
    messages: Sequence[IncomingMessage],
    cursor: Cursor,
    warnings: Sequence[str] = (),
    adopt: Adoption | None = None,
    then: Callable[[AsyncSession, int], Awaitable[None]] | None = None,
) -> int:
    """Store the messages, give the copies in `adopt` this folder's origin and move the folder's
    cursor, atomically. Returns how many were stored (a message a filter deleted is covered by
    the cursor but not stored). `then(session, stored)` writes more in the same transaction
    (push's fast path: the run's outcome and the lease's release)."""
    screened = await _screen(db, owner, folder_id, messages)
    messages = await prestore(db.bodies, messages)  # durable before the transaction (files store)
    async with db.write() as session:
        # Tributary's own copies in a remote Sent folder are in local Sent already (issue 18).
        keep = await unknown_positions(session, owner.task_id, remote_folder, cursor.uidvalidity, messages)
        if len(keep) < len(messages):
            messages, screened = kept(keep, messages, screened)
        ids = await _deliver(session, owner, folder_id, messages, warnings, screened)
        if adopt is not None:
            await _adopt(session, owner.task_id, remote_folder, cursor.uidvalidity, adopt)
        await _save_cursor(session, owner.task_id, remote_folder, cursor)
        stored = sum(1 for message_id in ids if message_id is not None)
        if then is not None:
            await then(session, stored)
    owner.progress.stored += stored  # committed: "Retrieve Messages Now" shows it while the run goes on
    return stored


def kept(
    keep: Sequence[int], messages: Sequence[IncomingMessage], screened: Screened | None
) -> tuple[list[IncomingMessage], Screened | None]:
    """The messages at positions `keep`, with their filters' verdicts: what a batch stores once
    Tributary's own Sent copies are left out (here, and for push's group commit in push_batch)."""
    if screened is not None:
        screened = replace(
            screened, spam=[screened.spam[i] for i in keep], verdicts=[screened.verdicts[i] for i in keep]
        )
    return [messages[i] for i in keep], screened


async def _adopt(session: AsyncSession, task_id: int, remote_folder: str, uidvalidity: int, adopt: Adoption) -> None:
    """Give one stored copy per (SHA-256, UID) match, from the gone folders, the origin
    (`remote_folder`, `uidvalidity`, UID) of the message it matched."""
    for digest, uid in adopt.matches:
        message_id = (
            await session.exec(
                select(Message.id)
                .where(
                    Message.task_id == task_id,
                    Message.sha256 == digest,
                    col(Message.remote_folder).in_(list(adopt.gone)),
                )
                .limit(1)
            )
        ).first()
        if message_id is not None:
            await session.exec(
                update(Message)
                .where(col(Message.id) == message_id)
                .values(remote_folder=remote_folder, remote_uidvalidity=uidvalidity, remote_uid=uid)
            )


async def _screen(db: Database, owner: Owner, folder_id: int, messages: Sequence[IncomingMessage]) -> Screened | None:
    """What the filters do with a batch bound for a filtered Inbox: spamd (network I/O) and the rules
    (CPU, in a worker thread) decide before the transaction, which only applies the verdicts."""
    filtering = owner.filters(folder_id)
    return await screen(db, filtering, owner.user_id, messages) if filtering is not None and messages else None


async def _deliver(
    session: AsyncSession,
    owner: Owner,
    folder_id: int,
    messages: Sequence[IncomingMessage],
    warnings: Sequence[str],
    screened: Screened | None = None,
) -> list[int | None]:
    """Store messages (through the filters when `screened`), count them on the task and log
    warnings, in the caller's transaction. Per message: its id, or None when a filter deleted it."""
    if owner.lease is not None:
        await renew_in(session, owner.lease)
    ids: list[int | None]
    notes: list[tuple[LogLevel, str]] = [(LogLevel.WARNING, text) for text in warnings]
    if screened is None:
        ids = list(
            await deliver_many(
                session, user_id=owner.user_id, folder_id=folder_id, messages=messages, search_later=True
            )
        )
    else:
        delivered = await deliver_filtered(
            session, user_id=owner.user_id, inbox_id=folder_id, messages=messages, screened=screened
        )
        ids = delivered.ids
        notes += [(LogLevel.WARNING, text) for text in screened.warnings]
        if delivered.summary:
            notes.append((LogLevel.INFO, delivered.summary))
    stored = sum(1 for message_id in ids if message_id is not None)
    if stored:
        await session.exec(
            update(RetrievalTask)
            .where(col(RetrievalTask.id) == owner.task_id)
            .values(messages_imported=col(RetrievalTask.messages_imported) + stored)
        )
    for level, text in notes:
        record(
            session,
            source=LogSource.INCOMING,
            level=level,
            text=text,
            user_id=owner.user_id,
            retrieval_task_id=owner.task_id,
        )
    return ids


async def known_uidls(db: Database, task_id: int) -> dict[str, datetime]:
    """The POP3 messages this task has stored: UIDL key -> when it was stored."""
    async with db.read() as session:
        rows = (await session.exec(select(PopUidl.uidl, PopUidl.retrieved_at).where(PopUidl.task_id == task_id))).all()
    return dict(rows)


async def commit_pop_batch(
    db: Database,
    *,
    owner: Owner,
    folder_id: int,
    messages: Sequence[IncomingMessage],
    keys: Sequence[str],
    warnings: Sequence[str] = (),
) -> int:
    """Store POP3 messages and their UIDL keys, atomically (the POP3 cursor is the set of keys).

    Only after this commit returns may the messages be marked for deletion on the server. A
    message a filter deleted keeps its UIDL (without a message), so it is never fetched again.
    """
    screened = await _screen(db, owner, folder_id, messages)
    messages = await prestore(db.bodies, messages)  # durable before the transaction (files store)
    async with db.write() as session:
        ids = await _deliver(session, owner, folder_id, messages, warnings, screened)
        now = utcnow()
        # One batched Core INSERT: ORM objects (validated, tracked, flushed one by one), or even the
        # session's bulk path, cost more than storing the mail.
        connection = await session.connection()
        if keys:  # (none in the commit of a run's last warnings: an empty list would insert one bare row)
            await connection.execute(
                insert(PopUidl),
                [
                    {"task_id": owner.task_id, "uidl": key, "message_id": message_id, "retrieved_at": now,
                     "deleted_remotely": False, "not_imported": False}
                    for key, message_id in zip(keys, ids, strict=True)
                ],
            )  # fmt: skip
    stored = sum(1 for message_id in ids if message_id is not None)
    owner.progress.stored += stored
    return stored


async def forget_uidls(db: Database, task_id: int, keys: Iterable[str]) -> None:
    """Drop UIDL keys of messages no longer on the server, so the state stays bounded."""
    doomed = list(keys)
    if not doomed:
        return
    async with db.write() as session:
        for start in range(0, len(doomed), 500):
            chunk = doomed[start : start + 500]
            await session.exec(delete(PopUidl).where(col(PopUidl.task_id) == task_id, col(PopUidl.uidl).in_(chunk)))
