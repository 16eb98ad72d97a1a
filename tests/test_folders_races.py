"""Folder management racing itself and mail delivery on PostgreSQL, where write transactions run
at once (READ COMMITTED); SQLite runs one writer at a time (BEGIN IMMEDIATE), so these
interleavings cannot happen there and those tests run on PostgreSQL only.

Each test forces the interleaving instead of hoping for it: a transaction held open (a delivery,
or a plain row lock standing in for "the other writer got there first") and the database's own
view of who waits on a lock (`pg_stat_activity`), so every step is known to have happened
before the next starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from service.domain.mailbox import FolderView
from service.domain.retrieval import LocalTarget
from service.domain.values import Protocol, SpecialUse
from service.persistence.database import Database
from service.persistence.mailstore import IncomingMessage, deliver_many, folder_by_path
from service.persistence.tables import Folder, Message
from service.usecases import folders
from service.usecases.reading.folders import list_folders
from service.usecases.retrieval.store import Cursor, Owner, commit_batch, load_cursors, resolve_folder
from service.usecases.users import add_user
from tests.mail_samples import sample
from tests.test_folders_manage import _task

WAIT_SECONDS = 15


def postgres_only(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite runs one write transaction at a time (BEGIN IMMEDIATE): no interleaving to test")


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (generously) until `check()` holds."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while not await check():  # noqa: ASYNC110 - the database, not this process, changes the answer
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT_SECONDS} seconds: {what}") from None


async def lock_waiters(db: Database) -> int:
    """How many sessions of this test's database wait on a lock right now."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with db.engine.connect() as connection:
        return int((await connection.execute(query)).scalar_one())


async def until_waiting(db: Database, count: int) -> None:
    async def enough() -> bool:
        return await lock_waiters(db) >= count

    await eventually(enough, f"{count} sessions waiting on a lock")


@asynccontextmanager
async def rows_locked(db: Database, folder_ids: Sequence[int]) -> AsyncIterator[None]:
    """Hold FOR UPDATE locks on these folder rows until the block ends (another writer mid-way)."""
    held, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with db.write() as session:
            await session.exec(select(Folder.id).where(col(Folder.id).in_(folder_ids)).with_for_update())
            held.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await held.wait()
    try:
        yield
    finally:
        release.set()
        await holder


async def _user(db: Database) -> int:
    return (await add_user(db=db, email="races@example.test", password="long enough")).id


async def _subjects(db: Database, folder_id: int) -> list[str]:
    async with db.read() as session:
        rows = (await session.exec(select(Message.subject).where(Message.folder_id == folder_id))).all()
    return sorted(rows)


async def _deliver(db: Database, user_id: int, path: str, subject: str) -> None:
    async with db.write() as session:
        folder = await folder_by_path(session, user_id, path)
        assert folder.id is not None
        await deliver_many(
            session, user_id=user_id, folder_id=folder.id, messages=[IncomingMessage(raw=sample(subject))]
        )


def _consistent(views: Sequence[FolderView]) -> None:
    """Every folder is listed under a listed parent, and its path is its parent's path and its name."""
    by_id = {view.id: view for view in views}
    for view in views:
        if view.parent_id is None:
            assert view.path == view.name
        else:
            assert view.parent_id in by_id, f"{view.path} hangs under a folder that is not listed"
            assert view.path == f"{by_id[view.parent_id].path}/{view.name}"


async def test_mail_delivered_while_its_folder_is_deleted_goes_to_the_trash(db: Database) -> None:
    """The delivery has stored its message, not yet committed, when the delete starts: the delete
    waits for it and moves that message to the Trash too, instead of cascading it away."""
    postgres_only(db)
    user_id = await _user(db)
    projects = await folders.create_folder(db=db, user_id=user_id, name="Projects")
    stored, commit = asyncio.Event(), asyncio.Event()

    async def deliver() -> None:
        async with db.write() as session:
            folder = await folder_by_path(session, user_id, "Projects")
            assert folder.id is not None
            await deliver_many(
                session, user_id=user_id, folder_id=folder.id, messages=[IncomingMessage(raw=sample("late mail"))]
            )
            stored.set()
            await commit.wait()

    delivery = asyncio.create_task(deliver())
    await stored.wait()
    deleting = asyncio.create_task(folders.delete_folder(db=db, user_id=user_id, folder_id=projects.id))
    await until_waiting(db, 1)
    commit.set()
    await delivery
    deleted = await deleting
    trash = await folders.special_folder(db=db, user_id=user_id, use=SpecialUse.TRASH)
    assert await _subjects(db, trash.id) == ["late mail"]
    assert deleted.trashed == 1


