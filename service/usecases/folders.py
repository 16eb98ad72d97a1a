"""Managing local folders: create, rename, move, delete, and "Empty Trash" / "Empty Junk".

Only the user's own folders, and never the special ones (Inbox, Sent, Drafts, Trash, Junk,
Outbox, and the top-level Archive once the Archive button made it): those stay where every
face and the retrieval code expect them. Folders may go
inside special ones (Inbox/Receipts), except the Outbox, which holds only mail being sent.
Names follow `service.domain.folder_names`.

A folder's `path` repeats its ancestors' names, so renaming or moving one rewrites the path of
every folder below it, in the same transaction as everything that names those paths:

- retrieval tasks whose destination is the folder or below it (the stored
  `destination_folder`, or for an IMAP "Add as subfolders" task without one, the folder
  named after the task that it fills), so the next run delivers into the renamed folder
  instead of creating the old name again;
- filter rules whose "Move to folder" names it.

Deleting a folder moves its messages and those of its subfolders to the Trash, as deleting
messages does (Roundcube asks and deletes them; here nothing is lost until the Trash is
emptied), then removes the folders. A folder a retrieval task or a filter rule delivers into is
refused: the next delivery would create it again. Emptying the Trash or Junk deletes their
messages for good.

Concurrency. SQLite runs one write transaction at a time (BEGIN IMMEDIATE), so nothing below
interleaves there. PostgreSQL runs them at once, in READ COMMITTED, so every folder write
first locks the user's row (FOR NO KEY UPDATE: it does not block the foreign-key checks of
mail being stored) and only then reads the folders: two renames, moves or creates of one user
queue and the second sees the first's result (no cycle from "A into B" racing "B into A", no
child path left naming a folder's old name, no duplicate sibling; a unique-path violation that
still slips through is `FolderNameTaken`, a 409, not a 500). Renaming, moving and deleting
then lock the rows of the folder's subtree FOR UPDATE, which waits for every delivery in
flight into them (storing a message takes a key-share lock on its folder, and
`folder_by_path` takes one while it resolves a path) and makes later ones wait for this
commit; the folders are read again after that, in a new statement that sees what those
deliveries committed. So a message delivered while its folder is deleted goes to the Trash
with the rest, and a delivery after the delete finds the folder gone and creates it again,
instead of the DELETE cascading over a message committed under it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.folder_names import (
    ARCHIVE,
    MAX_PATH,
    FolderNameInvalid,
    check_folder_name,
    is_within,
    join_path,
    rebased,
    sibling_key,
)
from service.domain.mailbox import FolderView
from service.domain.retrieval import default_destination
from service.domain.values import FolderTransfer, Protocol, SpecialUse
from service.errors import Conflict, InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.mailstore import delete_folder_contents, ensure_special_folders, move_folder_contents
from service.persistence.tables import FilterRuleRow, Folder, RetrievalTask, User
from service.usecases.reading.folders import folder_view

EMPTYABLE = (SpecialUse.TRASH, SpecialUse.JUNK)
NOT_EMPTYABLE = "Only the Trash and Junk folders can be emptied."


class FolderMissing(NotFound):
    """The folder does not exist or is another user's."""


class SpecialFolderLocked(InvalidInput):
    """Special folders cannot be renamed, moved or deleted."""


class FolderNameTaken(Conflict):
    """A sibling already has this name (up to case)."""


class FolderMoveInvalid(InvalidInput):
    """The folder cannot go where it was asked to."""


class FolderInUse(Conflict):
    """A retrieval task delivers into the folder, so deleting it would not last."""


@dataclass(frozen=True, slots=True)
class FolderDeleted:
    """What deleting a folder did: how many folders went (with its subfolders) and how many messages moved to Trash."""

    folders: int
    trashed: int


async def _all(session: AsyncSession, user_id: int) -> list[Folder]:
    query = select(Folder).where(Folder.user_id == user_id).execution_options(populate_existing=True)
    return list((await session.exec(query)).all())


async def _locked(session: AsyncSession, user_id: int) -> list[Folder]:
    """The user's folders, read after taking the user's folder lock (see the module docstring):
    the user's row FOR NO KEY UPDATE, held until the transaction ends. A no-op on SQLite."""
    await session.exec(select(User.id).where(User.id == user_id).with_for_update(key_share=True))
    return await _all(session, user_id)


async def _lock_subtree(session: AsyncSession, user_id: int, folders: list[Folder], root_id: int) -> list[Folder]:
    """Lock the rows of folder `root_id` and of every folder below it FOR UPDATE (in id order, so
    two lockers cannot deadlock), waiting out deliveries in flight into them; returns the user's
    folders read again afterwards. Repeats while a subfolder a delivery just created is unlocked."""
    locked: set[int] = set()
    while True:
        root = _find(folders, root_id)
        ids = {f.id for f in folders if f.id is not None and is_within(f.path, root.path)}
        if ids <= locked:
            return folders
        query = select(Folder.id).where(col(Folder.id).in_(sorted(ids - locked))).order_by(col(Folder.id))
        await session.exec(query.with_for_update())
        locked |= ids
        folders = await _all(session, user_id)


