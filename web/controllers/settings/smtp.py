"""SMTP Accounts routes: New SMTP Account, Edit, Delete and Test Connection (saved, or the form
before saving). Another user's account id answers 404; while the domain's administrator has
SMTP Accounts turned off, the use cases refuse (FeatureDisabled) and the page says so.

A form shown again after a mistake keeps the password it was posted with in the session
(support.pending_secret): left empty on the next submit, the kept one is used.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from service.config import Settings
from service.domain.connection_test import ConnectionReport
from service.domain.oauth import TargetKind
from service.domain.smtp_accounts import COPY_NEEDS_LOCAL, files_sent_itself
from service.domain.users import UserView
from service.errors import Conflict, InvalidInput
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import smtp_accounts
from service.usecases.connection_tests import SavedSmtpAccount, SmtpSettings, run_connection_test
from web.controllers.settings import present
from web.controllers.settings.common import (
    AnyRequest,
    account_form_page,
    back,
    connection_test,
    is_htmx,
    limit_reached,
)
from web.controllers.settings.connectivity import connectivity_page
from web.controllers.settings.oauth import offered_to, signs_in_with_provider, with_provider_csp
from web.controllers.settings.smtp_form import SmtpBody, SmtpForm
from web.support import pending_secret
from web.support.rendering import page

NEW = "/settings/smtp/new"


async def _form_page(
    *,
    db: Database,
    user: UserView,
    form: SmtpForm,
    account_id: int | None = None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
    **extra: Any,
) -> Response[Any]:
    copy_tasks = await smtp_accounts.sent_copy_choices(db=db, user_id=user.id)
    return account_form_page(
        template="settings/smtp_form.html",
        noun="SMTP Account",
        base_path="/settings/smtp",
        record_id=account_id,
        user=user,
        form=form,
        errors=errors,
        error=error,
        status_code=status_code,
        copy_tasks=copy_tasks,
        copy_note=_copy_note(form, copy_tasks),
        **extra,
    )


def _copy_note(form: SmtpForm, copy_tasks: list[tuple[int, str, str]]) -> str | None:
    """Why the chosen task gets no copy: its provider (by the SMTP or the IMAP host) files sent mail itself."""
    chosen = [host for task_id, _label, host in copy_tasks if str(task_id) == form.sent_copy_task.strip()]
    return files_sent_itself(form.host, *chosen) if chosen else None


def _key(account_id: int | None) -> str:
    return pending_secret.form_key("smtp", account_id)


def _kept_unless(
    oauth: bool, request: AnyRequest, secret_box: SecretBox, account_id: int, data: SmtpForm
) -> dict[str, Any]:
    """Keep the edit form's password for the next submit (an account signing in with a provider has none)."""
    if oauth:
        return pending_secret.template_context(False)
    return pending_secret.kept(request, secret_box, _key(account_id), data)


def _refused(exc: InvalidInput | Conflict) -> tuple[dict[str, str], str | None]:
    """A refusal from the use case: a duplicate address belongs next to the address field."""
    if isinstance(exc, Conflict) and "already have" in exc.message:
        return {"email_address": exc.message}, None
    if exc.message in (smtp_accounts.NO_COPY_TASK, COPY_NEEDS_LOCAL):
        return {"sent_copy_task": exc.message}, None
    return {}, exc.message


@get(NEW, name="smtp-new")
async def new_account(
    db: NamedDependency[Database], user: NamedDependency[UserView], settings: NamedDependency[Settings]
) -> Response[Any]:
    try:  # FeatureDisabled when turned off
        await smtp_accounts.check_room_for_account(db=db, user_id=user.id)
    except Conflict as exc:  # the limit: say so now, not after the whole form is filled in
        return limit_reached(
            user, noun="SMTP Account", section="SMTP Accounts", anchor="smtp-card-title", message=exc.message
        )
    response = await _form_page(
        db=db, user=user, form=SmtpForm.blank(), oauth_providers=await offered_to(db, settings, user.id)
    )
    return with_provider_csp(response, settings)


@post(NEW)
async def create_account(
    data: SmtpBody,
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
) -> Response[Any]:
    data = pending_secret.restore(request, secret_box, _key(None), data)
    account, errors = data.read()
    if errors:
        kept = pending_secret.kept(request, secret_box, _key(None), data)
        return await _form_page(db=db, user=user, form=data, errors=errors, status_code=400, **kept)
    try:
        saved = await smtp_accounts.add_smtp_account(
            db=db, secret_box=secret_box, user_id=user.id, account=account, password=data.password or None
        )
    except (InvalidInput, Conflict) as exc:
        field_errors, error = _refused(exc)
        kept = pending_secret.kept(request, secret_box, _key(None), data)
        return await _form_page(db=db, user=user, form=data, errors=field_errors, error=error, status_code=400, **kept)
    pending_secret.forget(request, _key(None))
    return back(request, present.Message("ok", f"Saved the SMTP account {saved.label}."), anchor=f"smtp-{saved.id}")


