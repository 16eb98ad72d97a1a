"""Push's fast path: new mail announced in INBOX is fetched over the push connection itself.

An ordinary run opens a new connection, signs in, LISTs and EXAMINEs every
folder and spends several transactions doing so. The push connection is
already signed in with INBOX examined, so for the common case (news for INBOX
only) the Runner, holding the task's ordinary run lease (`lease.claim`), asks
this module to:

1. read the task (if it should still push: NoLongerPushing otherwise), its
   domain, its INBOX cursor and local folder, in the lease claim's transaction;
2. check that the connection's UIDVALIDITY (from its EXAMINE) is the cursor's;
3. `UID FETCH <last_uid+1>:* (UID RFC822.SIZE)` over the push connection (IDLE
   ended with DONE; the next wait idles again), keeping only UIDs above the
   cursor (DESIGN.md trap: `n:*` names the last message even below n);
4. fetch those messages' flags, dates and bytes, and store them through the
   same commit as a run (store.commit_batch: messages, cursor and the lease's
   renewal in one transaction, the Inbox filters applied as in runs), with the
   run's outcome and the lease's release (run.record_outcome_in) in that same
   transaction. The next poll stays where it was: the poll at the interval
   still covers the other folders.

Anything unusual returns None before anything is stored, and the Runner runs
the ordinary full run under the same lease: no cursor (never run), another
UIDVALIDITY, a message over the domain's limit or the connection's literal
limit, more than one batch, a message the server did not send, "Enable
debug" (the full run records the transcript), the domain's retrieval off.
Exactly-once rests on the same two things as runs: the lease (one holder) and
the cursor moving in the batch's transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sqlalchemy import and_, or_, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service import metrics
from service.config import Settings
from service.domain.retrieval import (
    BatchLimits,
    FolderResult,
    LocalTarget,
    RunResult,
    default_destination,
    local_target,
)
from service.domain.values import Protocol as MailProtocol
from service.domain.values import SpecialUse
from service.persistence.database import Database
from service.persistence.mailstore import IncomingMessage
from service.persistence.tables import Domain, Folder, ImapCursor, RetrievalTask, User
from service.persistence.types import utcnow
from service.protocols.imap import FetchedMessage
from service.protocols.imap.push.wire import MAX_LITERAL
from service.usecases.retrieval.filtering import InboxFilter, SpamCheck, screen
from service.usecases.retrieval.imap_run import incoming_message
from service.usecases.retrieval.lease import Lease
from service.usecases.retrieval.push_batch import Batch, GroupCommit
from service.usecases.retrieval.push_leases import eligible
from service.usecases.retrieval.run import initial_choice, record_outcome_in
from service.usecases.retrieval.store import Cursor, Owner, commit_batch, find_folder, resolve_folder
from service.usecases.retrieval_tasks import folder_selection

INBOX = "INBOX"


class NoLongerPushing(Exception):
    """The task should not push any more (paused, disabled, push or retrieval turned off): the
    caller gives the lease back and does nothing; the supervisor closes the connection."""


@runtime_checkable
class FetchingConnection(Protocol):
    """What the fast path needs of service.protocols.imap.push.PushConnection."""

    @property
    def uidvalidity(self) -> int | None: ...

    async def sizes_after(self, after_uid: int) -> dict[int, int]: ...

    async def fetch_new(self, after_uid: int, uids: list[int] | None = None) -> list[FetchedMessage]: ...


@dataclass(frozen=True, slots=True)
class Pushed:
    """What the fast path reads before it fetches: the task, its domain, its INBOX cursor (None:
    never retrieved), where INBOX lands and that folder's id (None: not created yet)."""

    task: RetrievalTask
    domain: Domain
    cursor: ImapCursor | None
    target: LocalTarget
    folder_id: int | None


async def read_pushed(session: AsyncSession, task_id: int, push_owner: str | None = None) -> Pushed:
    """The task if it should still push (NoLongerPushing otherwise), with its domain and INBOX
    cursor in one query, and the local folder INBOX lands in. Run in the lease claim's
    transaction (lease.claim's `then`), so the fast path costs one transaction less.
    `push_owner`: the task's push lease must still be this holder's (an edit clears it, and the
    connection heard news with the old settings: it must not fetch)."""
    found = (await read_many(session, [task_id], push_owner)).get(task_id)
    if found is None:
        raise NoLongerPushing(task_id)
    return found


