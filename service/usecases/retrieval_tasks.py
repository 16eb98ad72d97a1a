"""Email Retrieval tasks: create, list, edit, resume and delete (Test Connection: `connection_tests`).

Tasks belong to a user: every function takes the acting user's id and treats
another user's task as missing. `user_id=None` is the operator's scope (the
CLI), which sees every task. Passwords are encrypted before they are stored
and never leave this module in a view; editing with an empty password keeps
the stored one. Creating, editing and resuming are refused (FeatureDisabled)
while the domain's administrator has IMAP/POP Retrieval turned off; deleting
is always allowed.

Push ("Push new mail (IMAP IDLE)", issue 16) is a preference of IMAP tasks: a POP3 task stores
push=False whatever was asked. The push supervisor (service.usecases.retrieval.push) owns the push
lease and state columns; saving a task that changes how its connection signs in or whether it
pushes at all clears them (`_forget_push`), so the supervisor lets go of the old connection and
connects again with the new settings.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.domain.connection_test import ConnectionReport
from service.domain.import_choices import FolderSelection, check_initial, check_patterns
from service.domain.oauth import AuthKind, require_tls
from service.domain.retrieval import TaskView
from service.domain.smtp_accounts import check_host
from service.domain.values import FolderTransfer, Protocol, RetrievalMethod, Security, default_port
from service.errors import FeatureDisabled, InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, RetrievalTask, User
from service.persistence.types import utcnow
from service.usecases.retrieval_accounts import imap_account as imap_account  # the callers' old name
from service.usecases.retrieval_accounts import pop3_account as pop3_account

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
    push: bool = True  # IMAP: hold a push connection (IDLE/NOTIFY) while automatic; ignored (False) for POP3
    enable_debug: bool = False
    timeout_seconds: int = 60
    # What to import (service.domain.import_choices): "all", "new" or "since:YYYY-MM-DD", and
    # folder patterns (IMAP; `*` wildcards) to include (none: every folder) and to exclude.
    initial: str = "all"
    include_folders: Sequence[str] = ()
    exclude_folders: Sequence[str] = ()


_PATTERN_COLUMNS = ("include_folders", "exclude_folders")


def task_view(task: RetrievalTask) -> TaskView:
    """The view of a row: every view field is the column of the same name (never the password);
    the folder patterns are JSON text in the row, tuples in the view."""
    assert task.id is not None
    fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(TaskView)}
    for name in _PATTERN_COLUMNS:
        fields[name] = tuple(json.loads(fields[name] or "[]"))
    return TaskView(**fields)


def folder_selection(task: RetrievalTask) -> FolderSelection:
    """The folders a task imports, as its run applies them."""
    return FolderSelection(
        tuple(json.loads(task.include_folders or "[]")), tuple(json.loads(task.exclude_folders or "[]"))
    )


def task_problems(new: NewTask, *, password_required: bool = True) -> dict[str, str]:
    """What is wrong with a task's settings, by field (the form shows each next to its field).

    `password_required` is False when editing: an empty password keeps the stored one.
    """
    problems: dict[str, str] = {}
    try:
        check_host(new.host)  # the one host rule (service.domain.smtp_accounts): IDNA, labels, length
    except InvalidInput as exc:
        problems["host"] = exc.message
    if "\0" in new.name + (new.destination_folder or ""):  # PostgreSQL text cannot hold NUL (was a 500)
        problems["name" if "\0" in new.name else "destination_folder"] = "Names cannot contain NUL characters."
    if new.port is not None and not 1 <= new.port <= 65535:
        problems["port"] = "The port must be a number from 1 to 65535."
    if not new.username.strip():
        problems["username"] = "Enter the username for the remote mailbox."
    elif any(c in new.username for c in "\r\n\0"):
        problems["username"] = "The username cannot contain line breaks."
    if password_required and not new.password:
        problems["password"] = "Enter the password for the remote mailbox."  # noqa: S105 (a message)
    elif any(c in new.password for c in "\r\n\0"):
        problems["password"] = "The password cannot contain line breaks."  # noqa: S105 (a message)
    if new.delete_after_days is not None and new.delete_after_days < 1:
        problems["delete_after_days"] = "Delete after must be at least 1 day."
    if not 5 <= new.timeout_seconds <= 600:
        problems["timeout_seconds"] = "The timeout must be from 5 to 600 seconds."
    for name, value in (("initial", new.initial), *((n, getattr(new, n)) for n in _PATTERN_COLUMNS)):
        try:
            check_initial(value) if name == "initial" else check_patterns(value)
        except InvalidInput as exc:
            problems[name] = exc.message
    return problems


def import_problem(*, initial: str, include_folders: Sequence[str], exclude_folders: Sequence[str]) -> str | None:
    """What is wrong with an initial import choice and folder patterns, in one sentence (None: fine)."""
    try:
        check_initial(initial)
        check_patterns(include_folders)
        check_patterns(exclude_folders)
    except InvalidInput as exc:
        return exc.message
    return None


def check_task(new: NewTask, *, password_required: bool = True) -> None:
    problems = task_problems(new, password_required=password_required)
    if problems:
        raise InvalidInput(next(iter(problems.values())))


async def load_task(session: AsyncSession, task_id: int, user_id: int | None) -> RetrievalTask:
    """The task, if it exists and (unless user_id is None) belongs to this user."""
    task = await session.get(RetrievalTask, task_id)
    if task is None or (user_id is not None and task.user_id != user_id):
        raise NotFound("This retrieval task does not exist.")
    return task


def disabled_message(domain_name: str) -> str:
    return f"Your administrator turned off IMAP/POP Retrieval for {domain_name}."


def _require_enabled(domain: Domain) -> None:
    if not domain.retrieval_enabled:
        raise FeatureDisabled(disabled_message(domain.name))


async def _domain_of(session: AsyncSession, user_id: int) -> Domain:
    domain = (await session.exec(select(Domain).join(User).where(User.id == user_id))).first()
    if domain is None:
        raise NotFound("This user does not exist.")
    return domain


async def check_retrieval_enabled(*, db: Database, user_id: int) -> None:
    """FeatureDisabled (in the administrator's words) when the user's domain has retrieval turned off."""
    async with db.read() as session:
        _require_enabled(await _domain_of(session, user_id))


def limit_message(count: int, limit: int) -> str:
    """Why no task can be added: how many the user has and how many the administrator allows,
    both as they are (an administrator may lower the limit below what a user already has)."""
    if limit == 0:
        return "Your administrator does not allow retrieval tasks for your account."
    have = f"{count} retrieval task{'' if count == 1 else 's'}"
    if count == limit:
        return f"You have {have}, the most your administrator allows: delete one to add another."
    return f"You have {have} and your administrator allows {limit}: delete {count - limit + 1} to add another."


async def _require_room(session: AsyncSession, domain: Domain, user_id: int) -> None:
    """InvalidInput (`limit_message`) when the user has as many tasks as the domain allows, or more."""
    limit = domain.max_tasks_per_user
    if limit is None:
        return
    count = (
        await session.exec(select(func.count()).select_from(RetrievalTask).where(RetrievalTask.user_id == user_id))
    ).one()
    if count >= limit:
        raise InvalidInput(limit_message(count, limit))


async def check_room_for_task(*, db: Database, user_id: int) -> None:
    """What "New Retrieval Task" checks before showing its form: retrieval on (FeatureDisabled)
    and the limit not reached (InvalidInput), so nobody fills in a form that cannot be saved."""
    async with db.read() as session:
        domain = await _domain_of(session, user_id)
        _require_enabled(domain)
        await _require_room(session, domain, user_id)


async def add_task(*, db: Database, secret_box: SecretBox, user_id: int, new: NewTask) -> TaskView:
    """Create a task. Refused when the domain's administrator turned retrieval off or the limit is reached."""
    check_task(new)
    async with db.write() as session:
        row = (await session.exec(select(User, Domain).join(Domain).where(User.id == user_id))).first()
        if row is None:
            raise NotFound("This user does not exist.")
        _, domain = row
        _require_enabled(domain)
        await _require_room(session, domain, user_id)
        task = task_row(user_id, new, secret_box)
        session.add(task)
        await session.flush()
        return task_view(task)


def task_row(user_id: int, new: NewTask, secret_box: SecretBox) -> RetrievalTask:
    """A (not yet added) row for these settings: host lower-cased, port defaulted, password encrypted."""
    return RetrievalTask(
        user_id=user_id,
        name=new.name.strip(),
        protocol=new.protocol,
        host=check_host(new.host),
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
        push=new.push and new.protocol is Protocol.IMAP,
        enable_debug=new.enable_debug,
        initial=check_initial(new.initial),
        include_folders=json.dumps(check_patterns(new.include_folders), ensure_ascii=False),
        exclude_folders=json.dumps(check_patterns(new.exclude_folders), ensure_ascii=False),
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


# The columns "Edit" replaces: every setting of the form (the password only when one is typed).
_EDITABLE = tuple(f.name for f in dataclasses.fields(NewTask) if f.name != "password")
# The settings of the push connection itself: a change to any of them means connecting again.
_PUSH_CONNECTION = (
    "protocol",
    "host",
    "port",
    "security",
    "username",
    "verify_certificate",
    "timeout_seconds",
    "method",
    "push",
    "enable_debug",
)


def _forget_push(task: RetrievalTask) -> None:
    """Drop the task's push lease and what its connection found: the supervisor that held it sees
    its lease gone and closes the connection; a supervisor then claims the task afresh (or not at
    all, when push no longer applies) and reports a new state."""
    task.push_owner = None
    task.push_expires_at = None
    task.push_state = None
    task.push_detail = None
    task.push_retry_at = None


def _resume(task: RetrievalTask) -> None:
    """Lift a pause: sign-in failures forgotten, no action needed, due now when automatic, push tried
    again at once."""
    _forget_push(task)
    task.paused_reason = None
    task.auth_failures = 0
    task.needs_action = False
    task.next_run_at = utcnow() if task.method is RetrievalMethod.AUTOMATIC else None


async def update_task(
    *, db: Database, secret_box: SecretBox, user_id: int | None, task_id: int, new: NewTask
) -> TaskView:
    """Replace every setting of a task ("Edit"). An empty password keeps the stored one.

    A new password or username resumes a paused task (the user fixed what the pause asked for).
    Cursors stay: the same mailbox under a new host name must not be imported twice. A change to
    the connection (server, credentials, method, push itself) forgets the push lease and state.
    A folder the new selection includes that was never imported has no cursor, so the next run
    brings it from the start; one excluded keeps its cursor and its local mail. The initial
    import choice can still change until a run completes; after that it no longer applies.
    """
    check_task(new, password_required=False)
    async with db.write() as session:
        task = await load_task(session, task_id, user_id)
        _require_enabled(await _domain_of(session, task.user_id))
        edited = task_row(task.user_id, new, secret_box)
        oauth = task.auth is AuthKind.OAUTH2  # signs in with the provider's token: a typed password is unused
        if oauth:
            require_tls(edited.security, edited.verify_certificate)
        credentials_changed = (bool(new.password) and not oauth) or edited.username != task.username
        if credentials_changed or any(getattr(edited, n) != getattr(task, n) for n in _PUSH_CONNECTION):
            _forget_push(task)
        for name in _EDITABLE:
            setattr(task, name, getattr(edited, name))
        if new.password and not oauth:
            task.password_encrypted = edited.password_encrypted
        if credentials_changed:
            _resume(task)
        elif task.method is RetrievalMethod.MANUAL:
            task.next_run_at = None
        elif task.next_run_at is None:
            task.next_run_at = utcnow()
        task.updated_at = utcnow()
        session.add(task)
        await session.flush()
        return task_view(task)


async def set_import_choices(
    *,
    db: Database,
    task_id: int,
    user_id: int | None,
    initial: str = "all",
    include_folders: Sequence[str] = (),
    exclude_folders: Sequence[str] = (),
) -> TaskView:
    """Set only what a task imports (the CLI's --initial and folder patterns for a task that signs in
    with a provider, created before its consent). The same rules as New Retrieval Task."""
    initial = check_initial(initial)
    include, exclude = check_patterns(include_folders), check_patterns(exclude_folders)
    async with db.write() as session:
        task = await load_task(session, task_id, user_id)
        task.initial = initial
        task.include_folders = json.dumps(include, ensure_ascii=False)
        task.exclude_folders = json.dumps(exclude, ensure_ascii=False)
        task.updated_at = utcnow()
        session.add(task)
        await session.flush()
        return task_view(task)


async def resume_task(*, db: Database, task_id: int, user_id: int | None) -> TaskView:
    """Resume a task paused after repeated sign-in failures (or clear "needs your action")."""
    async with db.write() as session:
        task = await load_task(session, task_id, user_id)
        _require_enabled(await _domain_of(session, task.user_id))
        _resume(task)
        task.updated_at = utcnow()
        session.add(task)
        await session.flush()
        return task_view(task)


async def delete_task(*, db: Database, task_id: int, user_id: int | None) -> None:
    """Delete the task and its cursors; the messages it brought in stay."""
    async with db.write() as session:
        await session.delete(await load_task(session, task_id, user_id))


# Shorthands for Test Connection, which is `connection_tests.run_connection_test` (the rate limit and the
# outbound policy live there, so every caller gets them). Imported late: connection_tests imports this module.


async def test_task(
    *, db: Database, secret_box: SecretBox, settings: Settings, task_id: int, user_id: int | None
) -> ConnectionReport:
    """Test Connection for a saved task, acting as `user_id` (None: the operator)."""
    from service.usecases.connection_tests import SavedTask, run_connection_test

    return await run_connection_test(
        db=db, secret_box=secret_box, settings=settings, user_id=user_id, subject=SavedTask(task_id)
    )


async def test_changes(
    *, db: Database, secret_box: SecretBox, settings: Settings, task_id: int, user_id: int | None, new: NewTask
) -> ConnectionReport:
    """Test Connection from the Edit form, before saving: an empty password means the stored one."""
    from service.usecases.connection_tests import TaskSettings, run_connection_test

    subject = TaskSettings(new, task_id=task_id)
    return await run_connection_test(db=db, secret_box=secret_box, settings=settings, user_id=user_id, subject=subject)


async def test_unsaved(
    *, db: Database, secret_box: SecretBox, settings: Settings, user_id: int, new: NewTask
) -> ConnectionReport:
    """Test Connection before saving, for the user's domain."""
    from service.usecases.connection_tests import TaskSettings, run_connection_test

    return await run_connection_test(
        db=db, secret_box=secret_box, settings=settings, user_id=user_id, subject=TaskSettings(new)
    )
