"""One run of a retrieval task, start to finish, whoever asked for it.

Loads the task (short read), runs the protocol with a deadline in worker
threads (never holding a database session across network I/O), then records
the task's health and one "Incoming mail" log entry with counts per folder; with
"Enable debug", the protocol transcript too (credentials redacted).
"""

from __future__ import annotations

import asyncio
import time

from sqlmodel import select

from service.config import Settings
from service.domain.retrieval import LocalTarget, RunResult, default_destination
from service.domain.values import LogLevel, LogSource, Protocol, SpecialUse
from service.errors import CredentialsRejected, FeatureDisabled, RemoteError
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, RetrievalTask, User
from service.persistence.types import utcnow
from service.protocols.imap import ImapSession
from service.protocols.pop3 import Pop3Session
from service.protocols.transcript import Transcript
from service.usecases.logs import record
from service.usecases.retrieval.imap_run import ImapPlan, retrieve_account
from service.usecases.retrieval.pop3_run import Pop3Plan, retrieve_pop3
from service.usecases.retrieval.store import Owner
from service.usecases.retrieval_tasks import imap_account, load_task, pop3_account


async def run_task(
    *, db: Database, secret_box: SecretBox, settings: Settings, task_id: int, user_id: int | None = None
) -> RunResult:
    """Retrieve new mail for one task now. Remote failures come back in `errors`, never raised."""
    async with db.read() as session:
        task = await load_task(session, task_id, user_id)
        domain = (await session.exec(select(Domain).join(User).where(User.id == task.user_id))).one()
    if not domain.retrieval_enabled:
        raise FeatureDisabled(f"Your administrator turned off IMAP/POP Retrieval for {domain.name}.")
    assert task.id is not None
    deadline = time.monotonic() + settings.run_deadline_seconds
    owner = Owner(task_id=task.id, user_id=task.user_id)
    result = RunResult()
    failure: RemoteError | None = None
    remote: ImapSession | Pop3Session
    if task.protocol is Protocol.IMAP:
        remote = ImapSession(imap_account(task, secret_box, settings), deadline=deadline)
    else:
        remote = Pop3Session(pop3_account(task, secret_box, settings), deadline=deadline)
    try:
        await asyncio.to_thread(remote.connect)
        await asyncio.to_thread(remote.login)
        if isinstance(remote, ImapSession):
            await retrieve_account(db, remote, _imap_plan(task, owner, domain), result)
        else:
            await retrieve_pop3(db, remote, _pop3_plan(task, owner, domain), result)
    except RemoteError as exc:
        failure = exc
        result.errors.append(exc.message)
    finally:
        await asyncio.to_thread(remote.close)
    await _record_outcome(db, task, result, failure, remote.transcript)
    return result


def _imap_plan(task: RetrievalTask, owner: Owner, domain: Domain) -> ImapPlan:
    return ImapPlan(
        owner=owner,
        transfer=task.folder_transfer,
        destination=task.destination_folder or default_destination(task.name, task.username, task.host),
        max_message_bytes=domain.max_message_bytes,
    )


def _pop3_plan(task: RetrievalTask, owner: Owner, domain: Domain) -> Pop3Plan:
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
    )


async def _record_outcome(
    db: Database, task: RetrievalTask, result: RunResult, failure: RemoteError | None, transcript: Transcript | None
) -> None:
    """Health fields on the task and the run's log entries, in one transaction."""
    now = utcnow()
    async with db.write() as session:
        fresh = await session.get(RetrievalTask, task.id)
        if fresh is None:  # deleted while it ran
            return
        fresh.last_run_at = now
        if result.ok:
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
            if isinstance(failure, CredentialsRejected):
                fresh.auth_failures += 1
                fresh.needs_action = True
        session.add(fresh)
        level = LogLevel.INFO if result.ok else LogLevel.ERROR if failure else LogLevel.WARNING
        text = result.summary() + ("" if result.ok else " " + " ".join(result.errors))
        auth_source = LogSource.IMAP_AUTH if fresh.protocol is Protocol.IMAP else LogSource.POP3_AUTH
        source = auth_source if isinstance(failure, CredentialsRejected) else LogSource.INCOMING
        record(session, source=source, level=level, text=text, user_id=fresh.user_id, retrieval_task_id=fresh.id)
        if transcript is not None and transcript.lines:
            record(
                session,
                source=LogSource.INCOMING,
                level=LogLevel.DEBUG,
                text=transcript.text(),
                user_id=fresh.user_id,
                retrieval_task_id=fresh.id,
            )
