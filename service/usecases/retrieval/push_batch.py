"""Group commit for push's fast path: the new INBOX mail of many tasks stored in one transaction.

When many push connections announce mail at once (a mailing list reaching 200
gathered accounts, or one server waking up), each fast path (push_fetch.py)
fetches its messages over its own connection, then hands its batch to the
process's `GroupCommit` instead of opening a write transaction of its own.
Batches that arrive while a transaction is being written wait for the next
one, which takes all of them (no timer: a lone batch is written at once). On
SQLite every write transaction serialises the whole database and ends with an
fsync (synchronous=FULL), so 200 transactions of one message cost far more than
a few transactions of many; on PostgreSQL the round trips and commits shrink
the same way.

Exactly-once holds per task as in store.commit_batch, with the same lease
check: one transaction stores a task's messages only if, in that transaction,
the task's run lease is still the one its fast path claimed. One UPDATE
releases every lease of the group that is still held (`(id, lease_owner) IN
...`, RETURNING the ids it matched) while recording the run (last run, the
messages imported); the messages and the INBOX cursor of exactly those tasks
are then written, and every other batch of the group fails with LeaseLost,
nothing of it written. Its cursor moves in the transaction that stores its
messages, so a crash at any instant leaves both or neither.

As in store.commit_batch, the group's bodies are made durable before its
transaction (one append and fdatasync of the files body store for the whole
group), the Inbox filters' verdicts (screened by each fast path beforehand)
apply in it, and Tributary's own Sent copies (issue 18) are left out, covered
by the cursor.

A group whose transaction fails is written again one batch per transaction, so
one task's trouble (a constraint, a filter's folder) never fails another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import case, insert, tuple_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.values import LogLevel, LogSource
from service.persistence.database import Database
from service.persistence.mailstore import IncomingMessage, deliver_many, prestore
from service.persistence.tables import ImapCursor, LogEntry, OutboxEntry, RetrievalTask
from service.persistence.types import utcnow
from service.usecases.retrieval.filtering import Screened, deliver_filtered
from service.usecases.retrieval.lease import Lease, LeaseLost
from service.usecases.retrieval.store import Cursor, kept

log = logging.getLogger(__name__)

MOST_BATCHES = 256  # batches in one transaction (a bound on its statements' size, not a delay)


@dataclass(slots=True)
class Batch:
    """One fast path's new INBOX mail: the messages (possibly none: the run is recorded only),
    the folder they land in, the cursor that covers them, and the filters' verdicts when the
    task's Inbox is filtered (with the spam check's `warnings`)."""

    lease: Lease
    user_id: int
    remote_folder: str
    folder_id: int | None = None
    messages: Sequence[IncomingMessage] = ()
    cursor: Cursor | None = None
    screened: Screened | None = None
    warnings: Sequence[str] = ()  # the spam check's, for the log
    summary: Callable[[int], str | None] | None = None  # the run's log text once it stored n messages
    stored: int = field(init=False, default=0)
    notes: list[tuple[LogLevel, str]] = field(init=False, default_factory=list)  # what the filters did

    @property
    def task_id(self) -> int:
        return self.lease.task_id

    @property
    def plain(self) -> bool:
        """Every message goes to the folder as it came (no filtering, or verdicts that change nothing)."""
        if self.screened is None:
            return True
        return not any(self.screened.spam) and all(
            v.folder is None and not (v.seen or v.flagged or v.deleted) for v in self.screened.verdicts
        )

    def log_entries(self) -> list[tuple[LogLevel, str]]:
        """What the run writes to the log, in store.commit_batch's order, then the run's own entry."""
        entries = [(LogLevel.WARNING, text) for text in self.warnings] + self.notes
        text = self.summary(self.stored) if self.summary is not None else None
        return entries + ([(LogLevel.INFO, text)] if text else [])

    def will_store(self) -> int:
        """How many messages the batch stores (a message the rules delete is covered by the cursor only)."""
        if self.screened is None:
            return len(self.messages)
        spam, verdicts = self.screened.spam, self.screened.verdicts
        return sum(1 for junk, v in zip(spam, verdicts, strict=True) if junk or not v.deleted)


def writers_turns(db: Database) -> asyncio.Lock | None:
    """On SQLite, one lock for the group claim's and the group commit's transactions: SQLite has
    one writer at a time, and a writer that finds it taken waits in its busy handler, which
    sleeps up to 100 ms between tries; taking turns in the event loop wastes none of that. On
    PostgreSQL the two run side by side (None)."""
    return asyncio.Lock() if db.is_sqlite else None


def taking_turns(turns: asyncio.Lock | None) -> contextlib.AbstractAsyncContextManager[object]:
    return turns if turns is not None else contextlib.nullcontext()


class GroupCommit:
    """The process's writer of fast-path batches (see the module docstring)."""

    def __init__(self, db: Database, *, turns: asyncio.Lock | None = None) -> None:
        self.db = db
        self._turns = turns
        self._queue: list[tuple[Batch, asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.transactions = 0  # written so far (tests, diagnostics)

    async def store(self, batch: Batch) -> int:
        """Write the batch with whatever else is waiting; returns how many messages it stored.
        LeaseLost (nothing of it written) when its lease was no longer held."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="push-group-commit")
        return await done

    async def _write(self) -> None:
        while self._queue:
            group, self._queue = self._queue[:MOST_BATCHES], self._queue[MOST_BATCHES:]
            try:
                await self._commit(group)
            except Exception as exc:
                if len(group) == 1:
                    _settle(group[0][1], exc)
                    continue
                log.warning("push: a group commit of %d batches failed (%s); writing them one by one", len(group), exc)
                for one in group:
                    try:
                        await self._commit([one])
                    except Exception as alone:
                        _settle(one[1], alone)

    async def _commit(self, group: list[tuple[Batch, asyncio.Future[int]]]) -> None:
        batches = [batch for batch, _ in group]
        for batch in batches:
            batch.notes = []  # a batch written again after its group failed says what its filters did once
        await _prestore(self.db, batches)
        async with taking_turns(self._turns), self.db.write() as session:
            held = await _release_leases(session, batches)
            kept = [batch for batch in batches if batch.task_id in held]
            await _drop_sent_copies(session, kept)
            await _deliver(session, kept)
            await _move_cursors(session, kept)
            await _log(session, kept)
        self.transactions += 1
        for batch, done in group:
            _settle(done, batch.stored if batch.task_id in held else LeaseLost(_LOST))


_LOST = "Another worker took over this retrieval task; this run stopped."


def _settle(done: asyncio.Future[int], outcome: int | BaseException) -> None:
    if done.done():  # its waiter was cancelled (the watcher stopped): the outcome is the database's
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)


async def _prestore(db: Database, batches: list[Batch]) -> None:
    """The group's bodies made durable before its transaction, together (the files body store
    appends and fdatasyncs once), as store.commit_batch does for one batch."""
    messages = [message for batch in batches for message in batch.messages]
    if not messages:
        return
    stored = iter(await prestore(db.bodies, messages))
    for batch in batches:
        batch.messages = [next(stored) for _ in batch.messages]


async def _drop_sent_copies(session: AsyncSession, batches: list[Batch]) -> None:
    """Leave out Tributary's own Sent copies (issue 18, service.usecases.sending.known_copies) in
    one query for the group; the tasks' rows are locked already (_release_leases updated them), as
    known_copies.lock_task would. The counts _release_leases added are corrected for what is left out."""
    uids = {m.origin.uid for batch in batches for m in batch.messages if m.origin and m.origin.uid is not None}
    if not uids:
        return
    entry = OutboxEntry
    rows = await session.exec(
        select(entry.sent_copy_task_id, entry.sent_copy_folder, entry.sent_copy_uidvalidity, entry.sent_copy_uid).where(
            col(entry.sent_copy_task_id).in_([batch.task_id for batch in batches]), col(entry.sent_copy_uid).in_(uids)
        )
    )
    known = set(rows.all())
    if not known:
        return
    fewer: dict[int, int] = {}
    for batch in batches:
        keep = [
            i
            for i, m in enumerate(batch.messages)
            if m.origin is None
            or (batch.task_id, m.origin.remote_folder, m.origin.uidvalidity, m.origin.uid) not in known
        ]
        if len(keep) == len(batch.messages):
            continue
        batch.messages, batch.screened = kept(keep, batch.messages, batch.screened)
        before, batch.stored = batch.stored, batch.will_store()
        fewer[batch.task_id] = before - batch.stored
    if fewer := {task_id: n for task_id, n in fewer.items() if n}:
        await session.exec(
            update(RetrievalTask)
            .where(col(RetrievalTask.id).in_(list(fewer)))
            .values(messages_imported=col(RetrievalTask.messages_imported) - case(fewer, value=col(RetrievalTask.id)))
        )


async def _release_leases(session: AsyncSession, batches: list[Batch]) -> set[int]:
    """Release the leases still held as claimed, recording each run (last run, messages imported),
    in one UPDATE; the ids of the tasks whose lease was held (the others store nothing)."""
    for batch in batches:
        batch.stored = batch.will_store()
    counts = {batch.task_id: batch.stored for batch in batches if batch.stored}
    values: dict[str, object] = {"lease_owner": None, "lease_expires_at": None, "last_run_at": utcnow()}
    if counts:
        added = case(counts, value=col(RetrievalTask.id), else_=0)
        values["messages_imported"] = col(RetrievalTask.messages_imported) + added
    claimed = [(batch.task_id, batch.lease.owner) for batch in batches]
    connection = await session.connection()
    found = await connection.execute(
        update(RetrievalTask)
        .where(tuple_(col(RetrievalTask.id), col(RetrievalTask.lease_owner)).in_(claimed))
        .values(**values)
        .returning(col(RetrievalTask.id))
    )
    return {task_id for (task_id,) in found if task_id is not None}


async def _deliver(session: AsyncSession, batches: list[Batch]) -> None:
    """Plain batches bound for one folder of one user in one deliver_many; filtered ones as the
    filters say (deliver_filtered), noting what the filters did for the log."""
    together: dict[tuple[int, int], list[IncomingMessage]] = {}
    for batch in batches:
        if not batch.messages or batch.folder_id is None:
            continue
        if batch.plain:
            together.setdefault((batch.user_id, batch.folder_id), []).extend(batch.messages)
            continue
        assert batch.screened is not None
        delivered = await deliver_filtered(
            session, user_id=batch.user_id, inbox_id=batch.folder_id, messages=batch.messages, screened=batch.screened
        )
        if delivered.summary:
            batch.notes.append((LogLevel.INFO, delivered.summary))
    for (user_id, folder_id), messages in together.items():
        await deliver_many(session, user_id=user_id, folder_id=folder_id, messages=messages, search_later=True)


async def _move_cursors(session: AsyncSession, batches: list[Batch]) -> None:
    """The batches' folder cursors, one UPDATE per remote folder (RETURNING which moved); an INSERT
    for any cursor that is missing."""
    now = utcnow()
    connection = await session.connection()
    by_folder: dict[str, dict[int, Cursor]] = {}
    for batch in batches:
        if batch.cursor is not None:
            by_folder.setdefault(batch.remote_folder, {})[batch.task_id] = batch.cursor
    missing: list[dict[str, object]] = []
    for folder, cursors in by_folder.items():
        moved = await connection.execute(
            update(ImapCursor)
            .where(col(ImapCursor.task_id).in_(list(cursors)), col(ImapCursor.remote_folder) == folder)
            .values(
                last_uid=case({t: c.last_uid for t, c in cursors.items()}, value=col(ImapCursor.task_id)),
                uidvalidity=case({t: c.uidvalidity for t, c in cursors.items()}, value=col(ImapCursor.task_id)),
                updated_at=now,
            )
            .returning(col(ImapCursor.task_id))
        )
        done = {task_id for (task_id,) in moved}
        missing += [
            {
                "task_id": t,
                "remote_folder": folder,
                "uidvalidity": c.uidvalidity,
                "last_uid": c.last_uid,
                "updated_at": now,
            }
            for t, c in cursors.items()
            if t not in done
        ]
    if missing:
        await connection.execute(insert(ImapCursor), missing)


async def _log(session: AsyncSession, batches: list[Batch]) -> None:
    """The runs' log entries in one INSERT: warnings, what the filters did, "Imported n messages"."""
    now = utcnow()
    rows = [
        {
            "user_id": batch.user_id,
            "source": LogSource.INCOMING,
            "level": level,
            "text": text,
            "smtp_account_id": None,
            "retrieval_task_id": batch.task_id,
            "created_at": now,
        }
        for batch in batches
        for level, text in batch.log_entries()
    ]
    if rows:
        await (await session.connection()).execute(insert(LogEntry), rows)
