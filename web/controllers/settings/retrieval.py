"""Email Retrieval routes on the Connectivity card's rows: Test Connection of a saved task,
Retrieve Messages Now (and its progress), Resume and Delete; the New/Edit form's routes are in retrieval_edit.

Every route acts for the signed-in user only: another user's task id answers 404 (the use
cases treat it as missing). With htmx, actions on a row answer the row (or Test Connection's
steps) to swap in place; without it they redirect back to Connectivity with the result.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.types import ControllerRouterHandler

from service.config import Settings
from service.domain.connection_test import ConnectionReport
from service.domain.retrieval import RunResult
from service.domain.users import UserView
from service.errors import FeatureDisabled
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.types import utcnow
from service.usecases import retrieval_tasks
from service.usecases.attention import needs_action_count
from service.usecases.connection_tests import SavedTask, run_connection_test
from service.usecases.oauth_targets import sign_in_states
from web.controllers.settings import present, retrieval_edit
from web.controllers.settings.common import AnyRequest, back, connection_test, is_htmx, scheduler
from web.controllers.settings.connectivity import connectivity_page
from web.support.rendering import page


async def _row(
    db: Database, user: UserView, task_id: int, *, message: present.Message | None = None, **extra: Any
) -> Response[Any]:
    """The task's row, refreshed, with the result of what was just done (and the badge, out of band)."""
    task = await retrieval_tasks.get_task(db=db, task_id=task_id, user_id=user.id)
    sign_in = (await sign_in_states(db=db, kind="retrieval", user_id=user.id)).get(task_id)
    return page(
        "settings/_task_row.html",
        viewer=user,
        row=present.task_row(task, utcnow(), sign_in=sign_in),
        retrieval_enabled=True,
        output_for=f"task-{task_id}",
        message=message,
        oob_badge=True,
        attention=await needs_action_count(db=db, user_id=user.id),
        **extra,
    )


@post("/settings/retrieval/{task_id:int}/test", name="retrieval-test")
async def test_saved(
    task_id: FromPath[int],
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    report = await connection_test(
        request,
        user,
        run_connection_test(
            db=db, secret_box=secret_box, settings=settings, user_id=user.id, subject=SavedTask(task_id)
        ),
    )
    if not isinstance(report, ConnectionReport):
        return report
    if is_htmx(request):
        return page("settings/_steps.html", viewer=user, **present.report_context(report))
    return await connectivity_page(db, user, output_for=f"task-{task_id}", **present.report_context(report))


def run_message(result: RunResult) -> present.Message:
    """What "Retrieve Messages Now" says: one sentence ("412 new messages in 6 folders.", "No new
    messages.") and the errors in words; the per-folder detail is in the run's log entry."""
    if result.already_running and not result.folders and not result.errors:
        return present.Message("info", "This task is already running; its result will show here when it finishes.")
    prefix = "This task was already running. " if result.already_running else ""
    if result.errors and not result.imported:
        return present.Message("error", prefix + " ".join(result.errors))
    text = prefix + result.sentence()
    if result.errors:
        return present.Message("warning", f"{text} {' '.join(result.errors)}")
    return present.Message("ok", text)


@post("/settings/retrieval/{task_id:int}/run", name="retrieval-run")
async def run_now(
    task_id: FromPath[int],
    request: AnyRequest,
    state: State,
    db: NamedDependency[Database],
    user: NamedDependency[UserView],
) -> Response[Any]:
    """Retrieve Messages Now: run at once (or join the run in progress), then say what it brought."""
    try:
        result = await scheduler(state).runner.run_now(task_id, user_id=user.id)
        message = run_message(result)
    except FeatureDisabled as exc:
        message = present.Message("error", exc.message)
    if is_htmx(request):
        return await _row(db, user, task_id, message=message)
    task = await retrieval_tasks.get_task(db=db, task_id=task_id, user_id=user.id)
    title = task.name or task.username
    return back(request, present.Message(message.kind, f"{title}: {message.text}"), anchor=f"task-{task_id}")


def progress_text(stored: int | None) -> str:
    """What the row says while Retrieve Messages Now waits: the messages stored so far, when any."""
    if not stored:
        return "Retrieving messages…"
    return f"Stored {stored} message{'s' if stored != 1 else ''} so far…"


@get("/settings/retrieval/{task_id:int}/progress", name="retrieval-progress")
async def progress(
    task_id: FromPath[int], state: State, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    """The count a run of this task in progress in this process has stored so far (polled every
    2 s by the row while Retrieve Messages Now waits); polling stops when no run goes on here."""
    await retrieval_tasks.get_task(db=db, task_id=task_id, user_id=user.id)  # another user's: 404
    stored = scheduler(state).runner.stored_so_far(task_id)
    return page(
        "settings/_run_progress.html",
        viewer=user,
        task_id=task_id,
        progress_text=progress_text(stored),
        polling=stored is not None,
        started=True,
    )


@post("/settings/retrieval/{task_id:int}/resume", name="retrieval-resume")
async def resume(
    task_id: FromPath[int], request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    task = await retrieval_tasks.resume_task(db=db, task_id=task_id, user_id=user.id)
    message = present.Message(
        "ok",
        "Resumed: the task runs again "
        + ("within a minute." if task.next_run_at else "when you click Retrieve Messages Now."),
    )
    if is_htmx(request):
        return await _row(db, user, task_id, message=message)
    return back(
        request, present.Message("ok", f"{task.name or task.username}: {message.text}"), anchor=f"task-{task_id}"
    )


@post("/settings/retrieval/{task_id:int}/delete", name="retrieval-delete")
async def delete(
    task_id: FromPath[int], request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    task = await retrieval_tasks.get_task(db=db, task_id=task_id, user_id=user.id)
    await retrieval_tasks.delete_task(db=db, task_id=task_id, user_id=user.id)
    title = task.name or task.username
    return back(request, present.Message("ok", f"Deleted the retrieval task {title}. The messages it brought in stay."))


ROUTES: list[ControllerRouterHandler] = [*retrieval_edit.ROUTES, test_saved, run_now, progress, resume, delete]
