"""POST /compose/draft: "Save draft", and the compose page's autosave (static/js/compose-draft.js).

The same multipart form as sending. A plain or htmx request answers with the
form again, continuing the saved draft ("Draft saved"; its files now offered as
the draft's own, the file chooser empty). A request that accepts JSON (the
autosave) answers `{"draft_id", "draft_key", "saved_at", "message"}`, or
`{"error"}` with 400, and the page updates its hidden `draft_id` itself.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency

from service.domain.compose import Attachment
from service.domain.users import UserView
from service.errors import TributaryError
from service.persistence.database import Database
from service.usecases.replies import forwarded_attachments
from service.usecases.sending import draft_attachments, offered_attachments, save_draft
from web.controllers.compose.forms import ComposeValues, read_form
from web.controllers.compose.pages import MAX_UPLOAD_BYTES, form_page

DRAFT_SAVED = "Draft saved"


def _wants_json(request: Request[Any, Any, Any]) -> bool:
    return "application/json" in request.headers.get("accept", "")


async def _attachments(db: Database, user: UserView, values: ComposeValues) -> tuple[Attachment, ...]:
    """The files the form holds: the forwarded message's kept ones and the stored draft's kept ones."""
    forwarded: tuple[Attachment, ...] = ()
    if values.forward_of is not None:
        forwarded = await forwarded_attachments(db=db, user_id=user.id, message_id=values.forward_of, keep=values.kept)
    return forwarded + await draft_attachments(db=db, user_id=user.id, ref=values.draft_ref(), keep=values.draft_kept)


@post("/compose/draft", name="compose-draft", status_code=200, request_max_body_size=MAX_UPLOAD_BYTES)
async def compose_save_draft(
    request: Request[Any, Any, Any],
    user: NamedDependency[UserView],
    db: NamedDependency[Database],
) -> Response[Any]:
    """Store what the form holds in Drafts, replacing the draft's previous version."""
    values, uploads = await read_form(request)
    try:
        saved = await save_draft(
            db=db,
            user_id=user.id,
            from_account_id=values.draft_account_id(),
            draft=values.draft((*await _attachments(db, user, values), *uploads)),
            replaces=values.draft_ref(),
            reply_to_message_id=values.reply_to,
        )
    except TributaryError as exc:
        if _wants_json(request):
            return Response({"error": exc.message}, status_code=400)
        values.draft_offered = await offered_attachments(db=db, user_id=user.id, ref=values.draft_ref())
        return await form_page(request, user, db, values, error=f"The draft was not saved. {exc.message}", status=400)
    if _wants_json(request):
        return Response(
            {
                "draft_id": saved.message_id,
                "draft_key": saved.key,
                "saved_at": saved.saved_at.isoformat(),
                "message": DRAFT_SAVED,
            }
        )
    # The saved draft now holds every file: offer them as its own, no longer as the forwarded message's.
    values.draft_id, values.draft_key = saved.message_id, saved.key
    values.draft_offered, values.draft_kept = saved.attachments, frozenset(a.key for a in saved.attachments)
    values.forward_of, values.offered, values.kept, values.uploads = None, (), frozenset(), 0
    return await form_page(request, user, db, values, saved=saved)


ROUTES = [compose_save_draft]