async def test_a_delivery_after_the_delete_creates_the_folder_again(db: Database) -> None:
    """The delete holds the folder when a delivery into it by path starts: the delivery waits,
    then finds the folder gone and creates it again, instead of failing or losing its message."""
    postgres_only(db)
    user_id = await _user(db)
    await _deliver(db, user_id, "Projects", "old mail")
    paths = {view.path: view.id for view in await list_folders(db=db, user_id=user_id)}
    trash = await folders.special_folder(db=db, user_id=user_id, use=SpecialUse.TRASH)
    async with rows_locked(db, [trash.id]):  # the delete stalls moving "old mail" into the Trash
        deleting = asyncio.create_task(folders.delete_folder(db=db, user_id=user_id, folder_id=paths["Projects"]))
        await until_waiting(db, 1)
        delivery = asyncio.create_task(_deliver(db, user_id, "Projects", "new mail"))

        async def delivery_waits_or_ended() -> bool:
            return delivery.done() or await lock_waiters(db) >= 2

        await eventually(delivery_waits_or_ended, "the delivery waiting on a lock")
    await deleting
    await delivery
    again = {view.path: view.id for view in await list_folders(db=db, user_id=user_id)}
    assert "Projects" in again, "the delivery's folder went with the delete, and its message with it"
    assert again["Projects"] != paths["Projects"]
    assert await _subjects(db, again["Projects"]) == ["new mail"]
    assert await _subjects(db, trash.id) == ["old mail"]


async def test_moving_two_folders_into_each_other_at_once_makes_no_cycle(db: Database) -> None:
    postgres_only(db)
    user_id = await _user(db)
    a = await folders.create_folder(db=db, user_id=user_id, name="A")
    b = await folders.create_folder(db=db, user_id=user_id, name="B")
    await _deliver(db, user_id, "A", "in A")
    async with rows_locked(db, [a.id, b.id]):  # both moves have read the folders and wait to write
        moves = asyncio.gather(
            folders.move_folder(db=db, user_id=user_id, folder_id=a.id, parent_id=b.id),
            folders.move_folder(db=db, user_id=user_id, folder_id=b.id, parent_id=a.id),
            return_exceptions=True,
        )
        await until_waiting(db, 2)
    outcomes = await moves
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(refused) == 1, outcomes
    assert isinstance(refused[0], folders.FolderMoveInvalid), outcomes
    views = await list_folders(db=db, user_id=user_id)
    _consistent(views)
    paths = {view.path for view in views}
    assert paths >= {"A", "A/B"} or paths >= {"B", "B/A"}
    assert await _subjects(db, a.id) == ["in A"]


async def test_renaming_two_siblings_to_one_name_at_once_refuses_the_second(db: Database) -> None:
    postgres_only(db)
    user_id = await _user(db)
    x = await folders.create_folder(db=db, user_id=user_id, name="X")
    y = await folders.create_folder(db=db, user_id=user_id, name="Y")
    async with rows_locked(db, [x.id, y.id]):
        renames = asyncio.gather(
            folders.rename_folder(db=db, user_id=user_id, folder_id=x.id, name="Z"),
            folders.rename_folder(db=db, user_id=user_id, folder_id=y.id, name="Z"),
            return_exceptions=True,
        )
        await until_waiting(db, 2)
    outcomes = await renames
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(refused) == 1, outcomes
    assert isinstance(refused[0], folders.FolderNameTaken), outcomes
    paths = {view.path for view in await list_folders(db=db, user_id=user_id)}
    assert "Z" in paths
    assert len(paths & {"X", "Y"}) == 1


async def test_a_subfolder_created_while_its_parent_is_renamed_follows_the_new_name(db: Database) -> None:
    postgres_only(db)
    user_id = await _user(db)
    projects = await folders.create_folder(db=db, user_id=user_id, name="Projects")
    async with rows_locked(db, [projects.id]):
        renaming = asyncio.create_task(
            folders.rename_folder(db=db, user_id=user_id, folder_id=projects.id, name="Work")
        )
        await until_waiting(db, 1)
        creating = asyncio.create_task(
            folders.create_folder(db=db, user_id=user_id, name="Child", parent_id=projects.id)
        )
        await until_waiting(db, 2)
    await renaming
    child = await creating
    assert child.path == "Work/Child"
    _consistent(await list_folders(db=db, user_id=user_id))


async def test_a_batch_bound_for_a_folder_deleted_since_it_was_resolved_is_retried_not_lost(db: Database) -> None:
    """A run resolves its folder once, then commits batches into it. Deleting that folder in
    between (possible only once no task names it) fails the batch and its cursor together; the
    runner gives the task back, and the next run resolves the folder again, creating it."""
    user_id = await _user(db)
    task_id = await _task(db, user_id, name="old", protocol=Protocol.IMAP)
    target = LocalTarget(None, "Projects")
    owner = Owner(task_id=task_id, user_id=user_id)
    folder_id = await resolve_folder(db, user_id, target)
    await folders.delete_folder(db=db, user_id=user_id, folder_id=folder_id)

    async def commit(into: int) -> int:
        return await commit_batch(
            db,
            owner=owner,
            folder_id=into,
            remote_folder="INBOX",
            messages=[IncomingMessage(raw=sample("retried"))],
            cursor=Cursor(7, 42),
        )

    with pytest.raises(IntegrityError):
        await commit(folder_id)
    assert await load_cursors(db, task_id) == {}  # the cursor did not move past the message
    again = await resolve_folder(db, user_id, target)
    assert await commit(again) == 1
    assert await _subjects(db, again) == ["retried"]
    assert await load_cursors(db, task_id) == {"INBOX": Cursor(7, 42)}
