"""The mail home page: the signed-in user's folders. Message lists and reading join it later."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.response import Response

from service.domain.users import UserView
from service.persistence.database import Database
from service.usecases.reading import list_folders
from service.usecases.users import needs_first_admin
from web.support.rendering import page, see_other


@get("/", name="home")
async def home(db: NamedDependency[Database], viewer: NamedDependency[UserView | None]) -> Response[Any]:
    """Signed in: the mail page. Otherwise sign in, or create the first administrator."""
    if viewer is None:
        return see_other("/setup" if await needs_first_admin(db=db) else "/login")
    return page("mail/home.html", viewer=viewer, folders=await list_folders(db=db, user_id=viewer.id), nav="mail")


ROUTES = [home]