async def read_many(session: AsyncSession, task_ids: Sequence[int], push_owner: str | None = None) -> dict[int, Pushed]:
    """read_pushed for many tasks in two queries (push_claim.py's group claim): those that
    should still push, by id; a task missing from the answer should not."""
    owned = () if push_owner is None else (col(RetrievalTask.push_owner) == push_owner,)
    inbox_cursor = and_(col(ImapCursor.task_id) == RetrievalTask.id, col(ImapCursor.remote_folder) == INBOX)
    rows = (
        await session.exec(
            select(RetrievalTask, Domain, ImapCursor)
            .join(User, col(User.id) == RetrievalTask.user_id)
            .join(Domain, col(Domain.id) == User.domain_id)
            .outerjoin(ImapCursor, inbox_cursor)
            .where(col(RetrievalTask.id).in_(list(task_ids)), *eligible(utcnow()), *owned)
        )
    ).all()
    targets = {}
    for task, _domain, _cursor in rows:
        destination = task.destination_folder or default_destination(task.name, task.username, task.host)
        targets[task.id] = local_target(INBOX, None, transfer=task.folder_transfer, destination=destination)
    folders = await _find_folders(session, [(task.user_id, targets[task.id]) for task, _d, _c in rows])
    return {
        task.id: Pushed(task, domain, cursor, targets[task.id], folders.get((task.user_id, targets[task.id])))
        for task, domain, cursor in rows
        if task.id is not None
    }


async def _find_folders(
    session: AsyncSession, wanted: list[tuple[int, LocalTarget]]
) -> dict[tuple[int, LocalTarget], int]:
    """The ids of the local folders that exist, as store.find_folder finds each, in one query."""
    if len(wanted) == 1:
        user_id, target = wanted[0]
        found = await find_folder(session, user_id, target)
        return {} if found is None else {wanted[0]: found}
    by_path = {(user_id, _path(target)): (user_id, target) for user_id, target in wanted if target.special_use is None}
    by_use: dict[tuple[int, str], tuple[int, LocalTarget]] = {
        (user_id, target.special_use): (user_id, target) for user_id, target in wanted if target.special_use
    }
    conditions = []
    if by_path:
        conditions.append(tuple_(col(Folder.user_id), col(Folder.path)).in_(list(by_path)))
    if by_use:
        conditions.append(tuple_(col(Folder.user_id), col(Folder.special_use)).in_(list(by_use)))
    if not conditions:
        return {}
    rows = (
        await session.exec(select(Folder.id, Folder.user_id, Folder.path, Folder.special_use).where(or_(*conditions)))
    ).all()
    ids: dict[tuple[int, LocalTarget], int] = {}
    for folder_id, user_id, path, use in rows:
        for hit in (by_path.get((user_id, path)), by_use.get((user_id, use)) if use is not None else None):
            if hit is not None and folder_id is not None:
                ids.setdefault(hit, folder_id)
    return ids


def _path(target: LocalTarget) -> str:
    """The folder path as store.find_folder compares it (empty levels dropped)."""
    return "/".join(part for part in target.path.split("/") if part)


