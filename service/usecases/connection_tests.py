"""Test Connection: the one use case behind every "Test Connection", for retrieval tasks and SMTP
accounts, saved or as typed in a form, whichever face asks (settings pages, JSON API, CLI).

A test makes Tributary open connections on someone's behalf, so every test passes the same
gates, in this order, here and nowhere else:

1. what is tested is checked: settings as typed are validated, a stored record must belong to
   the acting user (another user's answers NotFound; the operator, acting user None, sees all);
2. the owner's domain must have the feature turned on (FeatureDisabled in the administrator's
   words otherwise);
3. the rate limit (`rate_limit`): the acting user may start `TESTS_PER_MINUTE` tests a minute,
   one budget for retrieval tasks and SMTP accounts; the operator is not limited;
4. the outbound policy (`service.domain.outbound`): the owner's domain's allowed hosts merged
   with TRIBUTARY_OUTBOUND_ALLOW. Each kind's probe receives that policy as its only way to
   reach a server, and only this function builds it, after counting the test.

The probes themselves are the protocol adapters' (`imap.test_connection`, `pop3.test_connection`,
`smtp.probe`): each step (resolve, connect, TLS, greeting, capabilities, login, ...) timed, a
failing step ending the report. Nothing a server answers is raised; refusals of the gates are.
A saved task or account that signs in with OAuth2 is probed with its access token, refreshed once
and probed again when the server refuses the sign-in (`_with_token`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlmodel import select

from service.config import Settings
from service.domain.connection_test import ConnectionReport, Step
from service.domain.oauth import AuthKind
from service.domain.outbound import STRICT, OutboundPolicy
from service.domain.smtp_accounts import SmtpAccountInput
from service.domain.values import LogLevel, LogSource, Protocol, Security
from service.errors import FeatureDisabled, InvalidInput, NeedsReconnect, NotFound, RemoteError
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, RetrievalTask, User
from service.protocols import imap, pop3, smtp
from service.protocols.transcript import Transcript
from service.usecases import retrieval_tasks, smtp_accounts
from service.usecases.domains import outbound_policy
from service.usecases.logs import record
from service.usecases.oauth import access_token_for
from service.usecases.rate_limit import check_test_connection
from service.usecases.retrieval_tasks import NewTask


@dataclass(frozen=True, slots=True)
class SavedTask:
    """A stored retrieval task, as saved."""

    task_id: int


@dataclass(frozen=True, slots=True)
class TaskSettings:
    """A retrieval task's settings as typed: a new task, or (with `task_id`) the Edit form of a
    stored one, where an empty password means the stored one."""

    new: NewTask
    task_id: int | None = None


@dataclass(frozen=True, slots=True)
class SavedSmtpAccount:
    """A stored SMTP account, as saved."""

    account_id: int


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """An SMTP account's settings as typed: a new account, or (with `account_id`) the Edit form of
    a stored one, where an empty password means the stored one."""

    account: SmtpAccountInput
    password: str | None = None
    account_id: int | None = None


Subject = SavedTask | TaskSettings | SavedSmtpAccount | SmtpSettings
Probe = Callable[[OutboundPolicy], Awaitable[ConnectionReport]]


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A checked subject: whose domain it is tested for, and the probe that will run under its policy."""

    owner_id: int
    smtp: bool
    probe: Probe


async def run_connection_test(
    *, db: Database, secret_box: SecretBox, settings: Settings, user_id: int | None, subject: Subject
) -> ConnectionReport:
    """Test Connection for `subject`, acting as `user_id` (None: the operator). Raises InvalidInput,
    NotFound, FeatureDisabled or TooManyAttempts (see the module's gates); otherwise the steps."""
    if isinstance(subject, SavedTask | TaskSettings):
        prepared = await _retrieval(db, secret_box, settings, user_id, subject)
    else:
        prepared = await _smtp(db, secret_box, settings, user_id, subject)
    async with db.read() as session:
        domain = (await session.exec(select(Domain).join(User).where(User.id == prepared.owner_id))).first()
    if domain is None:
        raise NotFound("This user does not exist.")
    if prepared.smtp and not domain.smtp_accounts_enabled:
        raise FeatureDisabled(smtp_accounts.disabled_message(domain))
    if not prepared.smtp and not domain.retrieval_enabled:
        raise FeatureDisabled(retrieval_tasks.disabled_message(domain.name))
    check_test_connection(db, user_id)
    return await prepared.probe(outbound_policy(settings, domain))


