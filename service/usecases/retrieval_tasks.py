"""Email Retrieval tasks: create, list, delete, and Test Connection.

Tasks belong to a user: every function takes the acting user's id and treats
another user's task as missing. `user_id=None` is the operator's scope (the
CLI), which sees every task. Passwords are encrypted before they are stored
and never leave this module in a view.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.domain.connection_test import ConnectionReport
from service.domain.retrieval import TaskView
from service.domain.values import FolderTransfer, Protocol, RetrievalMethod, Security, default_port
from service.errors import FeatureDisabled, InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, RetrievalTask, User
from service.persistence.types import utcnow
from service.protocols import imap, pop3

MAX_HOST_LENGTH = 253


@dataclass(frozen=True, slots=True)
class NewTask:
    """What a user fills in on "New Retrieval Task"."""

    protocol: Protocol
    host: str
    username: str
    password: str
    security: Security = Security.SSL
    port: int | None = None
    name: str = ""
    verify_certificate: bool = True
    method: RetrievalMethod = RetrievalMethod.AUTOMATIC
    folder_transfer: FolderTransfer = FolderTransfer.SUBFOLDERS
    destination_folder: str | None = None
    use_apop: bool = False
    leave_on_server: bool = True
    delete_after_days: int | None = None
    apply_filters: bool = True
    enable_debug: bool = False
    timeout_seconds: int = 60


def task_view(task: RetrievalTask) -> TaskView:
    assert task.id is not None
    return TaskView(
        id=task.id,
        user_id=task.user_id,
        name=task.name,
        protocol=task.protocol,
        host=task.host,
        port=task.port,
        security=task.security,
        username=task.username,
        verify_certificate=task.verify_certificate,
        method=task.method,
        folder_transfer=task.folder_transfer,
        destination_folder=task.destination_folder,
        use_apop=task.use_apop,
        leave_on_server=task.leave_on_server,
        delete_after_days=task.delete_after_days,
        apply_filters=task.apply_filters,
        enable_debug=task.enable_debug,
        is_active=task.is_active,
        last_run_at=task.last_run_at,
        last_success_at=task.last_success_at,
        messages_imported=task.messages_imported,
        last_error=task.last_error,
        failing_since=task.failing_since,
        needs_action=task.needs_action,
        next_run_at=task.next_run_at,
    )


def _check(new: NewTask) -> None:
    host = new.host.strip()
    if not host or len(host) > MAX_HOST_LENGTH or any(c.isspace() or c in "/@\0" for c in host):
        raise InvalidInput("Enter the server's host name or address, for example imap.example.com.")
    if new.port is not None and not 1 <= new.port <= 65535:
        raise InvalidInput("The port must be a number from 1 to 65535.")
    if not new.username.strip():
        raise InvalidInput("Enter the username for the remote mailbox.")
    if not new.password:
        raise InvalidInput("Enter the password for the remote mailbox.")
    if any(c in new.username + new.password for c in "\r\n\0"):
        raise InvalidInput("The username and password cannot contain line breaks.")
    if new.delete_after_days is not None and new.delete_after_days < 1:
        raise InvalidInput("Delete after must be at least 1 day.")
    if not 5 <= new.timeout_seconds <= 600:
        raise InvalidInput("The timeout must be from 5 to 600 seconds.")


async def load_task(session: AsyncSession, task_id: int, user_id: int | None) -> RetrievalTask:
    """The task, if it exists and (unless user_id is None) belongs to this user."""
    task = await session.get(RetrievalTask, task_id)
    if task is None or (user_id is not None and task.user_id != user_id):
        raise NotFound("This retrieval task does not exist.")
    return task


async def add_task(*, db: Database, secret_box: SecretBox, user_id: int, new: NewTask) -> TaskView:
    """Create a task. Refused when the domain's administrator turned retrieval off or the limit is reached."""
    _check(new)
    async with db.write() as session:
        row = (await session.exec(select(User, Domain).join(Domain).where(User.id == user_id))).first()
        if row is None:
            raise NotFound("This user does not exist.")
        _, domain = row
        if not domain.retrieval_enabled:
            raise FeatureDisabled(f"Your administrator turned off IMAP/POP Retrieval for {domain.name}.")
        if domain.max_tasks_per_user is not None:
            count = (
                await session.exec(
                    select(func.count()).select_from(RetrievalTask).where(RetrievalTask.user_id == user_id)
                )
            ).one()
            if count >= domain.max_tasks_per_user:
                raise InvalidInput(f"You already have the {domain.max_tasks_per_user} retrieval tasks allowed.")
        task = _task_row(user_id, new, secret_box)
        session.add(task)
        await session.flush()
        return task_view(task)


