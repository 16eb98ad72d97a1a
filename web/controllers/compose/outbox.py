"""GET /outbox: the user's messages not sent yet (queued, failed, delivery unknown) with their
status, next try and the server's last reply; POST /outbox/{id}/retry: "Send again" (or "Send
now" for a queued one), which answers with the outbox and what became of that message;
POST /outbox/{id}/cancel: "Cancel" for a queued message, which goes back to Drafts (refused
while a delivery attempt holds it: service.usecases.sending.cancel).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from service.config import Settings
from service.domain.outbox import OutboxStatus, SendResult
from service.domain.users import UserView
from service.errors import Conflict, InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases.sending import cancel_outbox_message, list_outbox, retry_outbox_message
from web.controllers.compose.render import RESULT_TITLES, respond


async def _outbox(
    request: Request[Any, Any, Any],
    user: UserView,
    db: Database,
    *,
    result: SendResult | None = None,
    cancelled: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Template:
    entries = await list_outbox(db=db, user_id=user.id)
    return respond(
        request,
        page_template="compose/outbox.html",
        fragment_template="compose/_outbox.html",
        viewer=user,
        status=status,
        entries=entries,
        waiting=len(entries),
        retried=result,
        notice=cancelled if result is None else f"{RESULT_TITLES[result.status]}. {result.detail}",
        error=error,
        statuses=OutboxStatus,
        tab="outbox",
    )


@get("/outbox", name="outbox")
async def outbox_page(
    request: Request[Any, Any, Any], user: NamedDependency[UserView], db: NamedDependency[Database]
) -> Template:
    return await _outbox(request, user, db)


@post("/outbox/{outbox_id:int}/retry", name="outbox-retry")
async def outbox_retry(
    request: Request[Any, Any, Any],
    outbox_id: FromPath[int],
    user: NamedDependency[UserView],
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    settings: NamedDependency[Settings],
) -> Template:
    try:
        result = await retry_outbox_message(
            db=db, secret_box=secret_box, settings=settings, user_id=user.id, outbox_id=outbox_id
        )
    except (InvalidInput, NotFound) as exc:
        return await _outbox(request, user, db, error=exc.message, status=404 if isinstance(exc, NotFound) else 400)
    return await _outbox(request, user, db, result=result)


@post("/outbox/{outbox_id:int}/cancel", name="outbox-cancel")
async def outbox_cancel(
    request: Request[Any, Any, Any],
    outbox_id: FromPath[int],
    user: NamedDependency[UserView],
    db: NamedDependency[Database],
) -> Template:
    try:
        cancelled = await cancel_outbox_message(db=db, user_id=user.id, outbox_id=outbox_id)
    except (Conflict, NotFound) as exc:
        return await _outbox(request, user, db, error=exc.message, status=404 if isinstance(exc, NotFound) else 409)
    return await _outbox(request, user, db, cancelled=cancelled.detail)


ROUTES = [outbox_page, outbox_retry, outbox_cancel]
