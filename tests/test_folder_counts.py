"""Folder counts stay exact whatever happens to messages: the triggers of migration 0004 against a
COUNT(*) of the rows, on both databases, through delivery, read/unread, moves, deletion and the
cascade of a deleted folder."""

from __future__ import annotations

from sqlalchemy import delete, func
from sqlmodel import col, select

from service.persistence.database import Database
from service.persistence.mailstore import IncomingMessage, deliver_many, folder_by_path
from service.persistence.tables import Folder, Message
from service.usecases import mailbox
from service.usecases.reading.folders import list_folders
from service.usecases.users import add_user
from tests.mail_samples import sample


async def assert_counts_exact(db: Database, user_id: int) -> dict[str, tuple[int, int]]:
    async with db.read() as session:
        counted = {
            folder_id: (int(total), int(unread))
            for folder_id, total, unread in (
                await session.exec(
                    select(
                        Message.folder_id,
                        func.count(),
                        func.count().filter(col(Message.seen).is_(False)),
                    )
                    .where(Message.user_id == user_id)
                    .group_by(col(Message.folder_id))
                )
            ).all()
        }
    shown = {f.path: (f.total, f.unread) for f in await list_folders(db=db, user_id=user_id)}
    expected = {f.path: counted.get(f.id, (0, 0)) for f in await list_folders(db=db, user_id=user_id)}
    assert shown == expected
    return shown


async def test_counts_follow_every_change(db: Database) -> None:
    user = await add_user(db=db, email="counts@example.test", password="long enough")
    async with db.write() as session:
        inbox = await folder_by_path(session, user.id, "Inbox")
        archive = await folder_by_path(session, user.id, "Archive")
        assert inbox.id is not None
        assert archive.id is not None
        ids = await deliver_many(
            session,
            user_id=user.id,
            folder_id=inbox.id,
            messages=[IncomingMessage(raw=sample(f"n{n}"), seen=n % 2 == 0) for n in range(6)],
        )
    assert (await assert_counts_exact(db, user.id))["Inbox"] == (6, 3)

    await mailbox.set_seen(db=db, user_id=user.id, message_ids=ids, seen=True)
    assert (await assert_counts_exact(db, user.id))["Inbox"] == (6, 0)
    await mailbox.set_seen(db=db, user_id=user.id, message_ids=ids[:2], seen=False)
    await mailbox.move_messages(db=db, user_id=user.id, message_ids=ids[:3], folder_id=archive.id)
    shown = await assert_counts_exact(db, user.id)
    assert (shown["Inbox"], shown["Archive"]) == ((3, 0), (3, 2))

    await mailbox.delete_messages(db=db, user_id=user.id, message_ids=ids[3:])  # to the Trash
    await mailbox.delete_messages(db=db, user_id=user.id, message_ids=ids[3:4])  # and one for good
    shown = await assert_counts_exact(db, user.id)
    assert (shown["Inbox"], shown["Trash"]) == ((0, 0), (2, 0))

    async with db.write() as session:  # a folder's messages go with it (ON DELETE CASCADE)
        await session.exec(delete(Folder).where(col(Folder.id) == archive.id))
    shown = await assert_counts_exact(db, user.id)
    assert "Archive" not in shown
