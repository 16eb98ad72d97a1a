"""The mailbox use cases: the folder tree with unread counts, opening a message (marks it
read), marking read and unread, moving, deleting to the Trash and from it for good, and
every one of them limited to the signed-in user's own mail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.domain.mailbox import FolderView
from service.domain.users import UserView
from service.domain.values import SpecialUse
from service.errors import InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.usecases import mailbox, reading
from service.usecases.users import add_user
from tests.mail_samples import sample
from tests.test_reading_render import html_message, with_attachments


async def _user(db: Database, email: str = "alice@example.test") -> UserView:
    return await add_user(db=db, email=email, password="long enough")


async def _deliver(
    db: Database, user_id: int, raw: bytes, *, folder: str = "Inbox", seen: bool = False, age_minutes: int = 0
) -> int:
    async with db.write() as session:
        target = await folder_by_path(session, user_id, folder)
        assert target.id is not None
        received = datetime.now(UTC) - timedelta(minutes=age_minutes)
        stored = await deliver(session, user_id=user_id, folder_id=target.id, raw=raw, seen=seen, received_at=received)
    assert stored.id is not None
    return stored.id


async def _folder(db: Database, user_id: int, path: str) -> FolderView:
    return next(f for f in await reading.list_folders(db=db, user_id=user_id) if f.path == path)


async def test_folder_tree_is_special_first_and_children_under_parents(db: Database) -> None:
    alice = await _user(db)
    async with db.write() as session:
        for path in ("Projects/Beta", "Archive 2", "Archive/2024", "Projects/alpha", "Inbox/Team", "Archive"):
            await folder_by_path(session, alice.id, path)
    await _deliver(db, alice.id, sample("one"), folder="Archive/2024")
    await _deliver(db, alice.id, sample("two"), folder="Archive/2024", seen=True)

    folders = await reading.list_folders(db=db, user_id=alice.id)
    assert [f.path for f in folders] == [
        "Inbox", "Inbox/Team", "Sent", "Drafts", "Trash", "Junk", "Outbox",
        "Archive", "Archive/2024", "Archive 2", "Projects", "Projects/alpha", "Projects/Beta",
    ]  # fmt: skip
    archive_2024 = await _folder(db, alice.id, "Archive/2024")
    assert (archive_2024.total, archive_2024.unread, archive_2024.depth) == (2, 1, 1)


async def test_opening_a_message_marks_it_read_and_renders_it(db: Database) -> None:
    alice = await _user(db)
    message_id = await _deliver(db, alice.id, html_message())
    assert (await _folder(db, alice.id, "Inbox")).unread == 1

    opened = await reading.open_message(db=db, user_id=alice.id, message_id=message_id)
    assert opened.seen
    assert opened.folder.special_use is SpecialUse.INBOX
    assert opened.view.subject == "Newsletter"
    assert opened.view.remote_images == 2
    assert (await _folder(db, alice.id, "Inbox")).unread == 0

    body = await reading.render_body(db=db, user_id=alice.id, message_id=message_id, allow_remote_images=True)
    assert body.html is not None
    assert "tracker.example/pixel.gif" in body.html


async def test_mark_read_and_unread(db: Database) -> None:
    alice = await _user(db)
    ids = [await _deliver(db, alice.id, sample(f"m{i}")) for i in range(3)]
    assert await mailbox.set_seen(db=db, user_id=alice.id, message_ids=ids[:2], seen=True) == 2
    assert (await _folder(db, alice.id, "Inbox")).unread == 1
    assert await mailbox.set_seen(db=db, user_id=alice.id, message_ids=[ids[0]], seen=False) == 1
    page = await reading.list_page(db=db, user_id=alice.id, folder_id=(await _folder(db, alice.id, "Inbox")).id)
    assert {m.id: m.seen for m in page.messages} == {ids[0]: False, ids[1]: True, ids[2]: False}
    with pytest.raises(InvalidInput):
        await mailbox.set_seen(db=db, user_id=alice.id, message_ids=[], seen=True)


async def test_move_and_delete_to_trash_then_for_good(db: Database) -> None:
    alice = await _user(db)
    first = await _deliver(db, alice.id, with_attachments())
    second = await _deliver(db, alice.id, sample("second"))
    async with db.write() as session:
        archive = await folder_by_path(session, alice.id, "Archive")
    assert archive.id is not None

    assert await mailbox.move_messages(db=db, user_id=alice.id, message_ids=[first], folder_id=archive.id) == 1
    assert (await _folder(db, alice.id, "Archive")).total == 1
    assert (await _folder(db, alice.id, "Inbox")).total == 1

    outcome = await mailbox.delete_messages(db=db, user_id=alice.id, message_ids=[first, second])
    assert (outcome.trashed, outcome.deleted) == (2, 0)
    trash = await _folder(db, alice.id, "Trash")
    assert trash.total == 2
    assert (await reading.open_message(db=db, user_id=alice.id, message_id=first)).folder.id == trash.id

    outcome = await mailbox.delete_messages(db=db, user_id=alice.id, message_ids=[first])
    assert (outcome.trashed, outcome.deleted) == (0, 1)
    assert (await _folder(db, alice.id, "Trash")).total == 1
    with pytest.raises(NotFound):
        await reading.export_raw(db=db, user_id=alice.id, message_id=first)  # the bytes went too
    with pytest.raises(NotFound):
        await mailbox.delete_messages(db=db, user_id=alice.id, message_ids=[first])


async def test_nothing_moves_into_the_outbox(db: Database) -> None:
    alice = await _user(db)
    message_id = await _deliver(db, alice.id, sample("x"))
    outbox = await _folder(db, alice.id, "Outbox")
    with pytest.raises(InvalidInput):
        await mailbox.move_messages(db=db, user_id=alice.id, message_ids=[message_id], folder_id=outbox.id)


async def test_another_users_mail_is_not_found_and_never_changed(db: Database) -> None:
    alice = await _user(db)
    mallory = await _user(db, "mallory@example.test")
    alices = await _deliver(db, alice.id, with_attachments())
    mallorys = await _deliver(db, mallory.id, sample("mine"))
    alice_inbox = await _folder(db, alice.id, "Inbox")
    mallory_trash = await _folder(db, mallory.id, "Trash")

    with pytest.raises(NotFound):
        await reading.list_page(db=db, user_id=mallory.id, folder_id=alice_inbox.id)
    with pytest.raises(NotFound):
        await reading.open_message(db=db, user_id=mallory.id, message_id=alices)
    with pytest.raises(NotFound):
        await reading.render_body(db=db, user_id=mallory.id, message_id=alices)
    with pytest.raises(NotFound):
        await reading.attachment(db=db, user_id=mallory.id, message_id=alices, part_id="2")
    with pytest.raises(NotFound):
        await reading.inline_image(db=db, user_id=mallory.id, message_id=alices, part_id="2")
    with pytest.raises(NotFound):
        await mailbox.set_seen(db=db, user_id=mallory.id, message_ids=[alices], seen=True)
    with pytest.raises(NotFound):
        await mailbox.delete_messages(db=db, user_id=mallory.id, message_ids=[alices])
    with pytest.raises(NotFound):
        await mailbox.move_messages(db=db, user_id=mallory.id, message_ids=[alices], folder_id=mallory_trash.id)
    with pytest.raises(NotFound):  # nor into someone else's folder
        await mailbox.move_messages(db=db, user_id=mallory.id, message_ids=[mallorys], folder_id=alice_inbox.id)
    # A mixed selection changes only the user's own message.
    assert await mailbox.set_seen(db=db, user_id=mallory.id, message_ids=[alices, mallorys], seen=True) == 1

    inbox = await _folder(db, alice.id, "Inbox")
    assert (inbox.total, inbox.unread) == (1, 1)
    assert (await reading.attachment(db=db, user_id=alice.id, message_id=alices, part_id="2")).filename == (
        "Bericht Größe €.pdf"
    )
