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
from service.domain.folder_names import ARCHIVE
from service.domain.mailbox import FolderView
from service.domain.users import UserView
from service.domain.values import SpecialUse
from service.persistence.database import Database
from service.usecases.reading import MessagePage, folders_and_page, list_folders, open_message
from service.usecases.reading.pulse import pulse_of
from service.usecases.retrieval_tasks import list_tasks
from service.usecases.users import needs_first_admin
from web.controllers.mail.arrivals import Arrival, arrivals
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


async def _arrivals(db: Database, user_id: int, folders: list[FolderView], listing: MessagePage) -> list[Arrival]:
    """Where the user's tasks put their mail, for an empty Inbox to say (nothing on any other page)."""
    empty_inbox = listing.folder.special_use is SpecialUse.INBOX and not listing.messages
    if not empty_inbox or listing.older or listing.newer:
        return []
    return arrivals(await list_tasks(db=db, user_id=user_id), folders)


async def _list_page(
    db: Database,
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
        in_archive=folder.path == ARCHIVE,
        arrivals=await _arrivals(db, viewer.id, folders, listing),
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
    return await _list_page(db, viewer, folders, listing, live_url=_own_url(request))


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
    return await _list_page(
        db, user, folders, listing, live_url=_own_url(request), before=before, after=after, notice=status
    )


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
        in_archive=current.path == ARCHIVE,
    )


ROUTES = [home, folder_page, message_page]
