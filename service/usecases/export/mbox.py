"""A folder as one mbox file, for the mail page's download: the mboxrd format.

Each message is a "From " separator line (`From MAILER-DAEMON <asctime of arrival>`; the
envelope sender is not known), its stored bytes, and an empty line. In mboxrd, any line of the
message that starts with zero or more ">" and then "From " gets one more ">" (`>From ` becomes
`>>From `), so a reader that removes one ">" from such lines gets the message back exactly;
nothing else changes (the stored CRLF line ends stay). A message that does not end in a line
break gets one before the empty line.

The file is produced as a stream: the folder's messages are read in batches and each message
chunk by chunk (see `bodies`); a line that spans chunks is carried over, and only its first
bytes decide whether it is quoted, so a huge line is never held whole.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from service.domain.mailbox import FolderView
from service.persistence.database import Database
from service.usecases.export.bodies import folder_messages, present
from service.usecases.reading.folders import own_folder

_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
_DECIDE = 64 * 1024  # a partial line longer than this is passed on once its start is decided


class _Quoter:
    """mboxrd quoting of a message given in chunks, carrying an incomplete last line over."""

    def __init__(self) -> None:
        self._pending = b""
        self._mid_line = False  # the pending line's start was already passed on
        self.last = b"\n"

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        self._pending = b""
        out: list[bytes] = []
        if self._mid_line:
            end = data.find(b"\n")
            if end < 0:
                return self._emit([data])
            out.append(data[: end + 1])
            data = data[end + 1 :]
            self._mid_line = False
        cut = data.rfind(b"\n") + 1
        out.append(_FROM_LINE.sub(rb">\1", data[:cut]))
        rest = data[cut:]
        first_other = len(rest) - len(rest.lstrip(b">"))
        if len(rest) > _DECIDE and len(rest) >= first_other + 5:
            out.append(_FROM_LINE.sub(rb">\1", rest, count=1))
            self._mid_line = True
        else:
            self._pending = rest
        return self._emit(out)

    def close(self) -> bytes:
        tail = self._pending if self._mid_line else _FROM_LINE.sub(rb">\1", self._pending, count=1)
        out = self._emit([tail])
        return out + (b"" if self.last == b"\n" else b"\n")

    def _emit(self, parts: list[bytes]) -> bytes:
        data = b"".join(parts)
        if data:
            self.last = data[-1:]
        return data


async def mboxrd(*, db: Database, user_id: int, folder_id: int) -> AsyncIterator[bytes]:
    """The folder's messages, oldest first, as mboxrd (see the module's docstring)."""
    async for message in folder_messages(db=db, user_id=user_id, folder_id=folder_id):
        chunks = await present(db=db, user_id=user_id, message_id=message.id)
        if chunks is None:
            continue  # deleted since the folder was listed
        stamp = time.asctime(time.gmtime(message.received_at.timestamp()))
        yield f"From MAILER-DAEMON {stamp}\n".encode("ascii")
        quoter = _Quoter()
        async for chunk in chunks:
            if quoted := quoter.feed(chunk):
                yield quoted
        yield quoter.close() + b"\n"


@dataclass(frozen=True, slots=True)
class MboxDownload:
    """A folder's mbox file: the folder (for the file's name) and its bytes as a stream."""

    folder: FolderView
    content: AsyncIterator[bytes]


async def folder_mbox(*, db: Database, user_id: int, folder_id: int) -> MboxDownload:
    """The user's folder as an mbox stream; NotFound (before any byte) for a folder not theirs."""
    async with db.read() as session:
        folder = await own_folder(session, user_id, folder_id)
    return MboxDownload(folder=folder, content=mboxrd(db=db, user_id=user_id, folder_id=folder_id))
