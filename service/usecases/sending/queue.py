"""Sending a new message: compose it, write it to the outbox, then make the first attempt.

The message is stored in the user's Outbox folder, and its outbox row
committed, before any connection opens: from then on nothing can lose it.
The first attempt follows at once (it may still end up queued: a 4yz, a lost
connection or the account's messages-per-minute limit).
"""

from __future__ import annotations

import json
from datetime import datetime

from service.config import Settings
from service.domain.compose import Draft, compose
from service.domain.outbox import GIVE_UP_AFTER, OutboxStatus, SendResult
from service.domain.values import SpecialUse
from service.errors import InvalidInput
from service.persistence import mailstore
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import OutboxEntry
from service.persistence.types import utcnow
from service.usecases.sending.attempt import attempt_delivery
from service.usecases.sending.drafts import DraftRef, remove_draft
from service.usecases.sending.entries import result_of
from service.usecases.sending.senders import route_for, thread_of


def _megabytes(size: int) -> str:
    """A size for a sentence: "2.5 MB", or KB below a megabyte (never "0.0 MB")."""
    if size < 1024 * 1024:
        return f"{max(size / 1024, 0.1):.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


async def send_message(
    *,
    db: Database,
    secret_box: SecretBox,
    settings: Settings,
    user_id: int,
    from_account_id: int | None,
    draft: Draft,
    reply_to_message_id: int | None = None,
    now: datetime | None = None,
    send_now: bool = True,
    replaces_draft: DraftRef | None = None,
) -> SendResult:
    """Send `draft` as the chosen Send From entry (an SMTP account's id, or None for the company relay).

    Raises InvalidInput, NotFound or FeatureDisabled before anything is stored;
    otherwise returns the entry's state after the first attempt, or, with
    `send_now` off, queued for the outbox round (which reuses connections).
    A draft being sent (`replaces_draft`) leaves Drafts in the transaction that queues the message.
    """
    now = now or utcnow()
    async with db.read() as session:
        route = await route_for(session, user_id, from_account_id)
        thread = await thread_of(session, user_id, reply_to_message_id) if reply_to_message_id is not None else None
    composed = compose(draft, sender=route.sender, now=now, thread=thread)
    if len(composed.stored) > route.max_message_bytes:
        raise InvalidInput(
            f"The message is {_megabytes(len(composed.stored))}, more than the "
            f"{_megabytes(route.max_message_bytes)} your administrator allows."
        )
    async with db.write() as session:
        folders = await mailstore.ensure_special_folders(session, user_id)
        outbox_folder = folders[SpecialUse.OUTBOX].id
        assert outbox_folder is not None
        stored = await mailstore.deliver(
            session, user_id=user_id, folder_id=outbox_folder, raw=composed.stored, seen=True, received_at=now
        )
        entry = OutboxEntry(
            user_id=user_id,
            smtp_account_id=route.account_id,
            via_relay=route.account_id is None,
            message_id=stored.id,
            in_reply_to_message_id=reply_to_message_id,
            data_offset=composed.data_offset,
            envelope_from=composed.envelope_from,
            pending_recipients=json.dumps(list(composed.recipients)),
            status=OutboxStatus.QUEUED,
            next_attempt_at=now,
            give_up_at=now + GIVE_UP_AFTER,
            created_at=now,
            updated_at=now,
        )
        session.add(entry)
        await session.flush()
        assert entry.id is not None
        entry_id = entry.id
        if replaces_draft is not None:
            await remove_draft(session, user_id, replaces_draft)
        if not send_now:
            return result_of(entry)
    return await attempt_delivery(db=db, secret_box=secret_box, settings=settings, entry_id=entry_id, now=now)
