"""POST /mail/messages/action: mark read or unread, move, delete, for one message or a selection.

One form posts here from the list (checkboxes `ids`) and from a message's page
(one hidden `ids`); the clicked button's `action` says what to do: read,
unread, move (to the folder `target`), archive (move to the top-level folder
"Archive", made on first use: there is no Archive special folder), delete (to
the Trash; in the Trash, for good). Then the browser goes back to
the list it came from (`folder`, and the page's `before`/`after` cursor), with
a status line. The way back is built here from those fields, never taken from
the form as a URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, post
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency
from litestar.response import Response

from service.domain.folder_names import ARCHIVE
from service.domain.retrieval import LocalTarget
from service.domain.users import UserView
from service.errors import InvalidInput
from service.persistence.database import Database
from service.usecases.mailbox import delete_messages, move_messages, set_seen
from service.usecases.retrieval.store import resolve_folder
from web.support.rendering import see_other

ACTIONS = ("read", "unread", "move", "archive", "delete")


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() and len(value) < 19 else None


def _back(form: FormMultiDict, notice: str, count: int, target: int | None = None) -> str:
    """The list the form came from, with the status line's code, count and (after a move) target."""
    folder_id = _int(form.get("folder"))
    query: dict[str, str] = {}
    for key in ("before", "after"):
        value = form.get(key)
        if isinstance(value, str) and value and len(value) <= 40:
            query[key] = value
    query.update(notice=notice, n=str(count))
    if notice == "moved" and target is not None:
        query["to"] = str(target)
    base = f"/mail/folders/{folder_id}" if folder_id is not None else "/"
    return f"{base}?{urlencode(query)}"


async def _apply(form: FormMultiDict, *, db: Database, user_id: int, ids: list[int]) -> tuple[str, int, int | None]:
    """Do what the clicked button says: the status line's code, the count, and the folder moved to."""
    action = form.get("action")
    if action not in ACTIONS:
        raise InvalidInput("Choose what to do with the messages.")
    if action in ("read", "unread"):
        count = await set_seen(db=db, user_id=user_id, message_ids=ids, seen=action == "read")
        return str(action), count, None
    if action in ("move", "archive"):
        if action == "archive":
            target: int | None = await resolve_folder(db, user_id, LocalTarget(None, ARCHIVE))
        else:
            target = _int(form.get("target"))
        if target is None:
            return "nofolder", 0, None
        return "moved", await move_messages(db=db, user_id=user_id, message_ids=ids, folder_id=target), target
    outcome = await delete_messages(db=db, user_id=user_id, message_ids=ids)
    return ("deleted", outcome.deleted, None) if outcome.deleted else ("trashed", outcome.trashed, None)


@post("/mail/messages/action", name="mail-action")
async def message_action(
    request: Request[Any, Any, Any], db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[Any]:
    form = await request.form()
    ids = [i for i in (_int(v) for v in form.getall("ids", [])) if i is not None]
    if not ids:
        return see_other(_back(form, "none", 0))
    notice, count, target = await _apply(form, db=db, user_id=user.id, ids=ids)
    return see_other(_back(form, notice, count, target))


ROUTES = [message_action]
