"""/api/v1 compose, outbox and logs: sending as JSON (service.usecases.sending, service.usecases.logs).

POST /messages/send          a new message (JSON; attachments as base64); answers the first attempt's outcome
GET  /outbox?all=false       what is waiting, failed or unknown (all=true: sent ones too)
POST /outbox/{id}/retry      "Send again"
POST /outbox/{id}/cancel     "Cancel": a queued message back to Drafts (409 while it is being sent)
GET  /logs                   the user's log, newest first, with the Logs page's filters
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from service.config import Settings
from service.domain.compose import Attachment, Draft
from service.domain.outbox import OutboxView
from service.domain.users import UserView
from service.domain.values import LogLevel, LogSource
from service.errors import InvalidInput
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import sending
from service.usecases.logs import list_logs
from web.controllers.api.contract import reads, writes
from web.controllers.api.schemas import (
    IdParam,
    LogOut,
    LogPageOut,
    OptionalIdParam,
    OutboxOut,
    SendIn,
    SendOut,
)

LOG_PAGE = 50


class CancelOut(msgspec.Struct):
    """A cancelled outbox message: the draft it became (null if its copy was already gone)."""

    outbox_id: int
    draft_message_id: int | None
    already_accepted: list[str]
    detail: str


def _attachments(data: SendIn) -> tuple[Attachment, ...]:
    decoded = []
    for item in data.attachments:
        try:
            content = b64decode(item.content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"The attachment {item.filename!r} is not valid base64.") from exc
        decoded.append(Attachment(filename=item.filename, content=content, content_type=item.content_type))
    return tuple(decoded)


def _outbox_out(v: OutboxView) -> OutboxOut:
    return OutboxOut(
        id=v.id,
        status=v.status,
        subject=v.subject,
        from_address=v.from_address,
        pending=list(v.pending),
        accepted=list(v.accepted),
        refused=dict(v.refused),
        attempts=v.attempts,
        next_attempt_at=v.next_attempt_at,
        last_reply=v.last_reply,
        last_error=v.last_error,
        created_at=v.created_at,
        message_id=v.message_id,
        sent_copy=v.sent_copy,
        sent_copy_detail=v.sent_copy_detail,
    )


class SendController(Controller):
    path = "/messages/send"
    tags = ["Compose"]

    @post("/", status_code=200, **writes(400, 404, body=True))
    async def send(
        self,
        data: JSONBody[SendIn],
        db: NamedDependency[Database],
        secret_box: NamedDependency[SecretBox],
        settings: NamedDependency[Settings],
        user: NamedDependency[UserView],
    ) -> SendOut:
        """Write the message to the outbox, then try it at once: sent, queued (next try) or failed."""
        draft = Draft(
            to=tuple(data.to),
            cc=tuple(data.cc),
            bcc=tuple(data.bcc),
            subject=data.subject,
            text=data.text,
            attachments=_attachments(data),
        )
        result = await sending.send_message(
            db=db,
            secret_box=secret_box,
            settings=settings,
            user_id=user.id,
            from_account_id=data.from_account_id,
            draft=draft,
            reply_to_message_id=data.in_reply_to_message_id,
        )
        return SendOut.from_result(result)


class OutboxController(Controller):
    path = "/outbox"
    tags = ["Compose"]

    @get("/", **reads(400))
    async def list_outbox(
        self, db: NamedDependency[Database], user: NamedDependency[UserView], all: FromQuery[bool] = False
    ) -> list[OutboxOut]:
        return [_outbox_out(v) for v in await sending.list_outbox(db=db, user_id=user.id, include_sent=all)]

    @post("/{outbox_id:int}/retry", status_code=200, **writes(400, 404))
    async def retry(
        self,
        outbox_id: FromPath[IdParam],
        db: NamedDependency[Database],
        secret_box: NamedDependency[SecretBox],
        settings: NamedDependency[Settings],
        user: NamedDependency[UserView],
    ) -> SendOut:
        result = await sending.retry_outbox_message(
            db=db, secret_box=secret_box, settings=settings, user_id=user.id, outbox_id=outbox_id
        )
        return SendOut.from_result(result)

    @post("/{outbox_id:int}/cancel", status_code=200, **writes(400, 404, 409))
    async def cancel(
        self, outbox_id: FromPath[IdParam], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> CancelOut:
        """Take a queued message out of the outbox and put it in Drafts; 409 while a delivery attempt holds it."""
        result = await sending.cancel_outbox_message(db=db, user_id=user.id, outbox_id=outbox_id)
        return CancelOut(result.outbox_id, result.draft_message_id, list(result.already_accepted), result.detail)


class LogsController(Controller):
    path = "/logs"
    tags = ["Logs"]

    @get("/", **reads(400))
    async def list_logs(
        self,
        db: NamedDependency[Database],
        user: NamedDependency[UserView],
        source: FromQuery[LogSource | None] = None,
        level: FromQuery[LogLevel | None] = None,
        smtp_account_id: FromQuery[OptionalIdParam] = None,
        retrieval_task_id: FromQuery[OptionalIdParam] = None,
        before: FromQuery[OptionalIdParam] = None,
        limit: FromQuery[Annotated[int, Parameter(ge=1, le=500)]] = LOG_PAGE,
    ) -> LogPageOut:
        entries = await list_logs(
            db=db,
            user_id=user.id,
            source=source,
            level=level,
            smtp_account_id=smtp_account_id,
            retrieval_task_id=retrieval_task_id,
            limit=limit + 1,
            before_id=before,
        )
        more = len(entries) > limit
        entries = entries[:limit]
        return LogPageOut(
            entries=[
                LogOut(e.id, e.created_at, e.source, e.level, e.text, e.smtp_account_id, e.retrieval_task_id, e.account)
                for e in entries
            ],
            next_before=entries[-1].id if more and entries else None,
        )
