"""The outbox's rules: statuses, what an SMTP reply means for each recipient, retry timing
and the per-minute send limit. Pure values and functions, no I/O.

RFC 5321 4.2.1: a reply's first digit says what to do. 2yz: done. 4yz (transient
negative): the same command may succeed later, so the message stays queued and
is retried with backoff. 5yz (permanent negative): retrying will not help, so the
recipient (or the whole message) has failed and the server's words are kept.
A retry only addresses recipients that have not been accepted yet, so nobody
receives a message twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class OutboxStatus(StrEnum):
    """Where an outgoing message stands.

    queued: waiting for its next attempt (``next_attempt_at``). sending: an attempt
    holds it. sent: every recipient accepted or refused for good, at least one
    accepted. failed: nobody will get it without the user's action. unknown: the
    connection was lost after the final "." and before the server's reply
    (RFC 5321 4.1.1.4), so it may have been delivered; it is never re-sent blindly.
    """

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"


class SentCopyStatus(StrEnum):
    """Where the copy for the remote Sent folder stands (issue 18), apart from delivery.

    Only an entry whose delivery is over ("sent") ever has a copy to make, so
    retrying the copy can never send the message again. pending: the next
    APPEND is due at ``next_attempt_at``. appending: an attempt holds it.
    done: the remote Sent folder has it (its UID kept when the server said).
    skipped: the provider files sent mail itself (the sentence says so), or the
    retrieval task went away. failed: given up; the words say why.
    """

    PENDING = "pending"
    APPENDING = "appending"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(hours=24)
RATE_WINDOW = timedelta(minutes=1)
# An attempt older than this still marked "sending" belongs to a process that died.
STALE_SENDING = timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """A server's reply: the three-digit code and its text (multi-line replies joined by spaces)."""

    code: int
    text: str

    @property
    def temporary(self) -> bool:
        """4yz: try again later (RFC 5321 4.2.1)."""
        return 400 <= self.code < 500

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.text.split())}".strip()


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one SMTP transaction achieved.

    ``accepted`` got the message (their RCPT was accepted and the final "." got
    250). ``refused`` maps each refused recipient to the server's reply. When
    every RCPT was refused no DATA was sent and ``reply`` is None.
    """

    accepted: tuple[str, ...]
    refused: Mapping[str, SmtpReply] = field(default_factory=dict)
    reply: SmtpReply | None = None


@dataclass(frozen=True, slots=True)
class Recipients:
    """Each recipient's fate so far. ``refused`` holds the latest reason for every recipient
    not accepted: for pending ones it is the temporary refusal that made them wait."""

    pending: tuple[str, ...]
    accepted: tuple[str, ...] = ()
    refused: Mapping[str, str] = field(default_factory=dict)

    def settle(self, report: DeliveryReport) -> Recipients:
        """The state after a transaction: accepted ones leave for good, permanent refusals
        leave with their reason, temporary refusals stay pending with theirs."""
        delivered = set(report.accepted) if report.reply is not None else set()
        pending: list[str] = []
        refused = {address: reason for address, reason in self.refused.items() if address not in delivered}
        for address in self.pending:
            if address in delivered:
                continue
            reply = report.refused.get(address)
            if reply is not None:
                refused[address] = str(reply)
                if not reply.temporary:
                    continue
            pending.append(address)
        accepted = self.accepted + tuple(a for a in self.pending if a in delivered)
        return Recipients(pending=tuple(pending), accepted=accepted, refused=refused)


def next_retry(*, give_up_at: datetime, attempts: int, now: datetime) -> datetime | None:
    """When to try again after `attempts` failed attempts: 1, 2, 4 ... minutes, at most an hour
    apart; None from `give_up_at` on (GIVE_UP_AFTER after queueing: the message then fails).
    The last attempt happens at the deadline itself."""
    deadline = give_up_at
    if now >= deadline:
        return None
    delay = min(FIRST_RETRY * (1 << min(max(attempts - 1, 0), 16)), LONGEST_RETRY)
    return min(now + delay, deadline)


def rate_limited_until(
    recent_attempts: Iterable[datetime], *, per_minute: int | None, now: datetime
) -> datetime | None:
    """None when another message may go now; else the moment the oldest attempt of the
    last minute leaves the window. Limits queue messages, they never fail them."""
    if not per_minute:
        return None
    window: list[datetime] = sorted(moment for moment in recent_attempts if now - RATE_WINDOW < moment <= now)
    if len(window) < per_minute:
        return None
    oldest_counted: datetime = window[-per_minute]
    return oldest_counted + RATE_WINDOW


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of a message after an attempt (or after being queued)."""

    outbox_id: int
    status: OutboxStatus
    refused: Mapping[str, str]
    detail: str
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutboxView:
    """One outbox entry as the faces show it."""

    id: int
    status: OutboxStatus
    subject: str
    from_address: str
    pending: tuple[str, ...]
    accepted: tuple[str, ...]
    refused: Mapping[str, str]
    attempts: int
    next_attempt_at: datetime | None
    last_reply: str | None
    last_error: str | None
    created_at: datetime
    message_id: int | None
    sent_copy: SentCopyStatus | None = None
    sent_copy_detail: str | None = None
