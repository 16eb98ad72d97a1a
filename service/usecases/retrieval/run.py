"""One run of a retrieval task, start to finish, under a lease its caller holds.

Loads the task (short read), signs in (an OAuth2 task with its access token,
refreshed once and retried once when the server refuses it:
service.usecases.oauth_sign_in), runs the protocol with a deadline in worker
threads (never holding a database session across network I/O), then, in one
transaction, records the task's health, its next run (the interval doubled per
consecutive failure, with jitter), pauses it after repeated sign-in failures,
releases the lease and writes the "Incoming mail" log entry with counts per
folder (none for a quiet run: nothing new, no error); with "Enable debug", the
protocol transcript too (credentials redacted).

What to import (service.domain.import_choices): the plans carry the task's folder selection and,
until a run completes without a connection failure or an interruption (`initial_done`, set with
the outcome; a POP3 run sets it already with the messages it leaves behind), its initial import choice.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service import metrics
from service.config import Settings
from service.domain.import_choices import InitialImport, InitialKind
from service.domain.oauth import AuthKind
from service.domain.outbound import OutboundPolicy
from service.domain.retrieval import (
    AUTH_FAILURES_BEFORE_PAUSE,
    BatchLimits,
    LocalTarget,
    RunProgress,
    RunResult,
    default_destination,
    next_run_delay,
)
from service.domain.values import LogLevel, LogSource, Protocol, RetrievalMethod, SpecialUse
from service.errors import (
    CredentialsRejected,
    FeatureDisabled,
    NeedsReconnect,
    RemoteError,
    TokenRejected,
    TributaryError,
)
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, RetrievalTask, User
from service.persistence.types import utcnow
from service.protocols.imap import ImapSession
from service.protocols.pop3 import Pop3Session
from service.protocols.transcript import Transcript
from service.usecases.domains import outbound_policy
from service.usecases.logs import record
from service.usecases.oauth_sign_in import mark_refused, with_token
from service.usecases.retrieval.filtering import InboxFilter, SpamCheck
from service.usecases.retrieval.imap_run import ImapPlan, retrieve_account
from service.usecases.retrieval.lease import Lease, LeaseLost, give_back
from service.usecases.retrieval.pop3_run import Pop3Plan, retrieve_pop3
from service.usecases.retrieval.store import Owner, resolve_folder
from service.usecases.retrieval_tasks import folder_selection, imap_account, load_task, pop3_account


async def check_runnable(*, db: Database, task_id: int, user_id: int | None) -> RetrievalTask:
    """The task, if this user may run it now: NotFound for another user's, FeatureDisabled
    when the domain's administrator turned retrieval off."""
    async with db.read() as session:
        task = await load_task(session, task_id, user_id)
        domain = (await session.exec(select(Domain).join(User).where(User.id == task.user_id))).one()
    if not domain.retrieval_enabled:
        raise FeatureDisabled(_switched_off(domain))
    return task


def _switched_off(domain: Domain) -> str:
    return f"Your administrator turned off IMAP/POP Retrieval for {domain.name}."


