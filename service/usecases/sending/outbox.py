"""The outbox over time: the scheduler's retries, what the user sees waiting, and "retry".

`process_due_outbox` is what the scheduler calls: it first turns attempts whose
process died mid-session ("sending" for too long) into "unknown" (the message
may have gone; it is never re-sent blindly), then attempts every due entry,
then every due copy for a remote Sent folder (APPEND only: those are sent).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from sqlmodel import col, or_, select

from service.config import Settings
from service.domain.outbox import GIVE_UP_AFTER, STALE_SENDING, OutboxStatus, OutboxView, SendResult, SentCopyStatus
from service.domain.values import LogLevel, LogSource
from service.errors import InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Message, OutboxEntry
from service.persistence.types import utcnow
from service.protocols.smtp import SessionPool
from service.usecases.logs import record
from service.usecases.sending.attempt import attempt_delivery
from service.usecases.sending.entries import recipients_of, store_recipients, view_of
from service.usecases.sending.sent_copy import attempt_sent_copy, due_copies

log = logging.getLogger(__name__)
DEFAULT_BATCH = 1000  # a round of the scheduler's outbox job (every 30 s)
STALE_TEXT = (
    "Tributary stopped while this message was being sent, so whether it was delivered is unknown. "
    "It will not be sent again unless you ask."
)


async def _expire_stale(db: Database, now: datetime) -> None:
    async with db.write() as session:
        stale = (
            await session.exec(
                select(OutboxEntry)
                .where(
                    col(OutboxEntry.status) == OutboxStatus.SENDING,
                    col(OutboxEntry.last_attempt_at) < now - STALE_SENDING,
                )
                .with_for_update()
            )
        ).all()
        for entry in stale:
            entry.status = OutboxStatus.UNKNOWN
            entry.last_error = STALE_TEXT
            entry.updated_at = now
            session.add(entry)
            record(
                session,
                source=LogSource.OUTGOING,
                level=LogLevel.ERROR,
                text=STALE_TEXT,
                user_id=entry.user_id,
                smtp_account_id=entry.smtp_account_id,
            )


async def process_due_outbox(
    *, db: Database, secret_box: SecretBox, settings: Settings, now: datetime | None = None, limit: int = DEFAULT_BATCH
) -> list[SendResult]:
    """Attempt every queued entry whose time has come (oldest first, at most `limit`), reusing
    one SMTP session per server for the whole round."""
    now = now or utcnow()
    await _expire_stale(db, now)
    async with db.read() as session:
        due = (
            await session.exec(
                select(OutboxEntry.id)
                .where(
                    col(OutboxEntry.status) == OutboxStatus.QUEUED,
                    or_(col(OutboxEntry.next_attempt_at).is_(None), col(OutboxEntry.next_attempt_at) <= now),
                )
                .order_by(col(OutboxEntry.next_attempt_at), col(OutboxEntry.id))
                .limit(limit)
            )
        ).all()
    results = []
    async with SessionPool() as pool:
        for entry_id in due:
            assert entry_id is not None
            try:
                result = await attempt_delivery(
                    db=db,
                    secret_box=secret_box,
                    settings=settings,
                    entry_id=entry_id,
                    now=now,
                    pool=pool,
                    copy_after=False,  # the copy step below makes it, in this round
                )
            except NotFound:  # cancelled (back to Drafts) since the round listed it
                continue
            results.append(result)
    for entry_id in await due_copies(db, now, limit):  # copies for remote Sent folders: delivery is over
        try:
            await attempt_sent_copy(db=db, secret_box=secret_box, settings=settings, entry_id=entry_id, now=now)
        except Exception:  # one copy's bug must not stop the round (it stays pending, or appending until stale)
            log.exception("could not attempt the Sent copy of outbox entry %s", entry_id)
    return results


async def list_outbox(*, db: Database, user_id: int, include_sent: bool = False) -> list[OutboxView]:
    """The user's outgoing messages, newest first: those not sent yet (and sent ones whose copy for
    the remote Sent folder is still to be saved, or failed), or all of them."""
    query = (
        select(OutboxEntry, Message.subject)
        .join(Message, col(Message.id) == OutboxEntry.message_id, isouter=True)
        .where(OutboxEntry.user_id == user_id)
        .order_by(col(OutboxEntry.created_at).desc(), col(OutboxEntry.id).desc())
    )
    if not include_sent:
        copy_open = col(OutboxEntry.sent_copy_status).in_(
            [SentCopyStatus.PENDING, SentCopyStatus.APPENDING, SentCopyStatus.FAILED]
        )
        query = query.where(or_(col(OutboxEntry.status) != OutboxStatus.SENT, copy_open))
    async with db.read() as session:
        rows = (await session.exec(query)).all()
    return [view_of(entry, subject or "") for entry, subject in rows]


async def retry_outbox_message(
    *,
    db: Database,
    secret_box: SecretBox,
    settings: Settings,
    user_id: int,
    outbox_id: int,
    now: datetime | None = None,
) -> SendResult:
    """The user's "Send again" for a failed or unknown message (or "now" for a queued one): to every
    recipient not accepted yet (refused ones included: the user decided), with a fresh 24 hours of retries."""
    now = now or utcnow()
    async with db.write() as session:
        entry = await session.get(OutboxEntry, outbox_id)
        if entry is None or entry.user_id != user_id:
            raise NotFound("This message is not in the outbox.")
        if entry.status in (OutboxStatus.SENT, OutboxStatus.SENDING):
            raise InvalidInput("This message is already sent or being sent.")
        recipients = recipients_of(entry)
        again = recipients.pending + tuple(a for a in recipients.refused if a not in recipients.pending)
        store_recipients(entry, replace(recipients, pending=again))
        entry.status = OutboxStatus.QUEUED
        entry.next_attempt_at = now
        entry.give_up_at = now + GIVE_UP_AFTER
        entry.updated_at = now
        session.add(entry)
    return await attempt_delivery(db=db, secret_box=secret_box, settings=settings, entry_id=outbox_id, now=now)
