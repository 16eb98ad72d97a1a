"""One user on the Administration page: GET /admin/users/{id} shows their details and what an
administrator can do to them; each action is its own POST, answered with a redirect (and a
notice) or, after a mistake, the page again with the sentence (never a password):

- POST /admin/users/{id}: save the display name and administrator role;
- POST /admin/users/{id}/disable and /enable: a disabled user cannot sign in, their sessions end;
- POST /admin/users/{id}/password: set a new password (typed twice); their sessions end (not the
  administrator's own: that is Settings, Account, which asks for the current one);
- POST /admin/users/{id}/delete: with the confirmation box ticked, delete them and everything
  that is theirs, then back to the users list.

An administrator cannot disable, delete or demote themselves, and the last administrator
stays one (service.usecases.user_admin refuses, with Conflict).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath

from service.domain.users import AdminUserView, UserView
from service.errors import Conflict, InvalidInput, NotFound
from service.persistence.database import Database
from service.usecases import user_admin
from web.controllers.admin.forms import ON, DeleteUserForm, NewPasswordForm, UserEditForm
from web.controllers.settings.common import flash, pop_flash
from web.controllers.settings.present import Message
from web.support.rendering import page, see_other, status_for

AnyRequest = Request[Any, Any, Any]
EditBody = Annotated[UserEditForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
PasswordBody = Annotated[NewPasswordForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
DeleteBody = Annotated[DeleteUserForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
PASSWORDS_DIFFER = "The two passwords do not match."
CONFIRM_DELETE = "Tick the box to confirm that everything of this user is deleted."


async def _person(db: Database, user_id: int) -> AdminUserView:
    found = next((u for u in await user_admin.list_user_accounts(db=db) if u.id == user_id), None)
    if found is None:
        raise NotFound("This user does not exist.")
    return found


async def _user_page(
    request: AnyRequest,
    db: Database,
    admin: UserView,
    user_id: int,
    *,
    errors: dict[str, str] | None = None,
    form: UserEditForm | None = None,
    status: int = 200,
) -> Response[Any]:
    person = await _person(db, user_id)
    return page(
        "admin/user.html",
        viewer=admin,
        nav="admin",
        status_code=status,
        person=person,
        is_self=person.id == admin.id,
        form=form or UserEditForm(person.display_name, ON if person.is_admin else ""),
        errors=errors or {},
        flash=None if errors else pop_flash(request),
    )


def _done(request: AnyRequest, user_id: int, text: str) -> Response[Any]:
    flash(request, Message("ok", text))
    return see_other(f"/admin/users/{user_id}")


@get("/users/{user_id:int}", name="admin-user")
async def user_page(
    request: AnyRequest, user_id: FromPath[int], admin: NamedDependency[UserView], db: NamedDependency[Database]
) -> Response[Any]:
    return await _user_page(request, db, admin, user_id)


@post("/users/{user_id:int}")
async def save_user(
    request: AnyRequest,
    user_id: FromPath[int],
    data: EditBody,
    admin: NamedDependency[UserView],
    db: NamedDependency[Database],
) -> Response[Any]:
    try:
        saved = await user_admin.update_user(
            db=db, actor_id=admin.id, user_id=user_id, display_name=data.display_name, is_admin=data.is_admin == ON
        )
    except (InvalidInput, Conflict) as exc:
        return await _user_page(
            request, db, admin, user_id, errors={"edit": exc.message}, form=data, status=status_for(exc)
        )
    return _done(request, user_id, f"Saved {saved.email}.")


async def _set_active(request: AnyRequest, db: Database, admin: UserView, user_id: int, active: bool) -> Response[Any]:
    try:
        person = await user_admin.set_user_active(db=db, actor_id=admin.id, user_id=user_id, active=active)
    except Conflict as exc:
        return await _user_page(request, db, admin, user_id, errors={"state": exc.message}, status=status_for(exc))
    if active:
        return _done(request, user_id, f"Enabled {person.email}: they can sign in again.")
    return _done(request, user_id, f"Disabled {person.email}: they cannot sign in, and their sessions have ended.")


@post("/users/{user_id:int}/disable")
async def disable_user(
    request: AnyRequest, user_id: FromPath[int], admin: NamedDependency[UserView], db: NamedDependency[Database]
) -> Response[Any]:
    return await _set_active(request, db, admin, user_id, False)


@post("/users/{user_id:int}/enable")
async def enable_user(
    request: AnyRequest, user_id: FromPath[int], admin: NamedDependency[UserView], db: NamedDependency[Database]
) -> Response[Any]:
    return await _set_active(request, db, admin, user_id, True)


@post("/users/{user_id:int}/password")
async def set_password(
    request: AnyRequest,
    user_id: FromPath[int],
    data: PasswordBody,
    admin: NamedDependency[UserView],
    db: NamedDependency[Database],
) -> Response[Any]:
    try:
        if data.password != data.password_confirm:
            raise InvalidInput(PASSWORDS_DIFFER)
        person = await user_admin.set_user_password(db=db, actor_id=admin.id, user_id=user_id, password=data.password)
    except (InvalidInput, Conflict) as exc:
        return await _user_page(request, db, admin, user_id, errors={"password": exc.message}, status=status_for(exc))
    return _done(request, user_id, f"Set a new password for {person.email}; their sessions have ended.")


@post("/users/{user_id:int}/delete")
async def delete_user(
    request: AnyRequest,
    user_id: FromPath[int],
    data: DeleteBody,
    admin: NamedDependency[UserView],
    db: NamedDependency[Database],
) -> Response[Any]:
    if data.confirm != ON:
        return await _user_page(request, db, admin, user_id, errors={"delete": CONFIRM_DELETE}, status=400)
    try:
        gone = await user_admin.delete_user(db=db, actor_id=admin.id, user_id=user_id)
    except Conflict as exc:
        return await _user_page(request, db, admin, user_id, errors={"delete": exc.message}, status=status_for(exc))
    flash(request, Message("ok", f"Deleted {gone.email} and all their mail, tasks and accounts."))
    return see_other("/admin#users")


ROUTES = [user_page, save_user, disable_user, enable_user, set_password, delete_user]
