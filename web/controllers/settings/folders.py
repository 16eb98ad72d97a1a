"""Settings, Folders: the user's folders as a tree with their message counts, and forms to create,
rename, move and delete them (service.usecases.folders); also "Empty Trash" / "Empty Junk" from the
message list's toolbar.

Every change is a plain form POST with its CSRF token, answered by a redirect with a flash message,
or by the page again with the error sentence (400/409). Deleting a folder and emptying the Trash or
Junk ask first: htmx shows a confirm dialog and posts `confirm=yes`; without scripts the POST
answers with a page that asks, whose button posts `confirm=yes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from service.domain.mailbox import FolderView
from service.domain.users import UserView
from service.domain.values import SpecialUse
from service.errors import Conflict, InvalidInput
from service.persistence.database import Database
from service.usecases import folders
from service.usecases.reading.folders import list_folders
from web.controllers.settings.common import AnyRequest, flash, is_htmx, pop_flash
from web.controllers.settings.present import Message
from web.support.rendering import page, see_other, status_for

PATH = "/settings/folders"


@dataclass
class Node:
    """A folder in the tree, with what the page may offer for it."""

    folder: FolderView
    editable: bool
    below: int  # how many subfolders go with it
    children: list[Node] = field(default_factory=list)


def _tree(views: list[FolderView]) -> list[Node]:
    """`views` come depth first (reading.folders); each folder's node goes under its parent's."""
    nodes: dict[int, Node] = {}
    roots: list[Node] = []
    for view in views:
        node = Node(
            folder=view,
            editable=not folders.is_special(view),
            below=sum(1 for t in views if t.path.startswith(view.path + "/")),
        )
        nodes[view.id] = node
        parent = nodes.get(view.parent_id) if view.parent_id is not None else None
        (parent.children if parent is not None else roots).append(node)
    return roots


async def _page(
    db: Database,
    user: UserView,
    *,
    flash_message: Message | None = None,
    error: str | None = None,
    typed: str = "",
    status: int = 200,
) -> Response[Any]:
    views = await list_folders(db=db, user_id=user.id)
    return page(
        "settings/folders.html",
        viewer=user,
        status_code=status,
        nav="settings",
        section="folders",
        flash=flash_message,
        error=error,
        typed=typed,
        tree=_tree(views),
        parents=[f for f in views if f.special_use is not SpecialUse.OUTBOX],
        movable=[f for f in views if not folders.is_special(f)],
    )


def _done(request: AnyRequest, text: str, path: str = PATH) -> Response[Any]:
    flash(request, Message("ok", text))
    if is_htmx(request):  # after an hx-confirm: a full-page redirect
        return Response(content=b"", status_code=200, headers={"HX-Redirect": path})
    return see_other(path)


def _id(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() and len(value) < 19 else None


async def _folder(db: Database, user: UserView, folder_id: int) -> FolderView:
    found = next((f for f in await list_folders(db=db, user_id=user.id) if f.id == folder_id), None)
    if found is None:
        raise folders.FolderMissing("This folder does not exist.")
    return found


def _confirm(user: UserView, *, title: str, question: str, action: str, button: str, back: str) -> Response[Any]:
    """The page that asks before a deletion, for a browser without scripts."""
    return page(
        "settings/folders.html",
        viewer=user,
        nav="settings",
        section="folders",
        confirm={"title": title, "question": question, "action": action, "button": button, "back": back},
    )


def _confirmed(request: AnyRequest, form: Any) -> bool:
    """Asked already: by htmx's confirm dialog (the request says it is htmx's), or by the confirm page."""
    return is_htmx(request) or form.get("confirm") == "yes"


@get(PATH, name="settings-folders")
async def folders_page(
    request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    return await _page(db, user, flash_message=pop_flash(request))


@post(PATH)
async def create(request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]) -> Response[Any]:
    form = await request.form()
    name = str(form.get("name", ""))
    try:
        made = await folders.create_folder(db=db, user_id=user.id, name=name, parent_id=_id(form.get("parent")))
    except (InvalidInput, Conflict) as exc:
        return await _page(db, user, error=exc.message, typed=name[:300], status=status_for(exc))
    return _done(request, f"Created the folder {made.path}.", f"{PATH}#folder-{made.id}")


@post(PATH + "/{folder_id:int}/rename")
async def rename(
    folder_id: FromPath[int], request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    form = await request.form()
    try:
        renamed = await folders.rename_folder(
            db=db, user_id=user.id, folder_id=folder_id, name=str(form.get("name", ""))
        )
    except (InvalidInput, Conflict) as exc:
        return await _page(db, user, error=exc.message, status=status_for(exc))
    return _done(request, f"Renamed the folder to {renamed.path}.", f"{PATH}#folder-{renamed.id}")


@post(PATH + "/move")
async def move(request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]) -> Response[Any]:
    """One form for the page (a folder, and where it goes): a select of targets per folder would
    make the page grow with the square of the folders, and IMAP mirrors bring hundreds."""
    form = await request.form()
    folder_id = _id(form.get("folder"))
    if folder_id is None:
        return await _page(db, user, error="Choose the folder to move.", status=400)
    try:
        moved = await folders.move_folder(
            db=db, user_id=user.id, folder_id=folder_id, parent_id=_id(form.get("parent"))
        )
    except (InvalidInput, Conflict) as exc:
        return await _page(db, user, error=exc.message, status=status_for(exc))
    parent = moved.path.rpartition("/")[0]
    where = f"into {parent}" if parent else "to the top level"
    return _done(request, f"Moved the folder {moved.name} {where}.", f"{PATH}#folder-{moved.id}")


@post(PATH + "/{folder_id:int}/delete")
async def delete(
    folder_id: FromPath[int], request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    form = await request.form()
    folder = await _folder(db, user, folder_id)
    if folders.is_special(folder):  # refused before asking
        raise folders.SpecialFolderLocked(f"{folder.name} is a special folder; it cannot be renamed, moved or deleted.")
    if not _confirmed(request, form):
        return _confirm(
            user,
            title=f"Delete the folder {folder.name}?",
            question=f"The folder {folder.path} and its subfolders are deleted; their messages go to Trash.",
            action=f"{PATH}/{folder_id}/delete",
            button="Delete folder",
            back=PATH,
        )
    try:
        gone = await folders.delete_folder(db=db, user_id=user.id, folder_id=folder_id)
    except (InvalidInput, Conflict) as exc:
        return await _page(db, user, error=exc.message, status=status_for(exc))
    moved = f"{gone.trashed} message{'' if gone.trashed == 1 else 's'}"
    return _done(request, f"Deleted the folder {folder.path}; {moved} moved to Trash.")


@post("/mail/folders/{folder_id:int}/empty", name="folder-empty")
async def empty(
    folder_id: FromPath[int], request: AnyRequest, db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    """ "Empty Trash" / "Empty Junk" from the message list: every message in it, for good."""
    form = await request.form()
    folder = await _folder(db, user, folder_id)
    back = f"/mail/folders/{folder_id}"
    if folder.special_use not in folders.EMPTYABLE:  # refused before asking
        raise InvalidInput(folders.NOT_EMPTYABLE)
    if not _confirmed(request, form):
        return _confirm(
            user,
            title=f"Empty {folder.name}?",
            question=f"All {folder.total} messages in {folder.name} are deleted for good. This cannot be undone.",
            action=f"/mail/folders/{folder_id}/empty",
            button=f"Empty {folder.name}",
            back=back,
        )
    count = await folders.empty_folder(db=db, user_id=user.id, folder_id=folder_id)
    path = f"{back}?{urlencode({'notice': 'deleted', 'n': str(count)})}"
    if is_htmx(request):
        return Response(content=b"", status_code=200, headers={"HX-Redirect": path})
    return see_other(path)


ROUTES = [folders_page, create, rename, move, delete, empty]
