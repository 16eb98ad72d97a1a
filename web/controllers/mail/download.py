"""A folder as an mbox download: GET /mail/folders/{id}/mbox.

The file is mboxrd (service.usecases.export.mbox), streamed as it is read: the response
starts before the folder has been read, and holds one message at a time, so a folder of
any size downloads in constant memory. The file is named after the folder ("Ça va.mbox"),
with an ASCII fallback and the exact name in RFC 6266's filename* (content.content_disposition);
control characters in a folder name (CR, LF from a remote server) become "_" first.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Stream

from service.domain.users import UserView
from service.persistence.database import Database
from service.usecases.export import folder_mbox
from web.controllers.mail.content import _DOWNLOAD_HEADERS, content_disposition


def mbox_filename(folder_name: str) -> str:
    """`<folder name>.mbox`, with control characters and path separators replaced by "_"."""
    cleaned = "".join(
        "_" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") or c in "/\\" else c for c in folder_name
    )
    return f"{cleaned.strip() or 'folder'}.mbox"


@get("/mail/folders/{folder_id:int}/mbox", name="mail-folder-mbox")
async def folder_mbox_download(
    folder_id: FromPath[int], db: NamedDependency[Database], user: NamedDependency[UserView]
) -> Stream:
    download = await folder_mbox(db=db, user_id=user.id, folder_id=folder_id)
    return Stream(
        download.content,
        media_type="application/mbox",
        headers={**_DOWNLOAD_HEADERS, "Content-Disposition": content_disposition(mbox_filename(download.folder.name))},
    )


ROUTES: list[Any] = [folder_mbox_download]
