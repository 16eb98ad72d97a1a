"""The copy of a sent message in the remote mailbox's Sent folder (issue 18).

An SMTP account may name the IMAP retrieval task of the same mailbox. Once a message through it
is "sent" (delivery is over for every recipient), its outbox entry gets a copy to make:
`sent_copy_status` pending. Delivery and copy are two states of one row, and the copy is only
ever attempted on an entry whose delivery is over, so retrying the copy never sends the
message again (attempt.py only claims "queued" entries).

Like a delivery, an attempt is three steps and no session is held across the network:
claim (pending and due -> appending, one more attempt), one IMAP session
(protocols.imap.append), record. A server that is down, slow or refusing leaves the copy
pending with the outbox's backoff (1, 2, 4 ... minutes, at most an hour) for 24 hours, then
failed. A retry first looks for the message by Message-ID, in case the previous APPEND
reached the server although its answer did not reach us.

The recorded (task, folder, UIDVALIDITY, UID) is the copy's retrieval identity: the local Sent
message takes it as its origin, and retrieval skips that UID (known_copies). Both records lock
the task's row, so a run that imported the copy meanwhile is noticed here and its second copy
removed.

Providers that file sent mail themselves (files_sent_itself: Gmail, Microsoft 365) are skipped
with a sentence saying why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.domain.oauth import AuthKind
from service.domain.outbox import OutboxStatus, SentCopyStatus, next_retry
from service.domain.values import LogLevel, LogSource
from service.errors import RemoteError, TributaryError
from service.persistence.database import Database
from service.persistence.mailstore import read_raw
from service.persistence.secrets import SecretBox, SecretKeyError
from service.persistence.tables import Domain, Message, OutboxEntry, RetrievalTask, User
from service.protocols.imap import ImapAccount
from service.protocols.imap.append import AppendedCopy, append_sent_copy
from service.usecases.domains import outbound_policy
from service.usecases.logs import record
from service.usecases.oauth_sign_in import with_token
from service.usecases.retrieval_tasks import imap_account
from service.usecases.sending.known_copies import lock_task

log = logging.getLogger(__name__)
TASK_GONE = "The retrieval task chosen for the Sent copy was deleted, so no copy was saved in the remote Sent folder."
MESSAGE_GONE = "The message was deleted from Sent before its copy could be saved in the remote Sent folder."
# An attempt's IMAP session ends by its deadline (_append: three connection timeouts, at most 30 minutes);
# "appending" for longer means its process stopped (a background copy cut short by a restart): due again.
STALE_APPENDING = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class _CopyJob:
    entry_id: int
    user_id: int
    account_id: int | None
    task_id: int
    imap: ImapAccount
    oauth: bool
    raw: bytes
    message_id: str | None
    when: datetime | None
    look_first: bool
    subject: str


def _settle(entry: OutboxEntry, status: SentCopyStatus, text: str | None, now: datetime) -> None:
    entry.sent_copy_status = status
    entry.sent_copy_error = text
    entry.next_attempt_at = None
    entry.updated_at = now


def _log(session: AsyncSession, entry: OutboxEntry, level: LogLevel, text: str) -> None:
    record(
        session,
        source=LogSource.OUTGOING,
        level=level,
        text=text,
        user_id=entry.user_id,
        smtp_account_id=entry.smtp_account_id,
    )


async def _claim(
    db: Database, secret_box: SecretBox, settings: Settings, entry_id: int, now: datetime
) -> _CopyJob | None:
    async with db.write() as session:
        entry = (await session.exec(select(OutboxEntry).where(OutboxEntry.id == entry_id).with_for_update())).first()
        if (
            entry is None
            or entry.status is not OutboxStatus.SENT
            or entry.sent_copy_status is not SentCopyStatus.PENDING
            or (entry.next_attempt_at is not None and entry.next_attempt_at > now)
        ):
            return None
        task = await session.get(RetrievalTask, entry.sent_copy_task_id) if entry.sent_copy_task_id else None
        if task is None or task.user_id != entry.user_id:
            _settle(entry, SentCopyStatus.SKIPPED, TASK_GONE, now)
            session.add(entry)
            return None
        message = await session.get(Message, entry.message_id) if entry.message_id is not None else None
        if message is None:
            _settle(entry, SentCopyStatus.SKIPPED, MESSAGE_GONE, now)
            session.add(entry)
            return None
        domain = (await session.exec(select(Domain).join(User).where(User.id == entry.user_id))).one()
        try:
            account = imap_account(task, secret_box, settings, policy=outbound_policy(settings, domain))
        except SecretKeyError as exc:
            _settle(entry, SentCopyStatus.FAILED, exc.message, now)
            _log(session, entry, LogLevel.ERROR, exc.message)
            session.add(entry)
            return None
        try:
            raw = await read_raw(session, user_id=entry.user_id, message_id=message.id or 0)
        except TributaryError as exc:  # its stored bytes are unreadable: nothing to append, ever
            _settle(entry, SentCopyStatus.FAILED, exc.message, now)
            _log(session, entry, LogLevel.ERROR, exc.message)
            session.add(entry)
            return None
        entry.sent_copy_status = SentCopyStatus.APPENDING
        entry.sent_copy_attempts += 1
        entry.sent_copy_attempted_at = now
        entry.updated_at = now
        session.add(entry)
        return _CopyJob(
            entry_id=entry_id,
            user_id=entry.user_id,
            account_id=entry.smtp_account_id,
            task_id=task.id or 0,
            imap=account,
            oauth=task.auth is AuthKind.OAUTH2,
            raw=raw,
            message_id=message.message_id_header,
            when=message.date or message.received_at,
            look_first=entry.sent_copy_attempts > 1,
            subject=message.subject,
        )


async def _append(db: Database, settings: Settings, secret_box: SecretBox, job: _CopyJob) -> AppendedCopy:
    deadline = time.monotonic() + max(60.0, job.imap.timeout_seconds * 3)

    async def sign_in(token: str | None) -> AppendedCopy:
        account = job.imap if token is None else replace(job.imap, oauth_token=token)
        return await asyncio.to_thread(
            append_sent_copy,
            account,
            job.raw,
            message_id=job.message_id,
            when=job.when,
            look_first=job.look_first,
            deadline=deadline,
        )

    if job.oauth:
        return await with_token(
            db=db, settings=settings, secret_box=secret_box, kind="retrieval", target_id=job.task_id, sign_in=sign_in
        )
    return await sign_in(None)


async def _record_done(
    session: AsyncSession, entry: OutboxEntry, job: _CopyJob, copy: AppendedCopy, *, task_alive: bool
) -> None:
    """The copy is stored remotely: keep its identity, give it to the local Sent message, and remove a
    copy a retrieval run imported meanwhile (it holds the same bytes). The caller holds the task's row
    lock; a task deleted during the APPEND (`task_alive` False) gives nobody an origin."""
    entry.sent_copy_folder = copy.folder
    entry.sent_copy_uidvalidity = copy.uidvalidity
    entry.sent_copy_uid = copy.uid
    if task_alive and copy.uid is not None and copy.uidvalidity is not None:
        imported = (
            await session.exec(
                select(Message).where(
                    Message.task_id == job.task_id,
                    Message.remote_folder == copy.folder,
                    Message.remote_uidvalidity == copy.uidvalidity,
                    Message.remote_uid == copy.uid,
                    Message.id != entry.message_id,
                )
            )
        ).all()
        for duplicate in imported:
            await session.delete(duplicate)
        local = await session.get(Message, entry.message_id) if entry.message_id is not None else None
        if local is not None:
            local.task_id = job.task_id
            local.remote_folder = copy.folder
            local.remote_uidvalidity = copy.uidvalidity
            local.remote_uid = copy.uid
            session.add(local)


def _about(job: _CopyJob) -> str:
    return f"“{job.subject}”" if job.subject else "a message without subject"


async def attempt_sent_copy(
    *, db: Database, secret_box: SecretBox, settings: Settings, entry_id: int, now: datetime
) -> SentCopyStatus | None:
    """Append the entry's message to the remote Sent folder now, if its copy is due; returns the copy's
    new state (None: nothing was due)."""
    job = await _claim(db, secret_box, settings, entry_id, now)
    if job is None:
        return None
    outcome: AppendedCopy | TributaryError
    try:
        outcome = await _append(db, settings, secret_box, job)
    except TributaryError as exc:
        outcome = exc
    except Exception as exc:  # a bug: the copy may be stored; the retry looks for it before appending
        log.exception("unexpected error while appending the Sent copy of outbox entry %s", entry_id)
        outcome = RemoteError(f"An unexpected error ({type(exc).__name__}) interrupted saving the copy.")
    host = job.imap.host
    async with db.write() as session:
        # The task's row first, then the entry's: deleting the task locks them in that order (SET NULL).
        task_alive = await lock_task(session, job.task_id)
        entry = (await session.exec(select(OutboxEntry).where(OutboxEntry.id == entry_id).with_for_update())).one()
        if isinstance(outcome, AppendedCopy):
            _settle(entry, SentCopyStatus.DONE, None, now)
            await _record_done(session, entry, job, outcome, task_alive=task_alive)
            _log(session, entry, LogLevel.INFO, f"Saved a copy of {_about(job)} in {outcome.folder} on {host}.")
        else:
            when = next_retry(give_up_at=entry.give_up_at, attempts=entry.sent_copy_attempts, now=now)
            if when is None:
                text = f"Tributary gave up saving a copy in the Sent folder on {host} after 24 hours. {outcome.message}"
                _settle(entry, SentCopyStatus.FAILED, text, now)
                _log(session, entry, LogLevel.ERROR, text)
            else:
                _settle(entry, SentCopyStatus.PENDING, outcome.message, now)
                entry.next_attempt_at = when
                _log(
                    session,
                    entry,
                    LogLevel.WARNING,
                    f"Could not save a copy of {_about(job)} in the Sent folder on {host} yet: {outcome.message} "
                    f"Next attempt at {when:%H:%M} UTC; the message itself was sent and is not sent again.",
                )
        session.add(entry)
        return entry.sent_copy_status


async def due_copies(db: Database, now: datetime, limit: int) -> list[int]:
    """Entries whose Sent copy is due, oldest first; copies held by a process that died ("appending"
    for too long) become due again (the retry looks for the message before appending)."""
    async with db.write() as session:
        stale = (
            await session.exec(
                select(OutboxEntry)
                .where(
                    col(OutboxEntry.sent_copy_status) == SentCopyStatus.APPENDING,
                    col(OutboxEntry.sent_copy_attempted_at) < now - STALE_APPENDING,
                )
                .with_for_update()
            )
        ).all()
        for entry in stale:
            entry.sent_copy_status = SentCopyStatus.PENDING
            entry.next_attempt_at = now
            session.add(entry)
    async with db.read() as session:
        due = (
            await session.exec(
                select(OutboxEntry.id)
                .where(
                    col(OutboxEntry.sent_copy_status) == SentCopyStatus.PENDING,
                    or_(col(OutboxEntry.next_attempt_at).is_(None), col(OutboxEntry.next_attempt_at) <= now),
                )
                .order_by(col(OutboxEntry.next_attempt_at), col(OutboxEntry.id))
                .limit(limit)
            )
        ).all()
    return [entry_id for entry_id in due if entry_id is not None]
