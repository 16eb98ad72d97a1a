"""Reading and writing an outbox row's recipient columns (JSON text), and its result and view."""

from __future__ import annotations

import json

from service.domain.outbox import OutboxStatus, OutboxView, Recipients, SendResult
from service.persistence.tables import OutboxEntry

STATUS_SENTENCES = {
    OutboxStatus.QUEUED: "The message is waiting in the Outbox.",
    OutboxStatus.SENDING: "The message is being sent.",
    OutboxStatus.SENT: "The message was sent.",
    OutboxStatus.FAILED: "The message could not be sent.",
    OutboxStatus.UNKNOWN: "Whether the message was delivered is unknown.",
}


def recipients_of(entry: OutboxEntry) -> Recipients:
    return Recipients(
        pending=tuple(json.loads(entry.pending_recipients)),
        accepted=tuple(json.loads(entry.accepted_recipients)),
        refused=dict(json.loads(entry.refused_recipients)),
    )


def store_recipients(entry: OutboxEntry, recipients: Recipients) -> None:
    entry.pending_recipients = json.dumps(list(recipients.pending))
    entry.accepted_recipients = json.dumps(list(recipients.accepted))
    entry.refused_recipients = json.dumps(dict(recipients.refused), sort_keys=True)


def result_of(entry: OutboxEntry, detail: str | None = None) -> SendResult:
    assert entry.id is not None
    return SendResult(
        outbox_id=entry.id,
        status=entry.status,
        refused=dict(json.loads(entry.refused_recipients)),
        detail=detail or entry.last_error or STATUS_SENTENCES[entry.status],
        next_attempt_at=entry.next_attempt_at if entry.status is OutboxStatus.QUEUED else None,
    )


def view_of(entry: OutboxEntry, subject: str) -> OutboxView:
    assert entry.id is not None
    recipients = recipients_of(entry)
    return OutboxView(
        id=entry.id,
        status=entry.status,
        subject=subject,
        from_address=entry.envelope_from,
        pending=recipients.pending,
        accepted=recipients.accepted,
        refused=recipients.refused,
        attempts=entry.attempts,
        next_attempt_at=entry.next_attempt_at,
        last_reply=entry.last_reply,
        last_error=entry.last_error,
        created_at=entry.created_at,
        message_id=entry.message_id,
        sent_copy=entry.sent_copy_status,
        sent_copy_detail=entry.sent_copy_error,
    )
