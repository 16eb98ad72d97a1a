"""`tributary export --user EMAIL --maildir DIR [--folder PATH]`: the user's folders as Maildir++.

Layout (Courier's Maildir++, which Dovecot reads with `mail_location = maildir:DIR`):
the Inbox is DIR itself (`cur/ new/ tmp/`); every other folder is a directory `.A.B`
directly under DIR for the folder path "A/B", holding `cur/ new/ tmp/` and an empty
`maildirfolder` file. A child of the Inbox is `.INBOX.Child`.

Folder names are written in modified UTF-7 (RFC 3501 5.1.3), as Courier and Dovecot store
Maildir++ names by default: "Reisen/Ça va" becomes `.Reisen.&AMc-a va`. Non-ASCII and control
characters (CR, LF) are thus base64 inside `&...-`, never raw bytes in a file name. A "." or
"\\" inside one name would read as a level separator, so it is escaped the way Dovecot's
listescape does (`\\2e`, `\\5c`); "/" cannot occur in a name (it separates the path).

Each message is one file in `cur/`, its stored bytes unchanged, named
`<arrival time>.T<id>.tributary,S=<size>:2,<flags>` (the Maildir "info" with flags sorted:
D draft, F flagged, R answered, S seen), its modification time set to when it arrived
(Dovecot takes that as the message's INTERNALDATE). Each file is written in `tmp/` and then
renamed into `cur/`, as the Maildir protocol asks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imapclient.imap_utf7 import encode as encode_utf7

from service.domain.folder_names import SEPARATOR, is_within
from service.domain.mailbox import FolderView
from service.domain.values import SpecialUse
from service.errors import NotFound
from service.persistence.database import Database
from service.usecases.backup.directory import emptied_on_failure, empty_directory
from service.usecases.export.bodies import StoredMessage, folder_messages, present
from service.usecases.reading import list_folders


@dataclass(frozen=True, slots=True)
class MaildirReport:
    """What an export wrote."""

    directory: str
    folders: int
    messages: int
    bytes: int


def _level(name: str) -> str:
    escaped = name.replace("\\", "\\5c").replace(".", "\\2e")
    return bytes(encode_utf7(escaped)).decode("ascii")


def maildir_name(folder: FolderView, inbox_path: str | None) -> str:
    """The folder's directory under the Maildir++ root ("" for the Inbox itself)."""
    parts = folder.path.split(SEPARATOR)
    if inbox_path is not None and is_within(folder.path, inbox_path):
        if folder.path == inbox_path:
            return ""
        parts = ["INBOX", *folder.path[len(inbox_path) + 1 :].split(SEPARATOR)]
    return "." + ".".join(_level(part) for part in parts)


def _flags(message: StoredMessage) -> str:
    pairs = (("D", message.draft), ("F", message.flagged), ("R", message.answered), ("S", message.seen))
    return "".join(letter for letter, on in pairs if on)


def _make_maildir(path: Path, *, subfolder: bool) -> None:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    if subfolder:
        (path / "maildirfolder").touch(mode=0o600)


async def _write_folder(db: Database, user_id: int, folder: FolderView, path: Path) -> tuple[int, int]:
    count = written = 0
    async for message in folder_messages(db=db, user_id=user_id, folder_id=folder.id):
        chunks = await present(db=db, user_id=user_id, message_id=message.id)
        if chunks is None:
            continue  # deleted since the folder was listed
        arrived = int(message.received_at.timestamp())
        temporary = path / "tmp" / f"{arrived}.T{message.id}.tributary"
        size = 0
        with temporary.open("xb") as handle:
            async for chunk in chunks:
                handle.write(chunk)
                size += len(chunk)
        os.utime(temporary, (arrived, arrived))
        temporary.rename(path / "cur" / f"{temporary.name},S={size}:2,{_flags(message)}")
        count += 1
        written += size
    return count, written


async def export_maildir(
    *, db: Database, user_id: int, directory: Path, folder_path: str | None = None
) -> MaildirReport:
    """Write the user's folders (or `folder_path` and the folders below it) as a Maildir++ tree
    into `directory`, which must be new or empty."""
    every = await list_folders(db=db, user_id=user_id)
    folders = every
    if folder_path is not None:
        wanted = folder_path.strip(SEPARATOR)
        folders = [f for f in folders if is_within(f.path, wanted)]
        if not folders:
            raise NotFound(f"There is no folder {folder_path!r}.")
    root = empty_directory(directory, what="The export directory")
    inbox = next((f.path for f in every if f.special_use is SpecialUse.INBOX), None)
    messages = total = 0
    with emptied_on_failure(root, what="The export"):
        _make_maildir(root, subfolder=False)
        for folder in folders:
            name = maildir_name(folder, inbox)
            path = root / name if name else root
            _make_maildir(path, subfolder=bool(name))
            count, size = await _write_folder(db, user_id, folder, path)
            messages += count
            total += size
    return MaildirReport(directory=str(root), folders=len(folders), messages=messages, bytes=total)
