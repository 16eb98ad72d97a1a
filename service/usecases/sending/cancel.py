"""Cancelling a message in the Outbox: it leaves the outbox and goes back to Drafts, to be edited or dropped.

Only a queued entry can be cancelled (waiting for its first attempt, or for a
retry after a 4yz, a lost connection or the send limit). A delivery attempt
claims its entry by turning it from "queued" into "sending" in a write
transaction (sending.attempt: the row locked FOR UPDATE on PostgreSQL, SQLite's
single writer under BEGIN IMMEDIATE). Cancelling is one conditional DELETE of
the row "where it is still queued", in a write transaction too, so exactly one
of the two wins: on PostgreSQL the DELETE waits for a claim holding the row and
then finds it "sending" (READ COMMITTED re-checks the condition on the newest
version of the row), on SQLite the two transactions run one after the other.
The message's local copy moves from the Outbox folder to Drafts, flagged
\\Draft, in the same transaction: it is either sent or in Drafts, never both,
never lost. An outbox round that listed the entry before it was cancelled
skips it (`process_due_outbox`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import col, select

from service.domain.outbox import OutboxStatus
from service.domain.values import SpecialUse
from service.errors import Conflict, NotFound
from service.persistence import mailstore
from service.persistence.database import Database
from service.persistence.tables import Message, OutboxEntry
from service.persistence.types import utcnow

BEING_SENT = "It is being sent right now; it can no longer be cancelled."
NOT_WAITING = "Only a message waiting to be sent can be cancelled; this one is no longer waiting."
NOT_IN_OUTBOX = "This message is not in the outbox."
CANCELLED = "The message was cancelled and is back in Drafts."


@dataclass(frozen=True, slots=True)
class CancelResult:
    """A cancelled entry: the draft it became (None if its local copy was already gone) and a sentence."""

    outbox_id: int
    draft_message_id: int | None
    already_accepted: tuple[str, ...]
    detail: str


async def cancel_outbox_message(
    *, db: Database, user_id: int, outbox_id: int, now: datetime | None = None
) -> CancelResult:
    """Take a queued message out of the outbox and put it in Drafts (see the module's text).

    Raises NotFound (not the user's, or gone), Conflict (being sent now, or no longer waiting)."""
    now = now or utcnow()
    async with db.write() as session:
        entry = (
            await session.exec(select(OutboxEntry).where(OutboxEntry.id == outbox_id, OutboxEntry.user_id == user_id))
        ).first()
        if entry is None:
            raise NotFound(NOT_IN_OUTBOX)
        message_id, accepted = entry.message_id, tuple(json.loads(entry.accepted_recipients))
        deleted = await session.exec(
            delete(OutboxEntry)
            .where(
                col(OutboxEntry.id) == outbox_id,
                col(OutboxEntry.user_id) == user_id,
                col(OutboxEntry.status) == OutboxStatus.QUEUED,
            )
            .execution_options(synchronize_session=False)
        )
        if not deleted.rowcount:
            status = (await session.exec(select(OutboxEntry.status).where(OutboxEntry.id == outbox_id))).first()
            if status is None:
                raise NotFound(NOT_IN_OUTBOX)
            raise Conflict(BEING_SENT if status is OutboxStatus.SENDING else NOT_WAITING)
        moved = False
        if message_id is not None:
            folders = await mailstore.ensure_special_folders(session, user_id)
            outcome = await session.exec(
                update(Message)
                .where(
                    col(Message.id) == message_id,
                    col(Message.user_id) == user_id,
                    col(Message.folder_id) == folders[SpecialUse.OUTBOX].id,
                )
                .values(folder_id=folders[SpecialUse.DRAFTS].id, draft=True, seen=True)
                .execution_options(synchronize_session=False)
            )
            moved = bool(outcome.rowcount)
    detail = CANCELLED
    if accepted:
        detail += f" It had already been delivered to {', '.join(accepted)}; sending the draft would reach them again."
    return CancelResult(outbox_id, message_id if moved else None, accepted, detail)
