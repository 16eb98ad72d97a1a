"""What handlers receive by dependency injection: the process's Database, SecretBox and
Settings (kept in app.state by the lifespan), and who is signed in.

`viewer` is the signed-in user or None; `user` is the signed-in user, and asking for
it on a page sends an anonymous visitor to the sign-in page (`SignInRequired`).

Loading the viewer also counts what needs their action (one small query) into
`request.state.needs_action`, which the header's badge (templates/_badge.html) reads.
"""

from __future__ import annotations

from typing import Any, cast

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException

from service.config import Settings
from service.domain.users import UserView
from service.errors import NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases.users import signed_in_user
from web.support.sessions import session_stamp, session_user_id, sign_out


class SignInRequired(NotAuthorizedException):
    """The page needs a signed-in user; the error handler redirects to /login."""


def provide_db(state: State) -> Database:
    return cast(Database, state.db)


def provide_secret_box(state: State) -> SecretBox:
    return cast(SecretBox, state.secret_box)


def provide_settings(state: State) -> Settings:
    return cast(Settings, state.settings)


async def provide_viewer(request: Request[Any, Any, Any], db: NamedDependency[Database]) -> UserView | None:
    """The signed-in user, or None. A session whose user is gone or disabled, or whose password changed
    since it began, is ended (signed out: its stored data deleted, the cookie expired)."""
    user_id = session_user_id(request)
    if user_id is None:
        return None
    try:
        user, request.state.needs_action = await signed_in_user(
            db=db, user_id=user_id, session_stamp=session_stamp(request)
        )
    except NotFound:
        sign_out(request)
        return None
    return user


async def provide_user(viewer: NamedDependency[UserView | None]) -> UserView:
    if viewer is None:
        raise SignInRequired("Sign in to continue.")
    return viewer


DEPENDENCIES: dict[str, Provide] = {
    "db": Provide(provide_db, sync_to_thread=False),
    "secret_box": Provide(provide_secret_box, sync_to_thread=False),
    "settings": Provide(provide_settings, sync_to_thread=False),
    "viewer": Provide(provide_viewer),
    "user": Provide(provide_user),
}
