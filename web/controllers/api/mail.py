"""/api/v1 folders and messages: the Mail pages as JSON (service.usecases.reading and .mailbox).

GET    /folders                                  the folder tree with total and unread counts
GET    /folders/{id}/messages?before|after&limit a page of the folder, newest first (keyset cursor)
GET    /messages/{id}?mark_read=false            headers, text or sanitised HTML, attachments
GET    /messages/{id}/raw                        the message as received (.eml download)
GET    /messages/{id}/attachments/{part}         one part, as a download
PUT    /messages/{id}/flags                      {"seen": true|false}
POST   /messages/{id}/move                       {"folder_id": n}
DELETE /messages/{id}                            to the Trash (in the Trash: for good)
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.response import Response

from service.config import Settings
from service.domain.users import UserView
from service.persistence.database import Database
from service.usecases import mailbox, reading
from web.controllers.api.contract import reads, writes
from web.controllers.api.schemas import (
    AttachmentOut,
    CountOut,
    DeleteOut,
    FlagsIn,
    FolderOut,
    IdParam,
    MessageOut,
    MessagePageOut,
    MessageSummaryOut,
    MoveIn,
)
from web.controllers.mail.content import content_disposition
from web.controllers.mail.links import inline_url_maker

API = "/api/v1"
_DOWNLOAD_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
}


def _download(data: bytes, filename: str) -> Response[bytes]:
    headers = {**_DOWNLOAD_HEADERS, "Content-Disposition": content_disposition(filename)}
    return Response(content=data, media_type="application/octet-stream", headers=headers)


class FoldersController(Controller):
    path = "/folders"
    tags = ["Mail"]

    @get("/", **reads())
    async def list_folders(self, db: NamedDependency[Database], user: NamedDependency[UserView]) -> list[FolderOut]:
        return [FolderOut.from_view(f) for f in await reading.list_folders(db=db, user_id=user.id)]

    @get("/{folder_id:int}/messages", **reads(400, 404))
    async def list_messages(
        self,
        folder_id: FromPath[IdParam],
        db: NamedDependency[Database],
        user: NamedDependency[UserView],
        before: FromQuery[str | None] = None,
        after: FromQuery[str | None] = None,
        limit: FromQuery[Annotated[int, Parameter(ge=1, le=200)]] = reading.PAGE_SIZE,
    ) -> MessagePageOut:
        page = await reading.list_page(
            db=db, user_id=user.id, folder_id=folder_id, before=before, after=after, limit=limit
        )
        return MessagePageOut(
            folder=FolderOut.from_view(page.folder),
            messages=[MessageSummaryOut.from_view(m) for m in page.messages],
            older=page.older,
            newer=page.newer,
        )


class MessagesController(Controller):
    path = "/messages"
    tags = ["Mail"]

    @get("/{message_id:int}", **reads(400, 404))
    async def get_message(
        self,
        message_id: FromPath[IdParam],
        db: NamedDependency[Database],
        settings: NamedDependency[Settings],
        user: NamedDependency[UserView],
        mark_read: FromQuery[bool] = False,
    ) -> MessageOut:
        """The message as the reader sees it; `mark_read=true` marks it read, as opening it on the page does."""
        opened = await reading.open_message(
            db=db,
            user_id=user.id,
            message_id=message_id,
            inline_url=inline_url_maker(settings, user_id=user.id, message_id=message_id),
            mark_read=mark_read,
        )
        view = opened.view
        base = f"{API}/messages/{message_id}"
        return MessageOut(
            id=opened.id,
            folder=FolderOut.from_view(opened.folder),
            seen=opened.seen,
            flagged=opened.flagged,
            size=opened.size,
            subject=view.subject,
            sender=view.sender,
            to=view.to,
            cc=view.cc,
            reply_to=view.reply_to,
            date=view.date,
            text=view.text,
            html=view.html,
            remote_images=view.remote_images,
            attachments=[
                AttachmentOut(a.part_id, a.filename, a.content_type, a.size, f"{base}/attachments/{a.part_id}")
                for a in view.attachments
            ],
            problem=view.problem,
            raw_url=f"{base}/raw",
        )

    @get("/{message_id:int}/raw", media_type="application/octet-stream", **reads(400, 404))
    async def raw(
        self, message_id: FromPath[IdParam], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> Response[bytes]:
        data = await reading.export_raw(db=db, user_id=user.id, message_id=message_id)
        return _download(data, f"message-{message_id}.eml")

    @get("/{message_id:int}/attachments/{part_id:str}", media_type="application/octet-stream", **reads(400, 404))
    async def attachment(
        self,
        message_id: FromPath[IdParam],
        part_id: FromPath[str],
        db: NamedDependency[Database],
        user: NamedDependency[UserView],
    ) -> Response[bytes]:
        part = await reading.attachment(db=db, user_id=user.id, message_id=message_id, part_id=part_id)
        return _download(part.data, part.filename)

    @put("/{message_id:int}/flags", **writes(400, 404, body=True))
    async def set_flags(
        self,
        message_id: FromPath[IdParam],
        data: JSONBody[FlagsIn],
        db: NamedDependency[Database],
        user: NamedDependency[UserView],
    ) -> CountOut:
        changed = await mailbox.set_seen(db=db, user_id=user.id, message_ids=[message_id], seen=data.seen)
        return CountOut(changed=changed)

    @post("/{message_id:int}/move", status_code=200, **writes(400, 404, body=True))
    async def move(
        self,
        message_id: FromPath[IdParam],
        data: JSONBody[MoveIn],
        db: NamedDependency[Database],
        user: NamedDependency[UserView],
    ) -> CountOut:
        changed = await mailbox.move_messages(
            db=db, user_id=user.id, message_ids=[message_id], folder_id=data.folder_id
        )
        return CountOut(changed=changed)

    @delete("/{message_id:int}", status_code=200, **writes(400, 404))
    async def delete_message(
        self, message_id: FromPath[IdParam], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> DeleteOut:
        outcome = await mailbox.delete_messages(db=db, user_id=user.id, message_ids=[message_id])
        return DeleteOut(trashed=outcome.trashed, deleted=outcome.deleted)
