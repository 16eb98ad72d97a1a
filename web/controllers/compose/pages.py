"""GET /compose (new, ?reply=ID, ?reply_all=ID, ?forward=ID, ?to=ADDR, ?draft=ID) and POST /compose (send).

The form offers "Send From" (send_from_choices, preselected by default_sender:
for an answer, the address the original was delivered to). Sending goes through
send_message; the answer is the result (sent, queued with the next try, failed
with the server's reason, refused recipients, delivery unknown), or the form
again with its mistakes inline and everything typed kept, except chosen files,
which a browser cannot be given back (the form says so).

Every form carries a `draft_key` (the Message-ID its saved drafts share, see
service.usecases.sending.drafts); ?draft=ID ("Edit draft") fills the form from
a message in Drafts and offers its attachments again. Sending removes the draft.
Saving a draft is `drafts` (POST /compose/draft).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Template

from service.config import Settings
from service.domain.compose import Attachment
from service.domain.users import UserView
from service.errors import NotFound, TributaryError
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases.domains import get_domain_settings
from service.usecases.replies import OriginalAttachment, ReplyMode, forwarded_attachments, start_reply
from service.usecases.replies.original import clean
from service.usecases.sending import (
    SavedDraft,
    default_sender,
    draft_attachments,
    list_outbox,
    new_draft_key,
    offered_attachments,
    open_draft,
    send_from_choices,
    send_message,
    signatures,
)
from web.controllers.compose.forms import ComposeValues, field_errors, read_form
from web.controllers.compose.render import RESULT_TITLES, respond

# The largest upload the form accepts (413 beyond). Each domain's own maximum message size
# is checked when sending; attachments grow by a third in base64, so this leaves room.
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
HEADINGS = {
    None: "New message",
    ReplyMode.REPLY: "Reply",
    ReplyMode.REPLY_ALL: "Reply all",
    ReplyMode.FORWARD: "Forward",
}
FIX_BELOW = "The message was not sent. Correct the fields marked below."
EDIT_DRAFT = "Edit draft"


async def _no_sender_reason(db: Database, user: UserView) -> str | None:
    """Why the user has nothing to send from: the administrator's switch, or None (no account yet)."""
    try:
        domain = await get_domain_settings(db=db, name=user.domain)
    except NotFound:
        return None
    if domain.smtp_accounts_enabled:
        return None
    return (
        f"Your administrator turned off SMTP accounts for {domain.name}, and there is no company relay: "
        "you cannot send mail for now."
    )


async def _offered(db: Database, user: UserView, message_id: int) -> tuple[OriginalAttachment, ...]:
    try:
        draft = await start_reply(db=db, user_id=user.id, message_id=message_id, mode=ReplyMode.FORWARD)
    except NotFound:
        return ()
    return draft.attachments


async def form_page(
    request: Request[Any, Any, Any],
    user: UserView,
    db: Database,
    values: ComposeValues,
    *,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
    saved: SavedDraft | None = None,
) -> Template:
    """The compose form (page or htmx fragment) with `values`, its mistakes, or "Draft saved"."""
    choices = await send_from_choices(db=db, user_id=user.id)
    if not values.draft_key:
        values.draft_key = new_draft_key(user.email)
    return respond(
        request,
        page_template="compose/page.html",
        fragment_template="compose/_area.html",
        viewer=user,
        status=status,
        heading=EDIT_DRAFT if values.draft_id is not None and values.mode is None else HEADINGS[values.mode],
        values=values,
        saved=saved,
        choices=choices,
        signatures=await signatures(db=db, user_id=user.id),
        no_sender_reason=None if choices else await _no_sender_reason(db, user),
        errors=errors or {},
        error=error,
        waiting=len(await list_outbox(db=db, user_id=user.id)),
        tab="compose",
    )


@get("/compose", name="compose")
async def compose_page(
    request: Request[Any, Any, Any],
    user: NamedDependency[UserView],
    db: NamedDependency[Database],
    reply: FromQuery[int | None] = None,
    reply_all: FromQuery[int | None] = None,
    forward: FromQuery[int | None] = None,
    to: FromQuery[str | None] = None,
    draft: FromQuery[int | None] = None,
) -> Template:
    """A new message, the draft of an answer or forward of one of the user's messages, or a saved draft."""
    if draft is not None:
        return await _edit_draft(request, user, db, draft)
    values, original = ComposeValues(to=clean(to or "")), None
    for wanted, message_id in (
        (ReplyMode.REPLY, reply),
        (ReplyMode.REPLY_ALL, reply_all),
        (ReplyMode.FORWARD, forward),
    ):
        if message_id is not None:
            started = await start_reply(db=db, user_id=user.id, message_id=message_id, mode=wanted)
            values, original = ComposeValues.from_draft(started), message_id
            break
    default = await default_sender(db=db, user_id=user.id, reply_to_message_id=original)
    values.send_from = default.key if default is not None else ""
    return await form_page(request, user, db, values)


async def _edit_draft(request: Request[Any, Any, Any], user: UserView, db: Database, message_id: int) -> Template:
    """ "Edit draft": the form as the draft left it; Send From is the choice with the draft's From address."""
    opened = await open_draft(db=db, user_id=user.id, message_id=message_id)
    choices = await send_from_choices(db=db, user_id=user.id)
    chosen = next((c for c in choices if c.address.lower() == opened.from_address), None)
    chosen = chosen or next((c for c in choices if c.is_default), None)
    values = ComposeValues.from_saved_draft(opened, chosen.key if chosen is not None else "")
    return await form_page(request, user, db, values)


@post("/compose", request_max_body_size=MAX_UPLOAD_BYTES)
async def compose_send(
    request: Request[Any, Any, Any],
    user: NamedDependency[UserView],
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    settings: NamedDependency[Settings],
) -> Template:
    """Send the message; answer with its result, or with the form and what is wrong."""
    values, uploads = await read_form(request)
    if values.forward_of is not None:
        values.offered = await _offered(db, user, values.forward_of)
    values.draft_offered = await offered_attachments(db=db, user_id=user.id, ref=values.draft_ref())
    errors = field_errors(values)
    if errors:
        return await form_page(request, user, db, values, errors=errors, error=FIX_BELOW, status=400)
    try:
        forwarded: tuple[Attachment, ...] = ()
        if values.forward_of is not None:
            forwarded = await forwarded_attachments(
                db=db, user_id=user.id, message_id=values.forward_of, keep=values.kept
            )
        forwarded += await draft_attachments(db=db, user_id=user.id, ref=values.draft_ref(), keep=values.draft_kept)
        result = await send_message(
            db=db,
            secret_box=secret_box,
            settings=settings,
            user_id=user.id,
            from_account_id=values.account_id(),
            draft=values.draft((*forwarded, *uploads)),
            reply_to_message_id=values.reply_to,
            replaces_draft=values.draft_ref(),
        )
    except TributaryError as exc:
        return await form_page(request, user, db, values, error=exc.message, status=400)
    return respond(
        request,
        page_template="compose/page.html",
        fragment_template="compose/_area.html",
        viewer=user,
        heading=RESULT_TITLES[result.status],
        result=result,
        waiting=len(await list_outbox(db=db, user_id=user.id)),
        tab="compose",
    )


ROUTES = [compose_page, compose_send]