async def run_leased(
    *,
    db: Database,
    secret_box: SecretBox,
    settings: Settings,
    lease: Lease,
    stop: asyncio.Event | None = None,
    spread: float = 0.5,
    progress: RunProgress | None = None,
) -> RunResult:
    """One run of a task whose lease the caller holds. Remote failures come back in `errors`;
    the task's health, next run and the lease's release are recorded at the end. `progress`
    counts the messages committed so far, as each batch commits."""
    async with db.read() as session:
        task = await session.get(RetrievalTask, lease.task_id)
        domain = (await session.exec(select(Domain).join(User).where(User.id == task.user_id))).one() if task else None
    if task is None or domain is None:
        return RunResult(errors=["This retrieval task does not exist."])
    assert task.id is not None
    if not domain.retrieval_enabled:
        # Switched off after the claim: not the task's failure. Give the lease back with its health
        # and next run untouched, so it is due again as soon as the switch is back on.
        await give_back(db, lease)
        return RunResult(errors=[_switched_off(domain)])
    deadline = time.monotonic() + settings.run_deadline_seconds
    filtering = await _inbox_filter(db, task, settings) if task.apply_filters else None
    owner = Owner(
        task_id=task.id,
        user_id=task.user_id,
        lease=lease,
        stop=stop,
        filtering=filtering,
        progress=progress or RunProgress(),
    )
    result = RunResult()
    failure: TributaryError | None = None
    policy = outbound_policy(settings, domain)
    remote = _remote(task, secret_box, settings, policy, deadline, None)

    async def sign_in(token: str | None) -> None:
        """Connect and sign in (with `token` for an OAuth2 task); a refused token closes the session."""
        nonlocal remote
        remote = _remote(task, secret_box, settings, policy, deadline, token)
        await asyncio.to_thread(remote.connect)
        try:
            await asyncio.to_thread(remote.login)
        except TokenRejected:
            await asyncio.to_thread(remote.close)
            raise

    batch = BatchLimits(settings.retrieval_batch_messages, settings.retrieval_batch_bytes)
    started = time.monotonic()
    try:
        if task.auth is AuthKind.OAUTH2:
            await with_token(
                db=db, settings=settings, secret_box=secret_box, kind="retrieval", target_id=task.id, sign_in=sign_in
            )
        else:
            await sign_in(None)
        if isinstance(remote, ImapSession):
            await retrieve_account(db, remote, _imap_plan(task, owner, domain, batch), result)
        else:
            await retrieve_pop3(db, remote, _pop3_plan(task, owner, domain, batch), result)
    except (RemoteError, FeatureDisabled, LeaseLost) as exc:  # FeatureDisabled: OAuth2 sign-in turned off
        failure = exc
        result.errors.append(exc.message)
    finally:
        await asyncio.to_thread(remote.close)
    result.interrupted = stop is not None and stop.is_set()
    metrics.record_run(task.protocol.value, result, time.monotonic() - started)
    if not isinstance(failure, LeaseLost):  # the new holder records its own outcome
        await _record_outcome(db, task, result, failure, remote.transcript, lease, settings, spread)
    return result


def _remote(
    task: RetrievalTask,
    secret_box: SecretBox,
    settings: Settings,
    policy: OutboundPolicy,
    deadline: float,
    token: str | None,
) -> ImapSession | Pop3Session:
    """A session (not connected yet) to the task's server, signing in with the password or `token`."""
    if task.protocol is Protocol.IMAP:
        account = imap_account(task, secret_box, settings, policy=policy, oauth_token=token)
        return ImapSession(account, deadline=deadline)
    return Pop3Session(pop3_account(task, secret_box, settings, policy=policy, oauth_token=token), deadline=deadline)


async def _inbox_filter(db: Database, task: RetrievalTask, settings: Settings) -> InboxFilter:
    """ "Apply spam and content filtering": the user's Inbox (mail arriving there is filtered) and
    the administrator's spamd, if any, with its failure state for this run."""
    inbox_id = await resolve_folder(db, task.user_id, LocalTarget(SpecialUse.INBOX, ""))
    return InboxFilter(inbox_id=inbox_id, spamd=SpamCheck.from_settings(settings))


def initial_choice(task: RetrievalTask) -> InitialImport | None:
    """The initial import still to apply: None once a run completed, or when it is "all"."""
    if task.initial_done:
        return None
    initial = InitialImport.parse(task.initial)
    return None if initial.kind is InitialKind.ALL else initial


def _imap_plan(task: RetrievalTask, owner: Owner, domain: Domain, batch: BatchLimits) -> ImapPlan:
    return ImapPlan(
        owner=owner,
        transfer=task.folder_transfer,
        destination=task.destination_folder or default_destination(task.name, task.username, task.host),
        max_message_bytes=domain.max_message_bytes,
        batch=batch,
        selection=folder_selection(task),
        initial=initial_choice(task),
    )


def _pop3_plan(task: RetrievalTask, owner: Owner, domain: Domain, batch: BatchLimits) -> Pop3Plan:
    """POP3 brings only the inbox, into the destination folder (Inbox when none is set)."""
    target = (
        LocalTarget(None, task.destination_folder) if task.destination_folder else LocalTarget(SpecialUse.INBOX, "")
    )
    return Pop3Plan(
        owner=owner,
        target=target,
        leave_on_server=task.leave_on_server,
        delete_after_days=task.delete_after_days,
        max_message_bytes=domain.max_message_bytes,
        batch=batch,
        initial=initial_choice(task),
    )