async def _flush(session: AsyncSession) -> None:
    """Write the changes; a unique-path violation (a sibling named so by a delivery that created
    it meanwhile) is the same refusal as the check before it."""
    try:
        await session.flush()
    except IntegrityError:
        raise FolderNameTaken("There is already a folder with this name here.") from None


def _find(folders: Sequence[Folder], folder_id: int | None) -> Folder:
    found = next((f for f in folders if f.id == folder_id), None)
    if found is None:
        raise FolderMissing("This folder does not exist.")
    return found


def is_special(folder: Folder | FolderView) -> bool:
    """Inbox, Sent, Drafts, Trash, Junk, Outbox, or the top-level Archive: never renamed, moved or deleted."""
    return folder.special_use is not None or (folder.parent_id is None and folder.path == ARCHIVE)


def _own(folders: Sequence[Folder], folder_id: int) -> Folder:
    """The folder, if the user may change it."""
    folder = _find(folders, folder_id)
    if is_special(folder):
        raise SpecialFolderLocked(f"{folder.name} is a special folder; it cannot be renamed, moved or deleted.")
    return folder


def _parent(folders: Sequence[Folder], parent_id: int | None) -> Folder | None:
    if parent_id is None:
        return None
    parent = _find(folders, parent_id)
    if parent.special_use is SpecialUse.OUTBOX:
        raise FolderMoveInvalid("The Outbox holds only mail waiting to be sent; it cannot have folders inside it.")
    return parent


def _check_place(
    folders: Sequence[Folder], moving: Folder | None, parent: Folder | None, name: str
) -> tuple[str, list[Folder]]:
    """The new path for `moving` (None: a new folder) named `name` under `parent`, and the folders
    whose path changes; raises when a sibling has the name or a path would grow too long."""
    parent_id = parent.id if parent else None
    key = sibling_key(name)
    for other in folders:
        if other is not moving and other.parent_id == parent_id and sibling_key(other.name) == key:
            raise FolderNameTaken(f'There is already a folder named "{other.name}" here.')
    new_path = join_path(parent.path if parent else None, name)
    subtree = [f for f in folders if is_within(f.path, moving.path)] if moving is not None else []
    old_path = moving.path if moving is not None else new_path
    longest = max((len(rebased(f.path, old_path, new_path)) for f in subtree), default=len(new_path))
    if longest > MAX_PATH:
        raise FolderNameInvalid(
            f"A folder path (names from the top, with their slashes) can be at most {MAX_PATH} characters long."
        )
    return new_path, subtree


def _destination(task: RetrievalTask) -> str | None:
    """The local path a task delivers into (and below), or None when it names no folder of its own."""
    if task.destination_folder:
        return "/".join(part for part in task.destination_folder.split("/") if part)
    if task.protocol is Protocol.IMAP and task.folder_transfer is FolderTransfer.SUBFOLDERS:
        return default_destination(task.name, task.username, task.host)
    return None


async def _tasks(session: AsyncSession, user_id: int) -> list[RetrievalTask]:
    return list((await session.exec(select(RetrievalTask).where(RetrievalTask.user_id == user_id))).all())


async def _repath(session: AsyncSession, user_id: int, subtree: Sequence[Folder], old: str, new: str) -> None:
    """Rewrite the paths below `old` to `new`, and every task and filter rule that names them."""
    for folder in subtree:
        folder.path = rebased(folder.path, old, new)
        session.add(folder)
    for task in await _tasks(session, user_id):
        target = _destination(task)
        if target is not None and is_within(target, old):
            task.destination_folder = rebased(target, old, new)
            session.add(task)
    rules = (await session.exec(select(FilterRuleRow).where(FilterRuleRow.user_id == user_id))).all()
    for rule in rules:
        try:
            actions = json.loads(rule.actions)
        except ValueError:
            continue
        changed = False
        for action in actions if isinstance(actions, list) else []:
            named = action.get("folder") if isinstance(action, dict) else None
            if isinstance(named, str) and named and is_within(named, old):
                action["folder"] = rebased(named, old, new)
                changed = True
        if changed:
            rule.actions = json.dumps(actions)
            session.add(rule)
    await _flush(session)


