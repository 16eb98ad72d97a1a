"""/api/v1/retrieval-tasks: the "Email Retrieval" card as JSON (service.usecases.retrieval_tasks).

GET    /retrieval-tasks               list, with each task's health
POST   /retrieval-tasks               create (201; the password is required)
POST   /retrieval-tasks/test          Test Connection before saving
GET    /retrieval-tasks/{id}          one
PUT    /retrieval-tasks/{id}          replace every setting (empty password: keep the stored one)
DELETE /retrieval-tasks/{id}          delete (204); the messages it brought stay
POST   /retrieval-tasks/{id}/test     Test Connection for the saved task
POST   /retrieval-tasks/{id}/run      Retrieve Messages Now (the scheduler's runner, same lease as the scheduler)
POST   /retrieval-tasks/{id}/resume   resume a task paused after sign-in failures
POST   /retrieval-tasks/{id}/reconnect  a task signing in with a provider: a fresh consent URL (api.oauth)

"push" (default true) asks for a push connection (IMAP IDLE/NOTIFY) on an automatic IMAP task; a POP3
task stores false. "push_state" and "push_detail" are read-only: what that connection last found.

What to import (service.domain.import_choices): "initial" is "all" (default), "new" (only
messages from now on) or "since:YYYY-MM-DD"; "include_folders" / "exclude_folders" are lists of
IMAP folder patterns (`*` for any characters; no include pattern: every folder).

"auth" and "status" say how a task signs in: "password" (status "ok"), or "oauth2" with "pending",
"ok" or "reconnect" (the provider refused to renew the sign-in: needs_action, and Reconnect).
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.config import Settings
from service.domain.oauth import AuthKind, CredentialStatus, TargetKind
from service.domain.retrieval import TaskView
from service.domain.users import UserView
from service.domain.values import FolderTransfer, Protocol, PushState, RetrievalMethod, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.scheduler import Scheduler
from service.usecases import retrieval_tasks
from service.usecases.connection_tests import SavedTask, TaskSettings, run_connection_test
from service.usecases.oauth_targets import SignIn
from service.usecases.retrieval_tasks import NewTask
from web.controllers.api.contract import reads, writes
from web.controllers.api.oauth import auth_and_status, sign_ins
from web.controllers.api.schemas import ConnectionReportOut, Id, IdParam, Number, RunOut


class RetrievalTaskIn(msgspec.Struct):
    """A retrieval task's settings. `password` is write-only; `port` null: the protocol's default."""

    protocol: Protocol
    host: str
    username: str
    password: str = ""
    security: Security = Security.SSL
    port: Number | None = None
    name: str = ""
    verify_certificate: bool = True
    method: RetrievalMethod = RetrievalMethod.AUTOMATIC
    folder_transfer: FolderTransfer = FolderTransfer.SUBFOLDERS
    destination_folder: str | None = None
    use_apop: bool = False
    leave_on_server: bool = True
    delete_after_days: Number | None = None
    apply_filters: bool = True
    push: bool = True  # IMAP, automatic: Push new mail (IMAP IDLE); always stored false for POP3
    enable_debug: bool = False
    timeout_seconds: Number = 60
    initial: str = "all"  # "all" | "new" | "since:YYYY-MM-DD": what the first run imports
    include_folders: list[str] = msgspec.field(default_factory=list)  # IMAP folder patterns, `*` wildcards
    exclude_folders: list[str] = msgspec.field(default_factory=list)

    def new_task(self) -> NewTask:
        return NewTask(**msgspec.structs.asdict(self))


class RetrievalTestIn(RetrievalTaskIn):
    """Settings to test before saving; with `task_id`, an empty password means the stored one."""

    task_id: Id | None = None


class RetrievalTaskOut(msgspec.Struct):
    """A retrieval task and its health. The password is never returned."""

    id: int
    name: str
    protocol: Protocol
    host: str
    port: int
    security: Security
    username: str
    verify_certificate: bool
    method: RetrievalMethod
    folder_transfer: FolderTransfer
    destination_folder: str | None
    use_apop: bool
    leave_on_server: bool
    delete_after_days: int | None
    apply_filters: bool
    push: bool
    enable_debug: bool
    timeout_seconds: int
    initial: str
    include_folders: list[str]
    exclude_folders: list[str]
    is_active: bool
    last_run_at: datetime | None
    last_success_at: datetime | None
    messages_imported: int
    last_error: str | None
    failing_since: datetime | None
    needs_action: bool
    next_run_at: datetime | None
    paused_reason: str | None
    # Read-only: what the push connection last found ("connecting", "listening", "unsupported": the
    # server offers no IDLE, "failed": see push_detail); null while none was tried or push is off.
    push_state: PushState | None
    push_detail: str | None
    auth: AuthKind  # "password", or "oauth2": signs in with a provider (POST /oauth/start)
    status: CredentialStatus  # oauth2: "pending" (consent not given yet), "ok", "reconnect"; password: "ok"

    @classmethod
    def from_view(cls, v: TaskView, sign_in: SignIn | None) -> RetrievalTaskOut:
        auth, status = auth_and_status(sign_in)
        names = [f.name for f in msgspec.structs.fields(cls) if f.name not in ("auth", "status")]
        fields = {name: getattr(v, name) for name in names}
        fields.update(include_folders=list(v.include_folders), exclude_folders=list(v.exclude_folders))
        return cls(**fields, auth=auth, status=status)


async def _out(db: Database, user_id: int, task: TaskView) -> RetrievalTaskOut:
    return RetrievalTaskOut.from_view(task, (await sign_ins(db, TargetKind.RETRIEVAL, user_id)).get(task.id))


class RetrievalTasksController(Controller):
    path = "/retrieval-tasks"
    tags = ["Retrieval tasks"]

    @get("/", **reads())
    async def list_tasks(
        self, db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> list[RetrievalTaskOut]:
        tasks = await retrieval_tasks.list_tasks(db=db, user_id=user.id)
        states = await sign_ins(db, TargetKind.RETRIEVAL, user.id)
        return [RetrievalTaskOut.from_view(t, states.get(t.id)) for t in tasks]

    @post("/", **writes(400, body=True))
    async def create_task(
        self,
        data: JSONBody[RetrievalTaskIn],
        db: NamedDependency[Database],
        secret_box: NamedDependency[SecretBox],
        user: NamedDependency[UserView],
    ) -> RetrievalTaskOut:
        saved = await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=user.id, new=data.new_task())
        return await _out(db, user.id, saved)

    @post("/test", status_code=200, **writes(400, 404, 429, body=True))
    async def test_unsaved(
        self,
        data: JSONBody[RetrievalTestIn],
        db: NamedDependency[Database],
        secret_box: NamedDependency[SecretBox],
        settings: NamedDependency[Settings],
        user: NamedDependency[UserView],
    ) -> ConnectionReportOut:
        """Test Connection with settings as typed (with `task_id`: edits to that task). Rate limited (429),
        and only hosts the domain's outbound policy allows are reached."""
        fields = msgspec.structs.asdict(data)
        task_id = fields.pop("task_id")
        subject = TaskSettings(RetrievalTaskIn(**fields).new_task(), task_id=task_id)
        report = await run_connection_test(
            db=db, secret_box=secret_box, settings=settings, user_id=user.id, subject=subject
        )
        return ConnectionReportOut.from_report(report)

    @get("/{task_id:int}", **reads(400, 404))
    async def get_task(
        self, task_id: FromPath[IdParam], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> RetrievalTaskOut:
        return await _out(db, user.id, await retrieval_tasks.get_task(db=db, task_id=task_id, user_id=user.id))

    @put("/{task_id:int}", **writes(400, 404, body=True))
    async def update_task(
        self,
        task_id: FromPath[IdParam],
        data: JSONBody[RetrievalTaskIn],
        db: NamedDependency[Database],
        secret_box: NamedDependency[SecretBox],
        user: NamedDependency[UserView],
    ) -> RetrievalTaskOut:
        saved = await retrieval_tasks.update_task(
            db=db, secret_box=secret_box, user_id=user.id, task_id=task_id, new=data.new_task()
        )
        return await _out(db, user.id, saved)

    @delete("/{task_id:int}", **writes(400, 404))
    async def delete_task(
        self, task_id: FromPath[IdParam], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> None:
        await retrieval_tasks.delete_task(db=db, task_id=task_id, user_id=user.id)

    @post("/{task_id:int}/test", status_code=200, **writes(400, 404, 429))
    async def test_saved(
        self,
        task_id: FromPath[IdParam],
        db: NamedDependency[Database],
        secret_box: NamedDependency[SecretBox],
        settings: NamedDependency[Settings],
        user: NamedDependency[UserView],
    ) -> ConnectionReportOut:
        """Test Connection for the saved task (rate limited, as every test; 429 past the budget)."""
        report = await run_connection_test(
            db=db, secret_box=secret_box, settings=settings, user_id=user.id, subject=SavedTask(task_id)
        )
        return ConnectionReportOut.from_report(report)

    @post("/{task_id:int}/run", status_code=200, **writes(400, 404))
    async def run_now(self, task_id: FromPath[IdParam], state: State, user: NamedDependency[UserView]) -> RunOut:
        """Retrieve Messages Now: run at once, or join the run in progress (`already_running`)."""
        result = await cast(Scheduler, state.scheduler).runner.run_now(task_id, user_id=user.id)
        return RunOut.from_result(result)

    @post("/{task_id:int}/resume", status_code=200, **writes(400, 404))
    async def resume(
        self, task_id: FromPath[IdParam], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> RetrievalTaskOut:
        return await _out(db, user.id, await retrieval_tasks.resume_task(db=db, task_id=task_id, user_id=user.id))