async def _record_outcome(
    db: Database,
    task: RetrievalTask,
    result: RunResult,
    failure: TributaryError | None,
    transcript: Transcript | None,
    lease: Lease,
    settings: Settings,
    spread: float,
) -> None:
    """Health fields, the next run, the lease's release and the run's log entries, in one transaction."""
    assert task.id is not None
    complete = failure is None and not result.interrupted  # every folder was visited: the initial import is done
    async with db.write() as session:
        await record_outcome_in(
            session, task.id, result, failure, transcript, lease, settings, spread, initial_complete=complete
        )


async def record_outcome_in(
    session: AsyncSession,
    task_id: int,
    result: RunResult,
    failure: TributaryError | None,
    transcript: Transcript | None,
    lease: Lease,
    settings: Settings,
    spread: float,
    *,
    keep_next_run: bool = False,
    initial_complete: bool = False,
) -> None:
    """_record_outcome in the caller's transaction. `keep_next_run`: leave the next poll where it
    was (push's fast path fetched INBOX only; the poll at the interval still covers the others)."""
    now = utcnow()
    fresh = await session.get(RetrievalTask, task_id)
    if fresh is None:  # deleted while it ran
        return
    if fresh.lease_owner == lease.owner:
        fresh.lease_owner = None
        fresh.lease_expires_at = None
    fresh.last_run_at = now
    if initial_complete:
        fresh.initial_done = True
    if keep_next_run:
        pass  # push's fast path fetched INBOX only: the task's health (errors, pauses) is the polls' to say
    elif result.ok:
        fresh.last_success_at = now
        fresh.last_error = None
        fresh.failing_since = None
        fresh.consecutive_failures = 0
        fresh.auth_failures = 0
        fresh.needs_action = False
    else:
        fresh.last_error = result.errors[0]
        fresh.failing_since = fresh.failing_since or now
        fresh.consecutive_failures += 1
        if isinstance(failure, NeedsReconnect):
            # The provider refused the refresh: access_token_for set "reconnect" (the dispatcher skips
            # the task until Reconnect); counting it towards the password pause would say the wrong thing.
            fresh.needs_action = True
        elif isinstance(failure, TokenRejected):
            mark_refused(fresh, failure.message)  # a freshly refreshed token refused too
        elif isinstance(failure, CredentialsRejected):
            fresh.auth_failures += 1
            fresh.needs_action = True
            if fresh.auth_failures >= AUTH_FAILURES_BEFORE_PAUSE:
                fresh.paused_reason = (
                    f"Paused after {fresh.auth_failures} failed sign-ins to {fresh.host}, so that the "
                    "remote account is not locked. Correct the password, then resume the task."
                )
    delay = next_run_delay(settings.retrieval_interval, fresh.consecutive_failures, settings.retrieval_jitter, spread)
    if not keep_next_run:
        fresh.next_run_at = now + timedelta(seconds=delay) if fresh.method is RetrievalMethod.AUTOMATIC else None
    session.add(fresh)
    if not result.ok or result.imported or result.skipped:
        # A quiet run (nothing new, no error) writes no entry: idle tasks would otherwise bury
        # everything else in Logs every few minutes. The task row still shows its last run.
        level = LogLevel.INFO if result.ok else LogLevel.ERROR if failure else LogLevel.WARNING
        text = result.summary() + ("" if result.ok else " " + " ".join(result.errors))
        auth_source = LogSource.IMAP_AUTH if fresh.protocol is Protocol.IMAP else LogSource.POP3_AUTH
        source = auth_source if isinstance(failure, CredentialsRejected) else LogSource.INCOMING
        record(session, source=source, level=level, text=text, user_id=fresh.user_id, retrieval_task_id=fresh.id)
    if fresh.paused_reason and isinstance(failure, CredentialsRejected):
        record(
            session,
            source=LogSource.SCHEDULER,
            level=LogLevel.WARNING,
            text=fresh.paused_reason,
            user_id=fresh.user_id,
            retrieval_task_id=fresh.id,
        )
    if transcript is not None and transcript.lines:
        record(
            session,
            source=LogSource.INCOMING,
            level=LogLevel.DEBUG,
            text=transcript.text(),
            user_id=fresh.user_id,
            retrieval_task_id=fresh.id,
        )