def _acting_owner(user_id: int | None) -> int:
    """Unsaved settings are tested for the acting user's domain: the operator must act as a user."""
    if user_id is None:
        raise InvalidInput("Settings that are not saved are tested for a user: name one.")
    return user_id


async def _retrieval(
    db: Database, secret_box: SecretBox, settings: Settings, user_id: int | None, subject: SavedTask | TaskSettings
) -> _Prepared:
    row: RetrievalTask
    stored: RetrievalTask | None = None
    if isinstance(subject, SavedTask):
        async with db.read() as session:
            row = await retrieval_tasks.load_task(session, subject.task_id, user_id)
    elif subject.task_id is None:
        retrieval_tasks.check_task(subject.new)
        row = retrieval_tasks.task_row(_acting_owner(user_id), subject.new, secret_box)
    else:
        retrieval_tasks.check_task(subject.new, password_required=False)
        async with db.read() as session:
            stored = await retrieval_tasks.load_task(session, subject.task_id, user_id)
        row = retrieval_tasks.task_row(stored.user_id, subject.new, secret_box)
        if not subject.new.password:
            row.password_encrypted = stored.password_encrypted

    oauth_id = row.id if isinstance(subject, SavedTask) else subject.task_id
    if stored is not None and stored.auth is AuthKind.OAUTH2:
        row.auth = stored.auth  # the Edit form of an OAuth2 task: its server settings with its sign-in

    def probe_with(policy: OutboundPolicy) -> Callable[[str | None], Awaitable[ConnectionReport]]:
        async def run(token: str | None) -> ConnectionReport:
            if row.protocol is Protocol.IMAP:
                account = retrieval_tasks.imap_account(row, secret_box, settings, policy=policy, oauth_token=token)
                return await asyncio.to_thread(imap.test_connection, account)
            pop3_account = retrieval_tasks.pop3_account(row, secret_box, settings, policy=policy, oauth_token=token)
            return await asyncio.to_thread(pop3.test_connection, pop3_account)

        return run

    async def probe(policy: OutboundPolicy) -> ConnectionReport:
        if row.auth is AuthKind.OAUTH2 and oauth_id is not None:
            report = await _with_token(db, settings, secret_box, "retrieval", oauth_id, probe_with(policy))
        else:
            report = await probe_with(policy)(None)
        if row.security is Security.NONE:
            warn_if_starttls_offered(report, row.host, "task", oauth=row.auth is AuthKind.OAUTH2)
        return report

    return _Prepared(owner_id=row.user_id, smtp=False, probe=probe)


SIGN_IN_STEPS = frozenset({"login", "auth"})
CLEARTEXT_STEP = "cleartext"
_STARTTLS_OFFERED = re.compile(r"\bSTARTTLS\b|\bSTLS offered\b", re.IGNORECASE)


def warn_if_starttls_offered(report: ConnectionReport, host: str, noun: str, *, oauth: bool = False) -> None:
    """With security None, a server that offers STARTTLS (IMAP CAPABILITY, RFC 2595 section 3.1;
    POP3 CAPA STLS, RFC 2595 section 4; SMTP EHLO STARTTLS, RFC 3207) could have protected the
    sign-in: add a warning step after the one that listed it. The test still succeeds."""
    for index, found in enumerate(report.steps):
        if found.ok and found.name in ("capabilities", "ehlo") and _STARTTLS_OFFERED.search(found.detail):
            secret = "sign-in token" if oauth else "password"
            warning = Step(
                CLEARTEXT_STEP,
                True,
                0.0,
                f"{host} offers STARTTLS, but this {noun} is set to send the {secret} in clear (security None).",
                "Choose STARTTLS as the security: the same port, encrypted before the password is sent.",
                warning=True,
            )
            report.steps.insert(index + 1, warning)
            return


