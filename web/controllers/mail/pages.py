"""The mail pages: a folder's message list (the home page shows the Inbox) and a message.

GET /                          the Inbox (or sign in / first setup)
GET /mail/folders/{id}         a folder; ?before=<cursor> older, ?after=<cursor> newer
GET /mail/messages/{id}        a message (marks it read); ?images=1 shows remote images

Both pages share the layout of mail/_layout.html: the folder tree with unread
counts, then the list or the message. htmx swaps just that layout when a link
or form inside it is followed (hx-boost); without script, they are ordinary
links and forms.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Response

from service.config import Settings
from service.domain.mailbox import FolderView
from service.domain.users import UserView
from service.domain.values import SpecialUse
from service.persistence.database import Database
from service.usecases.reading import MessagePage, folders_and_page, list_folders, open_message
from service.usecases.reading.pulse import pulse_of
from service.usecases.users import needs_first_admin
from web.controllers.mail.links import inline_url_maker
from web.controllers.mail.present import (
    folder_children,
    human_size,
    list_rows,
    long_date,
    move_targets,
    notice_text,
)
from web.support.rendering import page, see_other


def _layout(folders: list[FolderView], current: FolderView, *, live_url: str) -> dict[str, Any]:
    """The layout's context. `pulse` (the folders' fingerprint and the title's unread count) and
    `live_url` (what static/js/live.js fetches again when the pulse changes) keep the page live."""
    return {
        "nav": "mail",
        "folders": folders,
        "children": folder_children(folders),
        "current_folder": current,
        "move_targets": move_targets(folders, current.id),
        "pulse": pulse_of(folders),
        "live_url": live_url,
    }


def _own_url(request: Request[Any, Any, Any]) -> str:
    """This page's path and query, to fetch it again (the current folder and page stay)."""
    query = request.url.query
    return f"{request.url.path}?{query}" if query else request.url.path


def _list_page(
    viewer: UserView,
    folders: list[FolderView],
    listing: MessagePage,
    *,
    live_url: str,
    before: str | None = None,
    after: str | None = None,
    notice: str | None = None,
) -> Response[Any]:
    folder = listing.folder
    return page(
        "mail/list.html",
        viewer=viewer,
        **_layout(folders, folder, live_url=live_url),
        listing=listing,
        rows=list_rows(listing.messages, datetime.now(UTC)),
        in_trash=folder.special_use is SpecialUse.TRASH,
        before=before,
        after=after,
        notice=notice,
    )


@get("/", name="home")
async def home(
    request: Request[Any, Any, Any], db: NamedDependency[Database], viewer: NamedDependency[UserView | None]
) -> Response[Any]:
    """Signed in: the Inbox. Otherwise sign in, or create the first administrator."""
    if viewer is None:
        return see_other("/setup" if await needs_first_admin(db=db) else "/login")
    folders, listing = await folders_and_page(db=db, user_id=viewer.id)
    return _list_page(viewer, folders, listing, live_url=_own_url(request))


@get("/mail/folders/{folder_id:int}", name="mail-folder")
async def folder_page(
    request: Request[Any, Any, Any],
    folder_id: FromPath[int],
    db: NamedDependency[Database],
    user: NamedDependency[UserView],
    before: FromQuery[str | None] = None,
    after: FromQuery[str | None] = None,
    notice: FromQuery[str | None] = None,
    n: FromQuery[int | None] = None,
    to: FromQuery[int | None] = None,
) -> Response[Any]:
    folders, listing = await folders_and_page(db=db, user_id=user.id, folder_id=folder_id, before=before, after=after)
    status = notice_text(notice, n, folder_id=to, folders=folders)
    return _list_page(user, folders, listing, live_url=_own_url(request), before=before, after=after, notice=status)


@get("/mail/messages/{message_id:int}", name="mail-message")
async def message_page(
    message_id: FromPath[int],
    db: NamedDependency[Database],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
    images: FromQuery[bool] = False,
) -> Response[Any]:
    opened = await open_message(
        db=db,
        user_id=user.id,
        message_id=message_id,
        allow_remote_images=images,
        inline_url=inline_url_maker(settings, user_id=user.id, message_id=message_id),
    )
    folders = await list_folders(db=db, user_id=user.id)  # after opening: the unread count is current
    current = next((f for f in folders if f.id == opened.folder.id), opened.folder)
    return page(
        "mail/message.html",
        viewer=user,
        # Live updates refresh only the folder tree here, from the folder's page: the open message stays.
        **_layout(folders, current, live_url=f"/mail/folders/{current.id}"),
        message=opened,
        view=opened.view,
        date_long=long_date(opened.view.date),
        human_size=human_size,
        images=images,
        in_trash=current.special_use is SpecialUse.TRASH,
    )


ROUTES = [home, folder_page, message_page]