async def fetch_pushed(
    *,
    db: Database,
    settings: Settings,
    lease: Lease,
    connection: FetchingConnection,
    stop: asyncio.Event | None = None,
    spread: float = 0.5,
    pushed: Pushed | None = None,
    committer: GroupCommit | None = None,
) -> RunResult | None:
    """INBOX's new mail stored and the run recorded (see the module docstring); None when this
    is a case for the ordinary run (nothing stored). Remote failures and LeaseLost raise.
    `pushed`: the task as read_pushed read it in the claim's transaction (else read here).
    `committer`: the process's group commit (push_batch.py), which stores this batch in one
    transaction with those of other tasks; without it, a transaction of its own."""
    if pushed is None:
        async with db.read() as session:
            pushed = await read_pushed(session, lease.task_id)
    task, domain, row, target = pushed.task, pushed.domain, pushed.cursor, pushed.target
    if row is None or task.id is None or task.enable_debug:
        return None
    if not folder_selection(task).includes(INBOX) or initial_choice(task) is not None:
        return None  # what to import decides: the ordinary run applies the folder selection and initial choice
    if connection.uidvalidity is None or connection.uidvalidity != row.uidvalidity:
        return None
    started = time.monotonic()
    sizes = await connection.sizes_after(row.last_uid)
    limits = BatchLimits(settings.retrieval_batch_messages, settings.retrieval_batch_bytes)
    largest = min(domain.max_message_bytes, MAX_LITERAL)
    if len(sizes) > limits.messages or sum(sizes.values()) > limits.bytes or any(s > largest for s in sizes.values()):
        return None
    uids = sorted(sizes)
    fetched = await connection.fetch_new(row.last_uid, uids) if uids else []
    if [message.uid for message in fetched] != uids:
        return None  # expunged meanwhile, or sent without a body: the full run sorts it out
    messages = (
        await asyncio.to_thread(lambda: [incoming_message(m, task.id or 0, INBOX, row.uidvalidity) for m in fetched])
        if fetched
        else []
    )
    local = target.path or (target.special_use or "").capitalize()
    cursor = Cursor(row.uidvalidity, uids[-1]) if uids else None
    if committer is not None:
        stored = await _group_commit(db, settings, committer, lease, pushed, messages, cursor, local)
        result = _result(local, stored)
    else:
        result = await _commit_alone(db, settings, lease, pushed, messages, cursor, local, stop, spread)
    metrics.record_run(MailProtocol.IMAP.value, result, time.monotonic() - started)
    return result


def _result(local: str, stored: int) -> RunResult:
    folder = FolderResult(remote=INBOX, local=local)
    folder.imported = stored
    return RunResult(imported=stored, folders=[folder])


async def _group_commit(
    db: Database,
    settings: Settings,
    committer: GroupCommit,
    lease: Lease,
    pushed: Pushed,
    messages: list[IncomingMessage],
    cursor: Cursor | None,
    local: str,
) -> int:
    """The batch screened (when the task filters its Inbox) and stored by the group commit;
    how many messages it stored. LeaseLost raises."""
    task, target, folder_id = pushed.task, pushed.target, pushed.folder_id
    screened = None
    if messages:
        if folder_id is None:
            folder_id = await resolve_folder(db, task.user_id, target)
        if task.apply_filters and target.special_use is SpecialUse.INBOX:
            filtering = InboxFilter(inbox_id=folder_id, spamd=SpamCheck.from_settings(settings))
            screened = await screen(db, filtering, task.user_id, messages)
    batch = Batch(
        lease=lease,
        user_id=task.user_id,
        remote_folder=INBOX,
        folder_id=folder_id,
        messages=messages,
        cursor=cursor if messages else None,
        screened=screened,
        warnings=screened.warnings if screened is not None else (),
        summary=lambda stored: _result(local, stored).summary() if stored else None,
    )
    return await committer.store(batch)


async def _commit_alone(
    db: Database,
    settings: Settings,
    lease: Lease,
    pushed: Pushed,
    messages: list[IncomingMessage],
    cursor: Cursor | None,
    local: str,
    stop: asyncio.Event | None,
    spread: float,
) -> RunResult:
    """The batch stored in a transaction of its own, with the run's outcome (store.commit_batch)."""
    task, target, folder_id = pushed.task, pushed.target, pushed.folder_id
    result = RunResult()
    folder = FolderResult(remote=INBOX, local=local)

    async def outcome(session: AsyncSession, stored: int) -> None:
        folder.imported = stored
        result.imported = stored
        result.folders.append(folder)
        assert task.id is not None
        await record_outcome_in(session, task.id, result, None, None, lease, settings, spread, keep_next_run=True)

    if not messages or cursor is None:  # the news was covered already (an earlier fetch, or a poll)
        async with db.write() as session:
            await outcome(session, 0)
        return result
    if folder_id is None:
        folder_id = await resolve_folder(db, task.user_id, target)
    filtering = None  # only mail arriving in the local Inbox is filtered (Owner.filters)
    if task.apply_filters and target.special_use is SpecialUse.INBOX:
        filtering = InboxFilter(inbox_id=folder_id, spamd=SpamCheck.from_settings(settings))
    owner = Owner(task_id=lease.task_id, user_id=task.user_id, lease=lease, stop=stop, filtering=filtering)
    await commit_batch(
        db,
        owner=owner,
        folder_id=folder_id,
        remote_folder=INBOX,
        messages=messages,
        cursor=cursor,
        then=outcome,
    )
    return result