def _task_row(user_id: int, new: NewTask, secret_box: SecretBox) -> RetrievalTask:
    return RetrievalTask(
        user_id=user_id,
        name=new.name.strip(),
        protocol=new.protocol,
        host=new.host.strip().lower(),
        port=new.port or default_port(new.protocol, new.security),
        security=new.security,
        username=new.username.strip(),
        password_encrypted=secret_box.encrypt(new.password),
        verify_certificate=new.verify_certificate,
        timeout_seconds=new.timeout_seconds,
        method=new.method,
        folder_transfer=new.folder_transfer,
        destination_folder=(new.destination_folder or "").strip("/ ") or None,
        use_apop=new.use_apop,
        leave_on_server=new.leave_on_server,
        delete_after_days=new.delete_after_days,
        apply_filters=new.apply_filters,
        enable_debug=new.enable_debug,
        next_run_at=utcnow() if new.method is RetrievalMethod.AUTOMATIC else None,
    )


async def list_tasks(*, db: Database, user_id: int) -> list[TaskView]:
    async with db.read() as session:
        tasks = (
            await session.exec(
                select(RetrievalTask).where(RetrievalTask.user_id == user_id).order_by(col(RetrievalTask.id))
            )
        ).all()
    return [task_view(t) for t in tasks]


async def get_task(*, db: Database, task_id: int, user_id: int | None) -> TaskView:
    async with db.read() as session:
        return task_view(await load_task(session, task_id, user_id))


async def delete_task(*, db: Database, task_id: int, user_id: int | None) -> None:
    """Delete the task and its cursors; the messages it brought in stay."""
    async with db.write() as session:
        await session.delete(await load_task(session, task_id, user_id))


def imap_account(task: RetrievalTask, secret_box: SecretBox, settings: Settings) -> imap.ImapAccount:
    return imap.ImapAccount(
        host=task.host,
        port=task.port,
        security=task.security,
        username=task.username,
        password=secret_box.decrypt(task.password_encrypted),
        verify_certificate=task.verify_certificate,
        timeout_seconds=float(task.timeout_seconds),
        extra_ca_file=settings.extra_ca_file,
        debug=task.enable_debug,
    )


def pop3_account(task: RetrievalTask, secret_box: SecretBox, settings: Settings) -> pop3.Pop3Account:
    return pop3.Pop3Account(
        host=task.host,
        port=task.port,
        security=task.security,
        username=task.username,
        password=secret_box.decrypt(task.password_encrypted),
        verify_certificate=task.verify_certificate,
        timeout_seconds=float(task.timeout_seconds),
        extra_ca_file=settings.extra_ca_file,
        use_apop=task.use_apop,
        debug=task.enable_debug,
    )


async def _probe(task: RetrievalTask, secret_box: SecretBox, settings: Settings) -> ConnectionReport:
    if task.protocol is Protocol.IMAP:
        return await asyncio.to_thread(imap.test_connection, imap_account(task, secret_box, settings))
    return await asyncio.to_thread(pop3.test_connection, pop3_account(task, secret_box, settings))


async def test_unsaved(*, secret_box: SecretBox, settings: Settings, new: NewTask) -> ConnectionReport:
    """Test Connection before saving: the same steps, with the settings as typed."""
    _check(new)
    return await _probe(_task_row(0, new, secret_box), secret_box, settings)


async def test_task(
    *, db: Database, secret_box: SecretBox, settings: Settings, task_id: int, user_id: int | None
) -> ConnectionReport:
    """Test Connection for a saved task, step by step."""
    async with db.read() as session:
        task = await load_task(session, task_id, user_id)
    return await _probe(task, secret_box, settings)
