"""Email Retrieval routes: New Retrieval Task, Edit, Delete, Test Connection (saved, or the form
before saving), Retrieve Messages Now and Resume.

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

from service.config import Settings
from service.domain.connection_test import ConnectionReport
from service.domain.oauth import TargetKind
from service.domain.users import UserView
from service.errors import FeatureDisabled, InvalidInput
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.types import utcnow
from service.usecases import retrieval_tasks
from service.usecases.attention import needs_action_count
from service.usecases.connection_tests import SavedTask, TaskSettings, run_connection_test
from service.usecases.oauth_targets import sign_in_states
from web.controllers.settings import present
from web.controllers.settings.common import AnyRequest, account_form_page, back, connection_test, is_htmx, scheduler
from web.controllers.settings.connectivity import connectivity_page
from web.controllers.settings.oauth import offered_to, signs_in_with_provider, with_provider_csp
from web.controllers.settings.retrieval_form import TaskBody, TaskForm
from web.support.rendering import page, status_for

NEW = "/settings/retrieval/new"


def _interval(settings: Settings) -> str:
    minutes = max(1, round(settings.retrieval_interval / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _form_page(
    *,
    user: UserView,
    settings: Settings,
    form: TaskForm,
    task_id: int | None = None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
    **extra: Any,
) -> Response[Any]:
    return account_form_page(
        template="settings/task_form.html",
        noun="Retrieval Task",
        base_path="/settings/retrieval",
        record_id=task_id,
        user=user,
        form=form,
        errors=errors,
        error=error,
        status_code=status_code,
        interval=_interval(settings),
        **extra,
    )


@get(NEW, name="retrieval-new")
async def new_task(
    db: NamedDependency[Database], user: NamedDependency[UserView], settings: NamedDependency[Settings]
) -> Response[Any]:
    await retrieval_tasks.check_retrieval_enabled(db=db, user_id=user.id)
    response = _form_page(
        user=user, settings=settings, form=TaskForm.blank(), oauth_providers=await offered_to(db, settings, user.id)
    )
    return with_provider_csp(response, settings)


@post(NEW)
async def create_task(
    data: TaskBody,
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    new, errors = data.read()
    if errors:
        return _form_page(user=user, settings=settings, form=data, errors=errors, status_code=400)
    try:
        task = await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=user.id, new=new)
    except InvalidInput as exc:
        return _form_page(user=user, settings=settings, form=data, error=exc.message, status_code=status_for(exc))
    title = task.name or task.username
    return back(request, present.Message("ok", f"Saved the retrieval task {title}."), anchor=f"task-{task.id}")


@get("/settings/retrieval/{task_id:int}/edit", name="retrieval-edit")
async def edit_task(
    task_id: FromPath[int],
    db: NamedDependency[Database],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    task = await retrieval_tasks.get_task(db=db, task_id=task_id, user_id=user.id)
    await retrieval_tasks.check_retrieval_enabled(db=db, user_id=user.id)
    oauth = await signs_in_with_provider(db, TargetKind.RETRIEVAL, user.id, task_id)
    return _form_page(user=user, settings=settings, form=TaskForm.of(task), task_id=task_id, oauth_sign_in=oauth)


@post("/settings/retrieval/{task_id:int}/edit")
async def save_task(
    task_id: FromPath[int],
    data: TaskBody,
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    await retrieval_tasks.get_task(db=db, task_id=task_id, user_id=user.id)  # 404 before anything else
    oauth = await signs_in_with_provider(db, TargetKind.RETRIEVAL, user.id, task_id)
    new, errors = data.read(password_required=False)
    if errors:
        return _form_page(
            user=user,
            settings=settings,
            form=data,
            task_id=task_id,
            errors=errors,
            status_code=400,
            oauth_sign_in=oauth,
        )
    try:
        task = await retrieval_tasks.update_task(
            db=db, secret_box=secret_box, user_id=user.id, task_id=task_id, new=new
        )
    except InvalidInput as exc:
        return _form_page(
            user=user,
            settings=settings,
            form=data,
            task_id=task_id,
            error=exc.message,
            status_code=400,
            oauth_sign_in=oauth,
        )
    title = task.name or task.username
    return back(request, present.Message("ok", f"Saved the retrieval task {title}."), anchor=f"task-{task.id}")


def _test_answer(
    request: AnyRequest,
    user: UserView,
    settings: Settings,
    form: TaskForm,
    task_id: int | None,
    report: ConnectionReport,
) -> Response[Any]:
    """Test Connection's steps: the fragment for htmx, else the form again (password not echoed)."""
    context = present.report_context(report)
    if is_htmx(request):
        return page("settings/_steps.html", viewer=user, **context)
    note = "Type the password again before saving." if form.password else None
    return _form_page(user=user, settings=settings, form=form, task_id=task_id, error=note, **context)


def _problems_answer(
    request: AnyRequest, user: UserView, settings: Settings, form: TaskForm, task_id: int | None, errors: dict[str, str]
) -> Response[Any]:
    if is_htmx(request):  # 200: htmx swaps only successful answers
        return page("settings/_steps.html", viewer=user, problems=list(errors.values()))
    return _form_page(user=user, settings=settings, form=form, task_id=task_id, errors=errors, status_code=400)


@post("/settings/retrieval/test", name="retrieval-test-unsaved")
async def test_unsaved(
    data: TaskBody,
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    new, errors = data.read()
    if errors:
        return _problems_answer(request, user, settings, data, None, errors)
    report = await connection_test(
        request,
        user,
        run_connection_test(
            db=db, secret_box=secret_box, settings=settings, user_id=user.id, subject=TaskSettings(new)
        ),
    )
    if not isinstance(report, ConnectionReport):
        return report
    return _test_answer(request, user, settings, data, None, report)


@post("/settings/retrieval/{task_id:int}/edit/test")
async def test_edited(
    task_id: FromPath[int],
    data: TaskBody,
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    await retrieval_tasks.get_task(db=db, task_id=task_id, user_id=user.id)
    new, errors = data.read(password_required=False)
    if errors:
        return _problems_answer(request, user, settings, data, task_id, errors)
    report = await connection_test(
        request,
        user,
        run_connection_test(
            db=db, secret_box=secret_box, settings=settings, user_id=user.id, subject=TaskSettings(new, task_id=task_id)
        ),
    )
    if not isinstance(report, ConnectionReport):
        return report
    return _test_answer(request, user, settings, data, task_id, report)


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
        message = present.run_message(result)
    except FeatureDisabled as exc:
        message = present.Message("error", exc.message)
    if is_htmx(request):
        return await _row(db, user, task_id, message=message)
    task = await retrieval_tasks.get_task(db=db, task_id=task_id, user_id=user.id)
    title = task.name or task.username
    return back(request, present.Message(message.kind, f"{title}: {message.text}"), anchor=f"task-{task_id}")


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


ROUTES = [new_task, create_task, edit_task, save_task, test_unsaved, test_edited, test_saved, run_now, resume, delete]
