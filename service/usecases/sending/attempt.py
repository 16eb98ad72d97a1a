"""One delivery attempt of an outbox entry: claim it, talk SMTP, record what happened.

Three steps, and no database session is held across the network:

1. claim, in one write transaction (the row locked: FOR UPDATE on PostgreSQL,
   BEGIN IMMEDIATE on SQLite): the entry must be queued and due, its account
   (or the relay) still usable, and the account's messages-per-minute limit may
   move it later instead. It becomes "sending", with one more attempt.
   An entry through an OAuth2 account waiting for Reconnect (or its first
   sign-in) stays queued instead (sending.outcome.wait_for_reconnect).
2. one SMTP session (protocols.smtp) to the recipients not yet accepted; an
   OAuth2 account signs in with its access token (refreshed once and retried
   once when the server refuses it: service.usecases.oauth_sign_in).
3. record, in one write transaction: recipients settled, the new status and
   retry time, the local copy moved from Outbox to Sent (or deleted), the
   account's health and the log entries, all committed together.
4. once sent, the copy for the remote Sent folder when the account names a
   retrieval task (sending.sent_copy) becomes due at once: a user's send starts it in the
   background after answering (sending.background), the outbox round in its copy step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.domain.oauth import AuthKind, CredentialStatus
from service.domain.outbox import RATE_WINDOW, DeliveryReport, OutboxStatus, SendResult, rate_limited_until
from service.domain.values import LogLevel, LogSource
from service.errors import (
    CredentialsRejected,
    FeatureDisabled,
    NotFound,
    ProviderMisconfigured,
    RemoteError,
    TributaryError,
)
from service.persistence.database import Database
from service.persistence.mailstore import read_body
from service.persistence.secrets import SecretBox, SecretKeyError
from service.persistence.tables import Domain, Message, OutboxEntry, SmtpAccount, User
from service.protocols import smtp
from service.protocols.transcript import Transcript
from service.usecases.domains import oauth_disabled_message, outbound_policy
from service.usecases.logs import record
from service.usecases.oauth_sign_in import with_token
from service.usecases.sending.background import copy_in_background
from service.usecases.sending.copy_plan import CopyPlan, copy_plan
from service.usecases.sending.entries import recipients_of, result_of
from service.usecases.sending.outcome import Outcome, settle, wait_for_reconnect
from service.usecases.sending.senders import relay_endpoint
from service.usecases.smtp_accounts import disabled_message, endpoint_for

log = logging.getLogger(__name__)
ACCOUNT_GONE = "The SMTP account this message was to go through was deleted."


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed entry: everything the SMTP session needs, read before it starts."""

    entry_id: int
    user_id: int
    account_id: int | None
    endpoint: smtp.SmtpEndpoint
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    subject: str
    debug: bool
    save_copy: bool
    oauth: bool = False  # sign in with the account's OAuth2 access token (got after the claim, outside it)
    sent_copy: CopyPlan | None = None  # the copy for the remote Sent folder, once delivery is over


def fail(session: AsyncSession, entry: OutboxEntry, text: str, now: datetime) -> SendResult:
    """Mark an entry failed for a reason found before any network I/O."""
    entry.status = OutboxStatus.FAILED
    entry.last_error = text
    entry.next_attempt_at = None
    entry.updated_at = now
    session.add(entry)
    record(
        session,
        source=LogSource.OUTGOING,
        level=LogLevel.ERROR,
        text=text,
        user_id=entry.user_id,
        smtp_account_id=entry.smtp_account_id,
    )
    return result_of(entry)


async def _route_problem(
    session: AsyncSession, entry: OutboxEntry, domain: Domain
) -> tuple[str | None, SmtpAccount | None]:
    if entry.via_relay:
        return (None if domain.relay_host else f"{domain.name} no longer has a company relay."), None
    if entry.smtp_account_id is None:
        return ACCOUNT_GONE, None
    query = select(SmtpAccount).where(SmtpAccount.id == entry.smtp_account_id).with_for_update()
    account = (await session.exec(query)).first()
    if account is None:
        return ACCOUNT_GONE, None
    if not domain.smtp_accounts_enabled:
        return disabled_message(domain), account
    if account.auth is AuthKind.OAUTH2 and not domain.oauth_enabled:
        return oauth_disabled_message(domain.name), account
    if not account.is_active:
        return f"The SMTP account {account.email_address} is turned off.", account
    return None, account


