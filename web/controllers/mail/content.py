"""What a message's page loads beside it: the body frame, inline images, downloads.

GET /mail/messages/{id}/body            the sanitised HTML (or text) as a document of its own,
                                        for <iframe sandbox=""> (no scripts, opaque origin);
                                        ?images=1 lets remote images load
GET /mail/inline/{id}/{part}?u&e&s      an inline (cid:) raster image, by signed link (see links)
GET /mail/messages/{id}/attachments/{part}   a part, always as a download
GET /mail/messages/{id}/raw             the message as received (.eml), as a download

The frame's own Content-Security-Policy allows no script at all, inline styles,
images from data: and Tributary (the signed inline links) and, only with
?images=1, from http: and https:; it also sandboxes the document when it is
opened outside the frame. Downloads are application/octet-stream with
Content-Disposition: attachment (RFC 6266, filename* for non-ASCII names) and
nosniff, so the browser never renders what a message carries.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Response, Stream, Template

from service.config import Settings
from service.domain.users import UserView
from service.persistence.database import Database
from service.usecases.reading import attachment, inline_image, open_raw, render_body
from web.controllers.mail.links import inline_url_maker, verify

_FRAME_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:{remote}; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
)
_DOWNLOAD_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
}
_ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 5987 attr-char, besides letters and digits


def frame_policy(*, remote_images: bool) -> str:
    return _FRAME_POLICY.format(remote=" https: http:" if remote_images else "")


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name as RFC 5987 UTF-8 (RFC 6266 4.3)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe=_ATTR_CHARS)}"


def _download(data: bytes, filename: str) -> Response[bytes]:
    return Response(
        content=data,
        media_type="application/octet-stream",
        headers={**_DOWNLOAD_HEADERS, "Content-Disposition": content_disposition(filename)},
    )


@get("/mail/messages/{message_id:int}/body", name="mail-message-body")
async def message_body(
    message_id: FromPath[int],
    db: NamedDependency[Database],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
    images: FromQuery[bool] = False,
) -> Template:
    view = await render_body(
        db=db,
        user_id=user.id,
        message_id=message_id,
        allow_remote_images=images,
        inline_url=inline_url_maker(settings, user_id=user.id, message_id=message_id),
    )
    return Template(
        template_name="mail/frame.html",
        context={"view": view},
        headers={
            "Content-Security-Policy": frame_policy(remote_images=images),
            "X-Frame-Options": "SAMEORIGIN",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


@get("/mail/inline/{message_id:int}/{part_id:str}", name="mail-inline-image")
async def inline(
    message_id: FromPath[int],
    part_id: FromPath[str],
    db: NamedDependency[Database],
    settings: NamedDependency[Settings],
    u: FromQuery[int],
    e: FromQuery[int],
    s: FromQuery[str],
) -> Response[bytes]:
    if not verify(settings, user_id=u, message_id=message_id, expires=e, signature=s):
        raise NotFoundException()
    part = await inline_image(db=db, user_id=u, message_id=message_id, part_id=part_id)
    return Response(
        content=part.data,
        media_type=part.content_type,
        headers={**_DOWNLOAD_HEADERS, "Cache-Control": "private, max-age=3600", "Content-Disposition": "inline"},
    )


@get("/mail/messages/{message_id:int}/attachments/{part_id:str}", name="mail-attachment")
async def download_attachment(
    message_id: FromPath[int], part_id: FromPath[str], db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Response[bytes]:
    part = await attachment(db=db, user_id=user.id, message_id=message_id, part_id=part_id)
    return _download(part.data, part.filename)


@get("/mail/messages/{message_id:int}/raw", name="mail-raw")
async def download_raw(
    message_id: FromPath[int], db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Stream:
    """Streamed from the body store a megabyte at a time: a 50 MB message is never whole in memory."""
    body = await open_raw(db=db, user_id=user.id, message_id=message_id)
    return Stream(
        body.chunks(),
        media_type="application/octet-stream",
        headers={
            **_DOWNLOAD_HEADERS,
            "Content-Disposition": content_disposition(f"message-{message_id}.eml"),
            "Content-Length": str(body.length),
        },
    )


ROUTES: list[Any] = [message_body, inline, download_attachment, download_raw]
