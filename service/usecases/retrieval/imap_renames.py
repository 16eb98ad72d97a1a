"""Folders renamed on the IMAP server: their cursor, their messages' origin and their local
folder follow the new name, so nothing is imported twice.

Cursors are keyed by the remote folder's path. A run lists the folders; a cursor whose
(path, UIDVALIDITY) is gone is an *orphan*: its path is no longer listed, or the folder
listed there has another UIDVALIDITY (renamed, then a new folder created under the old
name; imap_run examines the folders with a cursor first to learn that). A listed folder without a cursor whose
UIDVALIDITY equals that of exactly one orphan is that folder, renamed: UIDVALIDITY is a
mailbox's identity and survives RENAME (RFC 3501 2.3.1.1 and 6.3.5; a server that
renumbers changes it). A UIDVALIDITY that another of the task's cursors shares identifies
nothing (some servers give every folder the same), and a UIDNEXT not above the cursor's
last UID cannot be the same folder: both are left to content matching. On a match, in one
transaction:

- the cursor and the origin (`remote_folder`) of every message the task stored from it
  move to the new name, so the next UID is the next one fetched;
- its local folder moves to where the new name maps, with its subfolders, when that
  folder was made for it (not a special folder, holding only this remote folder's mail)
  and nothing exists at the new place yet. Otherwise the local folders stay as they are
  (mail the user filed there stays where they put it) and new mail arrives at the new
  place.

A listed folder without a cursor that matches no orphan by UIDVALIDITY (a server that
does not keep it across RENAME, or a folder recreated by a client as copy-then-delete) has
its messages matched by content, the SHA-256 of their bytes, against what the task stored
from the orphaned folders: a message already here is counted as skipped, not imported, and
its stored copy takes the new folder's origin (so a later UIDVALIDITY reset of the new folder
finds it, and a copy in yet another new folder is that folder's own message), in the
transaction that stores the batch and moves its cursor (store.commit_batch, DESIGN section 3).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.retrieval import LocalTarget
from service.domain.values import LogLevel, LogSource
from service.errors import MailboxMissing
from service.persistence.database import Database
from service.persistence.mailstore import folder_by_path
from service.persistence.tables import Folder, ImapCursor, Message
from service.protocols.imap import ImapSession, RemoteFolder
from service.usecases.logs import record
from service.usecases.retrieval.lease import renew_in
from service.usecases.retrieval.store import Cursor, Owner


@dataclass(slots=True)
class Orphans:
    """The task's cursors whose folder the server no longer lists (and, added by the run, those whose
    path now holds a folder with another UIDVALIDITY), claimed as renames are found.
    `shared` counts how many of all the task's cursors have each UIDVALIDITY."""

    cursors: dict[str, Cursor]
    shared: Counter[int] = field(default_factory=Counter)
    _hashes: Counter[str] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, cursors: dict[str, Cursor], listed: set[str]) -> Orphans:
        return cls(
            {path: cursor for path, cursor in cursors.items() if path not in listed},
            Counter(cursor.uidvalidity for cursor in cursors.values()),
        )

    def claim(self, uidvalidity: int, uidnext: int | None) -> tuple[str, Cursor] | None:
        """The orphan this folder is, renamed (removed from the orphans), or None. Only a
        UIDVALIDITY no other cursor of the task has identifies a folder (some servers give every
        folder the same one), and a renamed folder's UIDNEXT is above every UID it had."""
        matches = [path for path, cursor in self.cursors.items() if cursor.uidvalidity == uidvalidity]
        if len(matches) != 1 or self.shared[uidvalidity] != 1:
            return None
        if uidnext is not None and uidnext <= self.cursors[matches[0]].last_uid:
            return None
        return matches[0], self.cursors.pop(matches[0])

    async def hashes(self, db: Database, task_id: int) -> Counter[str]:
        """How many copies of each message (SHA-256) the task stored from the orphaned folders: one
        counter for the whole run, so a message matched for one new folder is not matched again."""
        if self._hashes is None:
            self._hashes = Counter()
            paths = list(self.cursors)
            async with db.read() as session:
                for start in range(0, len(paths), 500):
                    rows = await session.exec(
                        select(Message.sha256).where(
                            Message.task_id == task_id, col(Message.remote_folder).in_(paths[start : start + 500])
                        )
                    )
                    self._hashes.update(rows.all())
        return self._hashes