async def _refuse_filter_targets(session: AsyncSession, user_id: int, path: str) -> None:
    """Refuse deleting `path` while a filter rule moves mail into it or below: the rule's next
    match would create the folder again."""
    rules = (
        await session.exec(
            select(FilterRuleRow).where(FilterRuleRow.user_id == user_id).order_by(col(FilterRuleRow.position))
        )
    ).all()
    for rule in rules:
        try:
            actions = json.loads(rule.actions)
        except ValueError:
            continue
        for action in actions if isinstance(actions, list) else []:
            named = action.get("folder") if isinstance(action, dict) else None
            if isinstance(named, str) and named and is_within("/".join(p for p in named.split("/") if p), path):
                raise FolderInUse(
                    f'The filter rule "{rule.name}" moves mail into this folder; change or delete the rule first.'
                )


async def create_folder(*, db: Database, user_id: int, name: str, parent_id: int | None = None) -> FolderView:
    """A new empty folder named `name`, at the top or inside the folder `parent_id`."""
    async with db.write() as session:
        await _locked(session, user_id)
        await ensure_special_folders(session, user_id)
        folders = await _all(session, user_id)
        parent = _parent(folders, parent_id)  # another user's folder is NotFound, whatever the name
        cleaned = check_folder_name(name)
        path, _ = _check_place(folders, None, parent, cleaned)
        folder = Folder(user_id=user_id, parent_id=parent.id if parent else None, name=cleaned, path=path)
        session.add(folder)
        await _flush(session)
        return folder_view(folder)


async def rename_folder(*, db: Database, user_id: int, folder_id: int, name: str) -> FolderView:
    """Give the folder a new name; its subfolders, and the tasks and filters naming them, follow."""
    async with db.write() as session:
        folders = await _locked(session, user_id)
        folder = _own(folders, folder_id)  # another user's folder is NotFound, whatever the name
        cleaned = check_folder_name(name)
        folders = await _lock_subtree(session, user_id, folders, folder_id)
        folder = _own(folders, folder_id)
        parent = _find(folders, folder.parent_id) if folder.parent_id is not None else None
        path, subtree = _check_place(folders, folder, parent, cleaned)
        old = folder.path
        folder.name = cleaned
        await _repath(session, user_id, subtree, old, path)
        return folder_view(folder)


async def move_folder(*, db: Database, user_id: int, folder_id: int, parent_id: int | None) -> FolderView:
    """Put the folder (with its subfolders) inside `parent_id`, or at the top when None."""
    async with db.write() as session:
        folders = await _locked(session, user_id)
        _own(folders, folder_id)
        folders = await _lock_subtree(session, user_id, folders, folder_id)
        folder = _own(folders, folder_id)
        parent = _parent(folders, parent_id)
        if parent is not None and is_within(parent.path, folder.path):
            raise FolderMoveInvalid("A folder cannot go inside itself or one of its own subfolders.")
        path, subtree = _check_place(folders, folder, parent, folder.name)
        old = folder.path
        folder.parent_id = parent.id if parent else None
        await _repath(session, user_id, subtree, old, path)
        return folder_view(folder)


async def delete_folder(*, db: Database, user_id: int, folder_id: int) -> FolderDeleted:
    """Delete the folder and its subfolders; their messages go to the Trash."""
    async with db.write() as session:
        await _locked(session, user_id)
        trash = (await ensure_special_folders(session, user_id))[SpecialUse.TRASH]
        folders = await _all(session, user_id)
        folder = _own(folders, folder_id)
        for task in await _tasks(session, user_id):
            target = _destination(task)
            if target is not None and is_within(target, folder.path):
                title = task.name or task.username
                raise FolderInUse(
                    f'The retrieval task "{title}" brings mail into this folder; change its destination folder '
                    "or delete the task first."
                )
        await _refuse_filter_targets(session, user_id, folder.path)
        folders = await _lock_subtree(session, user_id, folders, folder_id)
        folder = _own(folders, folder_id)
        subtree = [f for f in folders if is_within(f.path, folder.path)]
        ids = [f.id for f in subtree if f.id is not None]
        assert trash.id is not None
        trashed = await move_folder_contents(session, user_id=user_id, folder_ids=ids, to_folder_id=trash.id)
        await session.exec(delete(Folder).where(col(Folder.id).in_(ids), col(Folder.user_id) == user_id))
        return FolderDeleted(folders=len(ids), trashed=trashed)


async def empty_folder(*, db: Database, user_id: int, folder_id: int) -> int:
    """ "Empty Trash" / "Empty Junk": delete every message in it for good; returns how many."""
    async with db.write() as session:
        folder = _find(await _all(session, user_id), folder_id)
        if folder.special_use not in EMPTYABLE:
            raise InvalidInput(NOT_EMPTYABLE)
        return await delete_folder_contents(session, user_id=user_id, folder_id=folder_id)


async def special_folder(*, db: Database, user_id: int, use: SpecialUse) -> FolderView:
    """The user's special folder `use` (Trash, Junk...), created if missing."""
    async with db.write() as session:
        return folder_view((await ensure_special_folders(session, user_id))[use])
