"""The mailbox's pulse: a tiny fingerprint of a user's folders that changes whenever their mail does.

New mail may be stored by another process (a `tributary worker` holding an IMAP
IDLE connection, the scheduler of another web process), so an open mail page
learns of it from the database, by asking now and then whether anything
changed. The answer must cost almost nothing: it reads only the user's folder
rows (the unique index on folder (user_id, path)), never the messages. Their
`message_count` and `unread_count` are kept exact by database triggers in the
same transaction as every delivery, move, flag change and deletion (migration
0004), so any change to what the mail page shows changes some folder's counts,
or the folder set itself. (The one blind spot: in one folder, one message
deleted for good and another of the same read state delivered between two
polls leave the counts as they were; the next change or page shows both.)

The fingerprint is a hash of (id, path, messages, unread) of every folder,
ordered by id; the page carries the one it was built from, and asks again with
it (web.controllers.mail.pulse). `unread` is what the tab title shows: unread
messages in every folder but Junk and Trash, where nobody wants to be counted
at.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from sqlmodel import col, select

from service.domain.mailbox import FolderView
from service.domain.values import SpecialUse
from service.errors import NotFound
from service.persistence.database import Database
from service.persistence.tables import Folder, User
from service.usecases.reading.folders import folder_view

NOT_COUNTED_IN_TITLE = frozenset({SpecialUse.JUNK, SpecialUse.TRASH})
FINGERPRINT_HEX = 16  # 64 bits: a page compares its own value, collisions only delay one update


@dataclass(frozen=True, slots=True)
class MailPulse:
    """What an open mail page compares: `fingerprint` changes with any folder's counts; `unread` is the title's."""

    fingerprint: str
    unread: int


def pulse_of(folders: Iterable[FolderView]) -> MailPulse:
    """The pulse of these folders: what a page built from them carries, and what `mail_pulse` answers."""
    digest = hashlib.sha256()
    unread = 0
    for folder in sorted(folders, key=lambda f: f.id):
        digest.update(f"{folder.id}\x1f{folder.path}\x1f{folder.total}\x1f{folder.unread}\x1e".encode())
        if folder.special_use not in NOT_COUNTED_IN_TITLE:
            unread += max(folder.unread, 0)
    return MailPulse(fingerprint=digest.hexdigest()[:FINGERPRINT_HEX], unread=unread)


async def mail_pulse(*, db: Database, user_id: int) -> MailPulse:
    """The user's pulse now, in one indexed query over their folder rows.

    NotFound when the user does not exist or is disabled (every user has the
    special-use folders from the start, so an active user always has rows).
    """
    query = select(Folder).join(User, col(User.id) == Folder.user_id).where(Folder.user_id == user_id, User.is_active)
    async with db.read() as session:
        folders = (await session.exec(query)).all()
    if not folders:
        raise NotFound("This user does not exist.")
    return pulse_of(folder_view(folder) for folder in folders)
