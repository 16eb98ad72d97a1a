"""The New Retrieval Task and Edit forms: show, save, Test Connection before saving, and the
folder transfer example that follows what is typed (GET /settings/retrieval/transfer-example).

Another user's task id answers 404. A form shown again after a mistake keeps the password it
was posted with in the session (support.pending_secret): left empty on the next submit or Test
Connection, the kept one is used; it never goes back into the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from service.config import Settings
from service.domain.connection_test import ConnectionReport
from service.domain.oauth import TargetKind
from service.domain.users import UserView
from service.errors import InvalidInput
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import retrieval_tasks
from service.usecases.connection_tests import TaskSettings, run_connection_test
from service.usecases.retrieval_tasks import NewTask
from web.controllers.settings import present
from web.controllers.settings.common import (
    AnyRequest,
    account_form_page,
    back,
    connection_test,
    is_htmx,
    limit_reached,
)
from web.controllers.settings.oauth import offered_to, signs_in_with_provider, with_provider_csp
from web.controllers.settings.retrieval_form import (
    TaskBody,
    TaskForm,
    example_destination,
    folder_choices,
    initial_choices,
    transfer_examples,
)
from web.support import pending_secret
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
    destination = example_destination(form.name, form.username, form.host, form.destination_folder)
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
        initial_choices=initial_choices(),
        transfer_examples=transfer_examples(destination),
        **extra,
    )


def _key(task_id: int | None) -> str:
    return pending_secret.form_key("retrieval", task_id)


def _kept(
    request: AnyRequest, secret_box: SecretBox, task_id: int | None, form: TaskForm, oauth: bool
) -> dict[str, Any]:
    """The form goes back after a mistake: keep its password (a task signing in with a provider has none)."""
    if oauth:
        return pending_secret.template_context(False)
    return pending_secret.kept(request, secret_box, _key(task_id), form)


@dataclass(frozen=True)
class _Posted:
    """A posted New (task_id None) or Edit form and what answering it takes."""

    request: AnyRequest
    db: Database
    secret_box: SecretBox
    user: UserView
    settings: Settings
    task_id: int | None
    oauth: bool = False  # signs in with a provider: no password to keep or restore

    def read(self, data: TaskForm) -> tuple[TaskForm, NewTask, dict[str, str]]:
        """The form with a password left empty filled from the kept one, and what it says or its mistakes."""
        if not self.oauth:
            data = pending_secret.restore(self.request, self.secret_box, _key(self.task_id), data)
        new, errors = data.read(password_required=self.task_id is None)
        return data, new, errors

    def again(self, data: TaskForm, **extra: Any) -> Response[Any]:
        """The form again (its password kept for the next submit, never echoed)."""
        kept = _kept(self.request, self.secret_box, self.task_id, data, self.oauth)
        return _form_page(user=self.user, settings=self.settings, form=data, task_id=self.task_id, **extra, **kept)


async def _edited(db: Database, user: UserView, task_id: int) -> bool:
    """An Edit form posted: another user's task answers 404 before anything else.
    True when the task signs in with a provider."""
    await retrieval_tasks.get_task(db=db, task_id=task_id, user_id=user.id)
    return await signs_in_with_provider(db, TargetKind.RETRIEVAL, user.id, task_id)


async def _save(posted: _Posted, data: TaskForm) -> Response[Any]:
    """Save the New (task_id None) or Edit form: back to Connectivity, or the form again with what to fix."""
    data, new, errors = posted.read(data)
    db, secret_box, user, task_id = posted.db, posted.secret_box, posted.user, posted.task_id
    error, status_code = None, 400
    if not errors:
        try:
            if task_id is None:
                task = await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=user.id, new=new)
            else:
                task = await retrieval_tasks.update_task(
                    db=db, secret_box=secret_box, user_id=user.id, task_id=task_id, new=new
                )
        except InvalidInput as exc:
            error, status_code = exc.message, status_for(exc)
        else:
            pending_secret.forget(posted.request, _key(task_id))
            title = task.name or task.username
            return back(
                posted.request, present.Message("ok", f"Saved the retrieval task {title}."), anchor=f"task-{task.id}"
            )
    return posted.again(data, errors=errors, error=error, status_code=status_code, oauth_sign_in=posted.oauth)


@get(NEW, name="retrieval-new")
async def new_task(
    db: NamedDependency[Database], user: NamedDependency[UserView], settings: NamedDependency[Settings]
) -> Response[Any]:
    try:
        await retrieval_tasks.check_room_for_task(db=db, user_id=user.id)
    except InvalidInput as exc:  # the limit: say so now, not after the whole form is filled in
        return limit_reached(
            user, noun="Retrieval Task", section="Email Retrieval", anchor="retrieval-card-title", message=exc.message
        )
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
    return await _save(_Posted(request, db, secret_box, user, settings, task_id=None), data)


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
    oauth = await _edited(db, user, task_id)
    return await _save(_Posted(request, db, secret_box, user, settings, task_id=task_id, oauth=oauth), data)


async def _test_form(posted: _Posted, data: TaskForm) -> Response[Any]:
    """Test Connection from the New (task_id None) or Edit form, before saving: the steps (htmx),
    or the form again with them (its password kept for the next submit, never echoed)."""
    data, new, errors = posted.read(data)
    request, user, task_id = posted.request, posted.user, posted.task_id
    if errors:
        if is_htmx(request):  # 200: htmx swaps only successful answers
            return page("settings/_steps.html", viewer=user, problems=list(errors.values()))
        return posted.again(data, errors=errors, status_code=400)
    subject = TaskSettings(new) if task_id is None else TaskSettings(new, task_id=task_id)
    report = await connection_test(
        request,
        user,
        run_connection_test(
            db=posted.db, secret_box=posted.secret_box, settings=posted.settings, user_id=user.id, subject=subject
        ),
    )
    if not isinstance(report, ConnectionReport):
        return report
    context = {**present.report_context(report), **folder_choices(report, new)}
    if is_htmx(request):
        return page("settings/_task_test.html", viewer=user, **context)
    return posted.again(data, oauth_sign_in=posted.oauth, **context)


@post("/settings/retrieval/test", name="retrieval-test-unsaved")
async def test_unsaved(
    data: TaskBody,
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    return await _test_form(_Posted(request, db, secret_box, user, settings, task_id=None), data)


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
    oauth = await _edited(db, user, task_id)
    return await _test_form(_Posted(request, db, secret_box, user, settings, task_id=task_id, oauth=oauth), data)


@get("/settings/retrieval/transfer-example", name="retrieval-transfer-example")
async def transfer_example(
    user: NamedDependency[UserView],
    name: FromQuery[str] = "",
    username: FromQuery[str] = "",
    host: FromQuery[str] = "",
    destination_folder: FromQuery[str] = "",
) -> Response[Any]:
    """Where "Add as subfolders" puts typical remote folders for the task as typed so far (htmx)."""
    destination = example_destination(name, username, host, destination_folder)
    return page("settings/_transfer_example.html", viewer=user, transfer_examples=transfer_examples(destination))


ROUTES = [new_task, create_task, edit_task, save_task, test_unsaved, test_edited, transfer_example]