@get("/settings/smtp/{account_id:int}/edit", name="smtp-edit")
async def edit_account(
    account_id: FromPath[int], db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    account = await smtp_accounts.get_smtp_account(db=db, user_id=user.id, account_id=account_id)
    oauth = await signs_in_with_provider(db, TargetKind.SMTP, user.id, account_id)
    return await _form_page(db=db, user=user, form=SmtpForm.of(account), account_id=account_id, oauth_sign_in=oauth)


@post("/settings/smtp/{account_id:int}/edit")
async def save_account(
    account_id: FromPath[int],
    data: SmtpBody,
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
) -> Response[Any]:
    current = await smtp_accounts.get_smtp_account(db=db, user_id=user.id, account_id=account_id)
    oauth = await signs_in_with_provider(db, TargetKind.SMTP, user.id, account_id)  # no password to ask for
    if not oauth:
        data = pending_secret.restore(request, secret_box, _key(account_id), data)
    account, errors = data.read(has_password=current.has_password or oauth)
    if errors:
        return await _form_page(
            db=db,
            user=user,
            form=data,
            account_id=account_id,
            errors=errors,
            status_code=400,
            oauth_sign_in=oauth,
            **_kept_unless(oauth, request, secret_box, account_id, data),
        )
    try:
        saved = await smtp_accounts.update_smtp_account(
            db=db,
            secret_box=secret_box,
            user_id=user.id,
            account_id=account_id,
            account=account,
            password=data.password or None,
        )
    except (InvalidInput, Conflict) as exc:
        field_errors, error = _refused(exc)
        return await _form_page(
            db=db,
            user=user,
            form=data,
            account_id=account_id,
            errors=field_errors,
            error=error,
            status_code=400,
            oauth_sign_in=oauth,
            **_kept_unless(oauth, request, secret_box, account_id, data),
        )
    pending_secret.forget(request, _key(account_id))
    return back(request, present.Message("ok", f"Saved the SMTP account {saved.label}."), anchor=f"smtp-{saved.id}")


async def _test_form(
    request: AnyRequest,
    data: SmtpForm,
    *,
    db: Database,
    secret_box: SecretBox,
    settings: Settings,
    user: UserView,
    account_id: int | None,
    has_password: bool,
) -> Response[Any]:
    """Test Connection from the form, before saving: the steps (htmx), or the form again with them
    (its password kept for the next submit)."""
    data = pending_secret.restore(request, secret_box, _key(account_id), data)
    account, errors = data.read(has_password=has_password)
    if errors:
        if is_htmx(request):  # 200: htmx swaps only successful answers
            return page("settings/_steps.html", viewer=user, problems=list(errors.values()))
        kept = pending_secret.kept(request, secret_box, _key(account_id), data)
        return await _form_page(
            db=db, user=user, form=data, account_id=account_id, errors=errors, status_code=400, **kept
        )
    subject = SmtpSettings(account, password=data.password or None, account_id=account_id)
    report = await connection_test(
        request,
        user,
        run_connection_test(db=db, secret_box=secret_box, settings=settings, user_id=user.id, subject=subject),
    )
    if not isinstance(report, ConnectionReport):
        return report
    if is_htmx(request):
        return page("settings/_steps.html", viewer=user, **present.report_context(report))
    kept = pending_secret.kept(request, secret_box, _key(account_id), data)
    return await _form_page(
        db=db, user=user, form=data, account_id=account_id, **kept, **present.report_context(report)
    )


@post("/settings/smtp/test", name="smtp-test-unsaved")
async def test_unsaved(
    data: SmtpBody,
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    return await _test_form(
        request, data, db=db, secret_box=secret_box, settings=settings, user=user, account_id=None, has_password=False
    )


@post("/settings/smtp/{account_id:int}/edit/test")
async def test_edited(
    account_id: FromPath[int],
    data: SmtpBody,
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    current = await smtp_accounts.get_smtp_account(db=db, user_id=user.id, account_id=account_id)
    return await _test_form(
        request,
        data,
        db=db,
        secret_box=secret_box,
        settings=settings,
        user=user,
        account_id=account_id,
        has_password=current.has_password or await signs_in_with_provider(db, TargetKind.SMTP, user.id, account_id),
    )


@post("/settings/smtp/{account_id:int}/test", name="smtp-test")
async def test_saved(
    account_id: FromPath[int],
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
            db=db, secret_box=secret_box, settings=settings, user_id=user.id, subject=SavedSmtpAccount(account_id)
        ),
    )
    if not isinstance(report, ConnectionReport):
        return report
    if is_htmx(request):
        return page("settings/_steps.html", viewer=user, **present.report_context(report))
    return await connectivity_page(db, user, output_for=f"smtp-{account_id}", **present.report_context(report))


@post("/settings/smtp/{account_id:int}/delete", name="smtp-delete")
async def delete(
    account_id: FromPath[int], request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    await smtp_accounts.delete_smtp_account(db=db, user_id=user.id, account_id=account_id)
    return back(request, present.Message("ok", "Deleted the SMTP account and its stored password."))


ROUTES = [new_account, create_account, edit_account, save_account, test_unsaved, test_edited, test_saved, delete]
