"""Recording what one attempt achieved, in the caller's write transaction.

- The final "." got 250: accepted recipients are done for good; permanently
  refused ones (5yz) are reported; temporarily refused ones (4yz) stay pending
  and the entry is queued again for them alone.
- Nobody pending any more: "sent" (the local copy moves from Outbox to Sent, or
  is deleted when the account keeps no copies), or "failed" if nobody accepted.
- 4yz or a lost connection before the final ".": queued with backoff, failed
  once the 24 hours are over. 5yz, rejected credentials, TLS failures: failed,
  the server's words kept.
- An OAuth2 account the provider no longer signs in (NeedsReconnect, or a
  fresh token refused too): the entry waits, queued, until Reconnect.
- No token because of the administrator's set-up (ProviderMisconfigured: an
  expired client secret, an unusable discovery document, the provider or
  OAuth2 sign-in turned off): nothing was sent; the entry waits, queued, the
  attempt not counted, and the account is not "needs action".
- Lost after the final ".": "unknown", never retried.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service import metrics
from service.domain.oauth import CredentialStatus
from service.domain.outbox import GIVE_UP_AFTER, DeliveryReport, OutboxStatus, SendResult, next_retry
from service.domain.values import LogLevel, LogSource, SpecialUse
from service.errors import (
    CredentialsRejected,
    MessageRejected,
    NeedsReconnect,
    ProviderMisconfigured,
    RemoteError,
    ServerUnavailable,
    TokenRejected,
)
from service.persistence.mailstore import ensure_special_folders
from service.persistence.tables import Message, OutboxEntry, SmtpAccount
from service.protocols import smtp
from service.protocols.transcript import Transcript
from service.usecases.logs import record
from service.usecases.oauth_sign_in import mark_refused
from service.usecases.sending.copy_plan import start_copy
from service.usecases.sending.entries import recipients_of, result_of, store_recipients

if TYPE_CHECKING:
    from service.usecases.sending.attempt import Job

Outcome = DeliveryReport | RemoteError
RECONNECT_RECHECK = timedelta(minutes=1)  # how often an entry waiting for Reconnect is looked at (no network)


def _log(session: AsyncSession, job: Job, level: LogLevel, text: str, source: LogSource = LogSource.OUTGOING) -> None:
    record(session, source=source, level=level, text=text, user_id=job.user_id, smtp_account_id=job.account_id)


def _about(job: Job) -> str:
    return f"“{job.subject}”" if job.subject else "a message without subject"


def _health(account: SmtpAccount | None, now: datetime, error: str | None, *, needs_action: bool = False) -> None:
    """The account's row health: last use, last success, and the error that makes it fail now."""
    if account is None:
        return
    account.last_used_at = now
    if error is None:
        account.last_success_at = now
        account.last_error = None
        account.failing_since = None
        account.needs_action = False
    else:
        account.last_error = error
        account.failing_since = account.failing_since or now
        account.needs_action = account.needs_action or needs_action


def waiting_text(account: SmtpAccount) -> str:
    """Why an entry through an OAuth2 account that cannot sign in now waits."""
    if account.oauth_status is CredentialStatus.PENDING:
        return f"Waiting until the sign-in for {account.email_address or 'this SMTP account'} is finished."
    return (
        f"Waiting until {account.email_address} is reconnected (SMTP Accounts, Reconnect): "
        "the message goes out after that."
    )


def wait_for_reconnect(session: AsyncSession, entry: OutboxEntry, account: SmtpAccount, now: datetime) -> SendResult:
    """Keep the entry queued while its account waits for Reconnect (or its first sign-in).

    No attempt is spent: the entry is looked at again every RECONNECT_RECHECK (no network while the
    account is not signed in), and its 24 hours of retries start over once it can go."""
    text = waiting_text(account)
    entry.status = OutboxStatus.QUEUED
    entry.next_attempt_at = now + RECONNECT_RECHECK
    entry.give_up_at = max(entry.give_up_at, now + GIVE_UP_AFTER)
    entry.last_error = text
    entry.updated_at = now
    session.add(entry)
    return result_of(entry, text)


def wait_for_administrator(session: AsyncSession, entry: OutboxEntry, text: str, now: datetime) -> SendResult:
    """Keep the entry queued while the provider's set-up is broken (ProviderMisconfigured): nothing was
    sent, so the attempt is not counted and the 24 hours start over; looked at again every
    RECONNECT_RECHECK."""
    entry.status = OutboxStatus.QUEUED
    entry.attempts = max(entry.attempts - 1, 0)
    entry.next_attempt_at = now + RECONNECT_RECHECK
    entry.give_up_at = max(entry.give_up_at, now + GIVE_UP_AFTER)
    entry.last_error = f"Waiting: {text}"
    entry.updated_at = now
    session.add(entry)
    return result_of(entry, entry.last_error)


def _retry_or_fail(session: AsyncSession, entry: OutboxEntry, job: Job, text: str, now: datetime) -> SendResult:
    when = next_retry(give_up_at=entry.give_up_at, attempts=entry.attempts, now=now)
    entry.next_attempt_at = when
    if when is None:
        entry.status = OutboxStatus.FAILED
        entry.last_error = f"Tributary gave up after 24 hours. {text}"
        _log(session, job, LogLevel.ERROR, f"Gave up sending {_about(job)}: {text}")
        return result_of(entry)
    entry.status = OutboxStatus.QUEUED
    entry.last_error = text
    _log(session, job, LogLevel.WARNING, f"Could not send {_about(job)} yet: {text} Next attempt at {when:%H:%M} UTC.")
    return result_of(entry, f"{text} Tributary will try again at {when:%Y-%m-%d %H:%M} UTC.")