async def _with_token(
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    kind: str,
    target_id: int,
    run: Callable[[str | None], Awaitable[ConnectionReport]],
) -> ConnectionReport:
    """The probe of an OAuth2 task or account: with its access token, and once more with a refreshed
    one when the server refused the sign-in (as retrieval and sending do). A token that cannot be had
    (Reconnect needed, the provider unreachable) is a failed first step, not an error."""

    async def token(force_refresh: bool) -> str | ConnectionReport:
        try:
            return await access_token_for(
                db=db,
                settings=settings,
                secret_box=secret_box,
                kind=kind,
                target_id=target_id,
                force_refresh=force_refresh,
            )
        except (RemoteError, FeatureDisabled) as exc:
            hint = "Use Reconnect to sign in with the provider again." if isinstance(exc, NeedsReconnect) else ""
            return ConnectionReport([Step("token", False, 0.0, exc.message, hint)])

    first = await token(False)
    if isinstance(first, ConnectionReport):
        return first
    report = await run(first)
    failed = next((step for step in report.steps if not step.ok), None)
    if failed is None or failed.name not in SIGN_IN_STEPS:
        return report
    fresh = await token(True)
    return fresh if isinstance(fresh, ConnectionReport) else await run(fresh)


async def _smtp(
    db: Database,
    secret_box: SecretBox,
    settings: Settings,
    user_id: int | None,
    subject: SavedSmtpAccount | SmtpSettings,
) -> _Prepared:
    account_id: int | None
    if isinstance(subject, SavedSmtpAccount):
        async with db.read() as session:
            row = await smtp_accounts.load_account(session, subject.account_id, user_id)
        endpoint = smtp_accounts.endpoint_for(row, secret_box=secret_box, settings=settings, policy=STRICT)
        owner_id, account_id, debug = row.user_id, subject.account_id, row.enable_debug
        oauth = row.auth is AuthKind.OAUTH2
    else:
        checked = subject.account.checked()
        assert checked.port is not None
        password, account_id, debug = subject.password, subject.account_id, False
        oauth = False
        if account_id is None:
            owner_id = _acting_owner(user_id)
        else:
            async with db.read() as session:
                stored = await smtp_accounts.load_account(session, account_id, user_id)
            owner_id = stored.user_id
            oauth = stored.auth is AuthKind.OAUTH2
            if not password and stored.password_encrypted and checked.auth_required:
                password = secret_box.decrypt(stored.password_encrypted)
        endpoint = smtp.SmtpEndpoint(
            host=checked.host,
            port=checked.port,
            security=checked.security,
            verify_certificate=checked.verify_certificate,
            auth_required=checked.auth_required,
            username=checked.username,
            password=password or "",
            timeout_seconds=checked.timeout_seconds,
            extra_ca_file=settings.extra_ca_file,
            policy=STRICT,
        )

    async def probe(policy: OutboundPolicy) -> ConnectionReport:
        allowed = dataclasses.replace(endpoint, policy=policy)
        transcript = Transcript(secrets=(allowed.password,))

        async def run(token: str | None) -> ConnectionReport:
            signing_in = allowed if token is None else dataclasses.replace(allowed, oauth_token=token)
            return await smtp.probe(signing_in, transcript=transcript)

        if oauth and account_id is not None:
            report = await _with_token(db, settings, secret_box, "smtp", account_id, run)
        else:
            report = await run(None)
        if allowed.security is Security.NONE and (allowed.auth_required or oauth):
            warn_if_starttls_offered(report, allowed.host, "account", oauth=oauth)
        if debug:  # the account's "Enable debug": the transcript, credentials redacted
            async with db.write() as session:
                record(
                    session,
                    source=LogSource.OUTGOING,
                    level=LogLevel.DEBUG,
                    text=f"Test Connection with {allowed.host}:\n{transcript.text()}",
                    user_id=owner_id,
                    smtp_account_id=account_id,
                )
        return report

    return _Prepared(owner_id=owner_id, smtp=True, probe=probe)