async def follow_rename(
    db: Database,
    owner: Owner,
    *,
    old: str,
    new: str,
    old_target: LocalTarget,
    new_target: LocalTarget,
    host: str,
) -> None:
    """Move the cursor and the messages' origin from remote folder `old` to `new`, and the local
    folder from `old_target` to `new_target` when it was made for `old` and the place is free."""
    async with db.write() as session:
        if owner.lease is not None:
            await renew_in(session, owner.lease)
        await session.exec(
            update(ImapCursor)
            .where(col(ImapCursor.task_id) == owner.task_id, col(ImapCursor.remote_folder) == old)
            .values(remote_folder=new)
        )
        await session.exec(
            update(Message)
            .where(col(Message.task_id) == owner.task_id, col(Message.remote_folder) == old)
            .values(remote_folder=new)
        )
        moved = await _move_local_folder(session, owner, old_target, new_target, remote=new)
        text = f"The folder {old} on {host} was renamed to {new}; what was retrieved from it was kept"
        if moved:
            text += f", and the local folder {old_target.path} is now {new_target.path}."
        elif old_target.path != new_target.path and old_target.special_use is None:
            text += _kept_where(await _local_paths(session, owner, new), new_target.path or new)
        else:
            text += "."
        record(
            session,
            source=LogSource.INCOMING,
            level=LogLevel.INFO,
            text=text,
            user_id=owner.user_id,
            retrieval_task_id=owner.task_id,
        )


async def _local_paths(session: AsyncSession, owner: Owner, remote: str) -> list[str]:
    """The local folders (at most four) that hold what the task retrieved from `remote`: where its
    local folder was, or where it moved with a parent renamed before it, or where the user filed it."""
    rows = await session.exec(
        select(Folder.path)
        .join(Message, col(Message.folder_id) == Folder.id)
        .where(Message.task_id == owner.task_id, Message.remote_folder == remote)
        .distinct()
        .order_by(col(Folder.path))
        .limit(4)
    )
    return list(rows.all())


def _kept_where(paths: list[str], arriving: str) -> str:
    """The end of the rename's log line: where the retrieved mail is, and where new mail arrives."""
    if paths == [arriving]:
        return f" in {arriving}, where new mail arrives too."
    if not paths:
        return f"; new mail arrives in {arriving}."
    where = ", ".join(paths[:3]) + (" and other folders" if len(paths) > 3 else "")
    return f" in {where}; new mail arrives in {arriving}."


async def _move_local_folder(
    session: AsyncSession, owner: Owner, old_target: LocalTarget, new_target: LocalTarget, *, remote: str
) -> bool:
    """Rename the local folder at `old_target` (and its subfolders) to `new_target`'s path.
    Only a plain folder holding nothing but this remote folder's messages moves, and only to a
    place where no folder exists yet. The messages' origin already reads `remote`."""
    old_path, new_path = old_target.path, new_target.path
    if old_target.special_use is not None or new_target.special_use is not None or not old_path or not new_path:
        return False
    if old_path == new_path or new_path.startswith(old_path + "/") or old_path.startswith(new_path + "/"):
        return False
    user_id = owner.user_id
    folder = (await session.exec(select(Folder).where(Folder.user_id == user_id, Folder.path == old_path))).first()
    if folder is None or folder.special_use is not None:
        return False
    foreign = (
        await session.exec(
            select(Message.id)
            .where(
                Message.folder_id == folder.id,
                or_(
                    col(Message.task_id).is_(None),
                    Message.task_id != owner.task_id,
                    col(Message.remote_folder).is_(None),
                    Message.remote_folder != remote,
                ),
            )
            .limit(1)
        )
    ).first()
    taken = (
        await session.exec(
            select(Folder.id)
            .where(
                Folder.user_id == user_id,
                or_(Folder.path == new_path, col(Folder.path).startswith(new_path + "/", autoescape=True)),
            )
            .limit(1)
        )
    ).first()
    if foreign is not None or taken is not None:
        return False
    parent_path, _, name = new_path.rpartition("/")
    parent = await folder_by_path(session, user_id, parent_path) if parent_path else None
    descendants = (
        await session.exec(
            select(Folder).where(
                Folder.user_id == user_id, col(Folder.path).startswith(old_path + "/", autoescape=True)
            )
        )
    ).all()
    folder.path, folder.name, folder.parent_id = new_path, name, parent.id if parent is not None else None
    session.add(folder)
    for child in descendants:
        child.path = new_path + child.path[len(old_path) :]
        session.add(child)
    await session.flush()
    return True


async def orphan_reset_excluded(
    session: ImapSession, excluded: list[RemoteFolder], cursors: dict[str, Cursor], orphans: Orphans
) -> None:
    """An excluded folder keeps its cursor, but is still EXAMINEd when it has one: with another
    UIDVALIDITY there, the folder it counted may have been renamed to an included path (and a
    new one made under the old name), which must claim the cursor rather than come again. The
    cursor stays in the database either way (a rename claims it, else it rescans when included)."""
    for folder in excluded:
        cursor = cursors.get(folder.path)
        if cursor is None:
            continue
        try:
            selected = await asyncio.to_thread(session.select, folder)
        except MailboxMissing:
            continue  # gone meanwhile: nothing to learn
        if selected.uidvalidity != cursor.uidvalidity:
            orphans.cursors[folder.path] = cursor
