"""Appending a sent message to the remote mailbox's Sent folder (IMAP APPEND, RFC 3501 6.3.11).

Blocking like the rest of the imapclient code: the use case calls `append_sent_copy` through
`asyncio.to_thread`. One session (session.open_session: same TLS, outbound policy, deadline and
sign-in as retrieval) per copy:

- The Sent folder is the one LIST marks \\Sent (RFC 6154), else the first of the names mail
  clients use (`SENT_NAMES`, compared without case), else "Sent" is created, as clients do
  (below the personal namespace "INBOX." where the server keeps every folder there).
- APPEND with the \\Seen flag and the message's date as its internal date. With UIDPLUS
  (RFC 4315) the tagged OK says `[APPENDUID uidvalidity uid]`; without it the copy is looked up
  by its Message-ID (UID SEARCH HEADER), the highest match being the one just appended. That
  (folder, UIDVALIDITY, UID) is how retrieval recognises the copy later.
- A retry (`look_first`) searches by Message-ID before appending, so an APPEND whose answer was
  lost (the server may have stored it) does not leave a second copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from service.protocols.imap.folders import RemoteFolder
from service.protocols.imap.session import ImapAccount, ImapSession, open_session

SENT_NAMES = (
    "Sent",
    "Sent Items",
    "Sent Messages",
    "Sent Mail",
    "INBOX/Sent",
    "INBOX/Sent Items",
    "Gesendet",
    "Gesendete Elemente",
    "Gesendete Objekte",
    "Envoyés",
    "Éléments envoyés",
    "Enviados",
    "Elementos enviados",
    "Posta inviata",
    "Verzonden",
    "Skickat",
)
CREATED_NAME = "Sent"
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)
_SEEN = rb"\Seen"


@dataclass(frozen=True, slots=True)
class AppendedCopy:
    """Where the copy is: the remote folder ("/" path), and its UIDVALIDITY and UID when known.
    `already_there`: a retry found it stored by an earlier attempt, so nothing was appended."""

    folder: str
    uidvalidity: int | None
    uid: int | None
    already_there: bool = False


def _relative(folder: RemoteFolder) -> str:
    """The path below the personal namespace prefix ("INBOX/Sent Messages" -> "Sent Messages" on
    Cyrus and Courier), as mail clients name the folder."""
    prefix = folder.personal_prefix
    if prefix and folder.path.casefold().startswith(prefix.casefold()):
        return folder.path[len(prefix) :]
    return folder.path


def find_sent_folder(folders: list[RemoteFolder]) -> RemoteFolder | None:
    """The folder marked \\Sent, else the first listed whose path (or its path below the personal
    namespace prefix) is one of SENT_NAMES (any case)."""
    for folder in folders:
        if folder.special_use == b"\\Sent":
            return folder
    by_path = {_relative(folder).casefold(): folder for folder in reversed(folders)}
    by_path |= {folder.path.casefold(): folder for folder in reversed(folders)}
    for name in SENT_NAMES:
        found = by_path.get(name.casefold())
        if found is not None:
            return found
    return None


def new_sent_folder(folders: list[RemoteFolder]) -> RemoteFolder:
    """The folder to create when there is no Sent folder: "Sent", below the personal namespace
    where the server keeps every folder there ("INBOX.Sent" on Cyrus and Courier, which refuse
    a folder at the root). Names and "/" paths match character for character (folders.slash_path
    swaps one delimiter for one "/"), so the server's form of the prefix is read off a listed name."""
    for folder in folders:
        prefix = folder.personal_prefix
        if prefix and folder.path.casefold().startswith(prefix.casefold()):
            return RemoteFolder(
                name=folder.name[: len(prefix)] + CREATED_NAME,
                path=prefix + CREATED_NAME,
                special_use=None,
                personal_prefix=prefix,
            )
    return RemoteFolder(name=CREATED_NAME, path=CREATED_NAME, special_use=None)


def appenduid(response: bytes | str | None) -> tuple[int | None, int | None]:
    """(UIDVALIDITY, UID) from an APPEND's tagged OK text, or (None, None) without APPENDUID."""
    if response is None:
        return None, None
    data = response.encode("utf-8", "replace") if isinstance(response, str) else bytes(response)
    match = _APPENDUID.search(data)
    if match is None:
        return None, None
    return int(match.group(1)), int(match.group(2))


def _searchable(message_id: str | None) -> str | None:
    """A Message-ID usable in a SEARCH HEADER criterion: ASCII, no control characters."""
    if not message_id or not message_id.isascii() or any(ord(c) < 32 or ord(c) == 127 for c in message_id):
        return None
    return message_id


def _find_by_message_id(session: ImapSession, message_id: str) -> int | None:
    assert session.client is not None
    with session.translated("search the Sent folder"):
        found = session.client.search(["HEADER", "Message-ID", message_id])
    return max(found) if found else None


def append_sent_copy(
    account: ImapAccount,
    raw: bytes,
    *,
    message_id: str | None,
    when: datetime | None,
    look_first: bool = False,
    deadline: float | None = None,
) -> AppendedCopy:
    """Store `raw` in the account's Sent folder, marked \\Seen; see the module's description."""
    wanted = _searchable(message_id)
    with open_session(account, deadline=deadline) as session:
        assert session.client is not None
        listed = session.list_folders()
        folder = find_sent_folder(listed)
        if folder is None:
            folder = new_sent_folder(listed)
            with session.translated(f"create the folder {folder.path}"):
                session.client.create_folder(folder.name)
        elif look_first and wanted is not None:
            selected = session.select(folder)
            uid = _find_by_message_id(session, wanted) if selected.exists else None
            if uid is not None:
                return AppendedCopy(folder.path, selected.uidvalidity, uid, already_there=True)
        with session.translated(f"append to {folder.path}"):
            response = session.client.append(folder.name, raw, flags=(_SEEN,), msg_time=when)
        uidvalidity, uid = appenduid(response)
        if uid is None and wanted is not None:  # no UIDPLUS: find the copy just stored
            selected = session.select(folder)
            uidvalidity, uid = selected.uidvalidity, _find_by_message_id(session, wanted)
        return AppendedCopy(folder.path, uidvalidity, uid)
