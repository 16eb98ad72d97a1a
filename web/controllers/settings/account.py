"""GET/POST /settings/account: the signed-in user changes their own password.

They type the current password (checked like a sign-in, and counted by the same login
throttle) and the new one twice; the new one must meet the password rules. On success every
other session of theirs ends at its next request (their stamp no longer matches, see
support.sessions) and this one stays signed in under a new id and CSRF token. Passwords are
never sent back to the browser, not even after a mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body

from service.domain.users import UserView
from service.errors import AuthenticationFailed, Conflict, InvalidInput
from service.persistence.database import Database
from service.usecases.login_throttle import SignInThrottled
from service.usecases.users import change_password
from web.controllers.auth import login_throttle
from web.controllers.settings.common import AnyRequest, flash, pop_flash
from web.controllers.settings.present import Message
from web.support.rendering import page, see_other, status_for
from web.support.sessions import restamp

PATH = "/settings/account"
PASSWORDS_DIFFER = "The two new passwords do not match."
CHANGED = "Your password is changed. You were signed out everywhere else."


@dataclass
class PasswordForm:
    current_password: str = ""
    new_password: str = ""
    new_password_confirm: str = ""


PasswordBody = Annotated[PasswordForm, Body(media_type=RequestEncodingType.URL_ENCODED)]


def _page(
    user: UserView, *, flash_message: Message | None = None, errors: dict[str, str] | None = None, status: int = 200
) -> Response[Any]:
    return page(
        "settings/account.html",
        viewer=user,
        status_code=status,
        nav="settings",
        section="account",
        flash=flash_message,
        errors=errors or {},
        error="Your password was not changed." if errors else None,
    )


@get(PATH, name="settings-account")
async def account_page(request: AnyRequest, user: NamedDependency[UserView]) -> Response[Any]:
    return _page(user, flash_message=pop_flash(request))


@post(PATH)
async def change_own_password(
    request: AnyRequest, data: PasswordBody, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    if data.new_password != data.new_password_confirm:
        return _page(user, errors={"new_password_confirm": PASSWORDS_DIFFER}, status=400)
    try:
        stamp = await change_password(
            db=db,
            user_id=user.id,
            current_password=data.current_password,
            new_password=data.new_password,
            throttle=login_throttle(request),
            client=request.client.host if request.client else None,
        )
    except AuthenticationFailed as exc:
        status = 429 if isinstance(exc, SignInThrottled) else status_for(exc)
        return _page(user, errors={"current_password": exc.message}, status=status)
    except (InvalidInput, Conflict) as exc:
        return _page(user, errors={"new_password": exc.message}, status=status_for(exc))
    restamp(request, stamp)
    flash(request, Message("ok", CHANGED))
    return see_other(PATH)


ROUTES = [account_page, change_own_password]