async def _claim(
    db: Database, secret_box: SecretBox, settings: Settings, entry_id: int, now: datetime
) -> Job | SendResult:
    async with db.write() as session:
        entry = (await session.exec(select(OutboxEntry).where(OutboxEntry.id == entry_id).with_for_update())).first()
        if entry is None:
            raise NotFound("This message is not in the outbox.")
        if entry.status is not OutboxStatus.QUEUED or (
            entry.next_attempt_at is not None and entry.next_attempt_at > now
        ):
            return result_of(entry)
        user = await session.get(User, entry.user_id)
        domain = await session.get(Domain, user.domain_id) if user is not None else None
        if domain is None:
            raise NotFound("This user does not exist.")
        problem, account = await _route_problem(session, entry, domain)
        message = await session.get(Message, entry.message_id) if entry.message_id is not None else None
        if problem is None and message is None:
            problem = "The message was removed from the Outbox before it was sent."
        if problem is not None:
            return fail(session, entry, problem, now)
        assert message is not None
        if account is not None and account.auth is AuthKind.OAUTH2 and account.oauth_status is not CredentialStatus.OK:
            return wait_for_reconnect(session, entry, account, now)
        if account is not None and account.messages_per_minute:
            recent = await session.exec(
                select(OutboxEntry.last_attempt_at).where(
                    OutboxEntry.smtp_account_id == account.id, col(OutboxEntry.last_attempt_at) > now - RATE_WINDOW
                )
            )
            until = rate_limited_until([t for t in recent if t], per_minute=account.messages_per_minute, now=now)
            if until is not None:
                entry.next_attempt_at = until
                entry.updated_at = now
                session.add(entry)
                return result_of(
                    entry,
                    f"Waiting for {account.email_address}'s limit of {account.messages_per_minute} messages a minute; "
                    f"it goes at {until:%H:%M:%S} UTC.",
                )
        raw = await read_body(session, message.id)
        try:
            if account is None:
                endpoint = relay_endpoint(domain, secret_box=secret_box, settings=settings)
            else:
                policy = outbound_policy(settings, domain)
                endpoint = endpoint_for(account, secret_box=secret_box, settings=settings, policy=policy)
        except SecretKeyError as exc:
            return fail(session, entry, exc.message, now)
        entry.status = OutboxStatus.SENDING
        entry.attempts += 1
        entry.last_attempt_at = now
        entry.updated_at = now
        session.add(entry)
        assert entry.id is not None
        return Job(
            entry_id=entry.id,
            user_id=entry.user_id,
            account_id=account.id if account is not None else None,
            endpoint=endpoint,
            sender=entry.envelope_from,
            recipients=recipients_of(entry).pending,
            data=raw[entry.data_offset :],
            subject=message.subject,
            debug=account.enable_debug if account is not None else False,
            save_copy=account.save_copy_in_sent if account is not None else True,
            oauth=account is not None and account.auth is AuthKind.OAUTH2,
            sent_copy=await copy_plan(session, account) if account is not None else None,
        )


async def attempt_delivery(
    *,
    db: Database,
    secret_box: SecretBox,
    settings: Settings,
    entry_id: int,
    now: datetime,
    pool: smtp.SessionPool | None = None,
    copy_after: bool = True,
) -> SendResult:
    """Try to send one outbox entry now, if it is due; returns what became of it.

    With a `pool`, the session to the entry's server is reused from (and left for) other entries.
    Once sent, its Sent copy (if any) is started in the background (`copy_after`), so a slow IMAP
    server never delays the answer; the outbox round passes False and makes due copies itself."""
    job = await _claim(db, secret_box, settings, entry_id, now)
    if isinstance(job, SendResult):
        return job
    transcript = Transcript(secrets=(job.endpoint.password,))
    outcome: Outcome
    deliver = pool.deliver if pool is not None else smtp.deliver

    async def send_with(token: str | None) -> DeliveryReport:
        endpoint = job.endpoint if token is None else replace(job.endpoint, oauth_token=token)
        return await deliver(
            endpoint, sender=job.sender, recipients=job.recipients, data=job.data, transcript=transcript
        )

    try:
        if job.oauth and job.account_id is not None:
            # A refused token fails at AUTH, before MAIL FROM: retrying with a refreshed one sends nothing twice.
            outcome = await with_token(
                db=db,
                settings=settings,
                secret_box=secret_box,
                kind="smtp",
                target_id=job.account_id,
                sign_in=send_with,
            )
        else:
            outcome = await send_with(None)
    except RemoteError as exc:
        outcome = exc
    except FeatureDisabled as exc:  # no token: OAuth2 sign-in or the provider turned off; nothing was sent
        outcome = ProviderMisconfigured(exc.message)
    except TributaryError as exc:  # getting the token failed otherwise: nothing was sent
        outcome = CredentialsRejected(exc.message)
    except Exception as exc:  # a bug, not a server's answer: the message may have gone, so never resend blindly
        log.exception("unexpected error while sending outbox entry %s", job.entry_id)
        outcome = smtp.DeliveryUnknown(
            f"An unexpected error ({type(exc).__name__}) interrupted sending, so whether the message was delivered "
            "is unknown. It will not be sent again unless you ask."
        )
    async with db.write() as session:
        result = await settle(session, job, outcome, transcript, now)
    copying = job.sent_copy is not None and job.sent_copy.skip is None and result.status is OutboxStatus.SENT
    if copying and copy_after:
        copy_in_background(db=db, secret_box=secret_box, settings=settings, entry_id=job.entry_id, now=now)
    return result