async def _file_copy(session: AsyncSession, entry: OutboxEntry, job: Job) -> None:
    """Outbox -> Sent (same bytes, so Sent holds what the server received plus the Bcc header), or delete."""
    message = await session.get(Message, entry.message_id) if entry.message_id is not None else None
    if message is not None:
        if job.save_copy:
            folders = await ensure_special_folders(session, entry.user_id)
            sent_folder = folders[SpecialUse.SENT].id
            assert sent_folder is not None
            message.folder_id = sent_folder
            session.add(message)
        else:
            entry.message_id = None
            await session.delete(message)
    original = await session.get(Message, entry.in_reply_to_message_id) if entry.in_reply_to_message_id else None
    if original is not None and original.user_id == entry.user_id:
        original.answered = True
        session.add(original)


async def _after_report(
    session: AsyncSession, entry: OutboxEntry, job: Job, report: DeliveryReport, now: datetime
) -> SendResult:
    host = job.endpoint.host
    recipients = recipients_of(entry).settle(report)
    store_recipients(entry, recipients)
    first_refusal = next(iter(report.refused.values()), None)
    entry.last_reply = str(report.reply or first_refusal) if (report.reply or first_refusal) else entry.last_reply
    refused = "; ".join(f"{address}: {reason}" for address, reason in recipients.refused.items())
    if recipients.pending:
        if report.reply is not None:
            _log(session, job, LogLevel.INFO, f"Sent {_about(job)} to {', '.join(report.accepted)} through {host}.")
            return _retry_or_fail(session, entry, job, f"{host} did not accept every recipient yet ({refused}).", now)
        return _retry_or_fail(session, entry, job, f"{host} refused every recipient for now ({refused}).", now)
    entry.next_attempt_at = None
    if not recipients.accepted:
        entry.status = OutboxStatus.FAILED
        entry.last_error = f"{host} refused every recipient ({refused})."
        _log(session, job, LogLevel.ERROR, f"Could not send {_about(job)}: {entry.last_error}")
        return result_of(entry)
    entry.status = OutboxStatus.SENT
    metrics.SENT.inc()
    if job.sent_copy is not None:
        start_copy(entry, job.sent_copy, now)
    entry.last_error = f"{host} refused some recipients ({refused})." if refused else None
    await _file_copy(session, entry, job)
    if report.reply is not None:
        text = f"Sent {_about(job)} to {', '.join(report.accepted)} through {host} ({report.reply})."
        _log(session, job, LogLevel.INFO, text)
    if refused:
        _log(session, job, LogLevel.WARNING, f"{_about(job).capitalize()} was not delivered to: {refused}.")
    detail = f"Sent to {', '.join(recipients.accepted)}." + (f" Refused: {refused}." if refused else "")
    return result_of(entry, detail)


async def settle(
    session: AsyncSession, job: Job, outcome: Outcome, transcript: Transcript, now: datetime
) -> SendResult:
    """Record one attempt's outcome; returns the entry's new state."""
    entry = (await session.exec(select(OutboxEntry).where(OutboxEntry.id == job.entry_id).with_for_update())).one()
    account = await session.get(SmtpAccount, job.account_id) if job.account_id is not None else None
    entry.updated_at = now
    if isinstance(outcome, DeliveryReport):
        result = await _after_report(session, entry, job, outcome, now)
        _health(account, now, None)
    elif isinstance(outcome, smtp.DeliveryUnknown):
        entry.status = OutboxStatus.UNKNOWN
        entry.next_attempt_at = None
        entry.last_error = outcome.message
        _log(session, job, LogLevel.ERROR, f"Delivery of {_about(job)} is unknown: {outcome.message}")
        result = result_of(entry)
        _health(account, now, outcome.message)
    elif isinstance(outcome, (NeedsReconnect, TokenRejected)) and account is not None:
        # The provider refused the refresh (the account is in "reconnect" already), or refused a fresh
        # token too: the user must Reconnect; the message waits for that instead of failing.
        if isinstance(outcome, TokenRejected):
            mark_refused(account, outcome.message)
        _log(session, job, LogLevel.ERROR, outcome.message, LogSource.SMTP_AUTH)
        result = wait_for_reconnect(session, entry, account, now)
        account.last_used_at = now
    elif isinstance(outcome, ProviderMisconfigured):
        _log(session, job, LogLevel.ERROR, outcome.message, LogSource.SMTP_AUTH)
        result = wait_for_administrator(session, entry, outcome.message, now)
        _health(account, now, outcome.message)
    elif isinstance(outcome, ServerUnavailable):
        reply = getattr(outcome, "reply", None)
        entry.last_reply = str(reply) if reply is not None else entry.last_reply
        result = _retry_or_fail(session, entry, job, outcome.message, now)
        _health(account, now, outcome.message if reply is None else None)
    else:
        reply = getattr(outcome, "reply", None)
        entry.last_reply = str(reply) if reply is not None else entry.last_reply
        entry.status = OutboxStatus.FAILED
        entry.next_attempt_at = None
        entry.last_error = outcome.message
        if isinstance(outcome, CredentialsRejected):
            _log(session, job, LogLevel.ERROR, outcome.message, LogSource.SMTP_AUTH)
        _log(session, job, LogLevel.ERROR, f"Could not send {_about(job)}: {outcome.message}")
        result = result_of(entry)
        is_account_problem = not isinstance(outcome, MessageRejected)
        _health(
            account,
            now,
            outcome.message if is_account_problem else None,
            needs_action=isinstance(outcome, CredentialsRejected),
        )
    if job.debug:
        _log(session, job, LogLevel.DEBUG, f"SMTP session with {job.endpoint.host}:\n{transcript.text()}")
    session.add(entry)
    if account is not None:
        session.add(account)
    return result
