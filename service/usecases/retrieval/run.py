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
from service.domain.retrieval import RunResult, default_destination
from service.domain.values import LogLevel, LogSource, Protocol
from service.errors import CredentialsRejected, FeatureDisabled, InvalidInput, RemoteError
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, RetrievalTask, User
from service.persistence.types import utcnow
from service.protocols.imap import ImapSession
from service.protocols.transcript import Transcript
from service.usecases.logs import record
from service.usecases.retrieval.imap_run import ImapPlan, retrieve_account
from service.usecases.retrieval.store import Owner
from service.usecases.retrieval_tasks import imap_account, load_task


async def run_task(
    *, db: Database, secret_box: SecretBox, settings: Settings, task_id: int, user_id: int | None = None
) -> RunResult:
    """Retrieve new mail for one task now. Remote failures come back in `errors`, never raised."""
    async with db.read() as session:
        task = await load_task(session, task_id, user_id)
        domain = (await session.exec(select(Domain).join(User).where(User.id == task.user_id))).one()
    if not domain.retrieval_enabled:
        raise FeatureDisabled(f"Your administrator turned off IMAP/POP Retrieval for {domain.name}.")
    if task.protocol is not Protocol.IMAP:
        raise InvalidInput("POP3 retrieval is not available yet.")
    assert task.id is not None
    deadline = time.monotonic() + settings.run_deadline_seconds
    account = imap_account(task, secret_box, settings)
    plan = ImapPlan(
        owner=Owner(task_id=task.id, user_id=task.user_id),
        transfer=task.folder_transfer,
        destination=task.destination_folder or default_destination(task.name, task.username, task.host),
        max_message_bytes=domain.max_message_bytes,
    )
    result = RunResult()
    failure: RemoteError | None = None
    remote = ImapSession(account, deadline=deadline)
    try:
        await asyncio.to_thread(remote.connect)
        await asyncio.to_thread(remote.login)
        await retrieve_account(db, remote, plan, result)
    except RemoteError as exc:
        failure = exc
        result.errors.append(exc.message)
    finally:
        await asyncio.to_thread(remote.close)
    await _record_outcome(db, task, result, failure, remote.transcript)
    return result


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
        source = LogSource.IMAP_AUTH if isinstance(failure, CredentialsRejected) else LogSource.INCOMING
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
