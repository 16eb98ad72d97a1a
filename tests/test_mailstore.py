"""The local mailbox stores every message byte for byte, even ones the parser cannot read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import select

from service.domain.message_index import index_message
from service.errors import NotFound
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path, read_raw
from service.persistence.tables import Folder, Message
from service.usecases.users import add_user

GOOD = (
    b"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Date: Tue, 05 Mar 2024 10:11:12 +0100\r\n"
    b"Message-ID: <abc@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo   Welt\r\n"
    b"--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--XX--\r\n"
)
# Headers the stdlib trips over, a boundary that never comes, bytes that are not UTF-8.
BROKEN = (
    b"From: \xff\xfe<<<@@@\r\nSubject: =?x-unknown?q?=ZZ?=\r\nDate: yesterday-ish\r\n"
    b"Content-Type: multipart/mixed; boundary=\r\n\r\n\x00\x01 body \xc3\x28"
)


def test_index_of_a_normal_message() -> None:
    index = index_message(GOOD, with_body=True)
    assert index.subject == "Grüße"
    assert index.from_address == "Jörg Müller <joerg@example.test>"
    assert index.date == datetime(2024, 3, 5, 9, 11, 12, tzinfo=UTC)
    assert index.message_id == "<abc@example.test>"
    assert index.preview == "Hallo Welt"
    assert index.has_attachments
    assert index.parse_error is None
    assert index.size == len(GOOD)
    cheap = index_message(GOOD)
    assert (cheap.subject, cheap.from_address, cheap.date, cheap.has_attachments, cheap.preview) == (
        index.subject,
        index.from_address,
        index.date,
        True,
        "",
    )


@pytest.mark.parametrize("raw", [BROKEN, b"", b"\r\n\r\n", b"Subject: " + b"x" * 5000, b"no headers at all"])
def test_index_never_raises(raw: bytes) -> None:
    assert index_message(raw, with_body=True).size == len(raw)
    index = index_message(raw)
    assert index.size == len(raw)
    assert len(index.subject) <= 998


async def test_broken_message_is_stored_unchanged_and_listed(db: Database) -> None:
    user = await add_user(db=db, email="alice@example.test", password="long enough")
    async with db.write() as session:
        inbox = await folder_by_path(session, user.id, "Inbox")
        assert inbox.id is not None
        stored = await deliver(session, user_id=user.id, folder_id=inbox.id, raw=BROKEN)
        good = await deliver(session, user_id=user.id, folder_id=inbox.id, raw=GOOD, seen=True)
    async with db.read() as session:
        listed = (await session.exec(select(Message).where(Message.folder_id == inbox.id))).all()
        assert {m.id for m in listed} == {stored.id, good.id}
        assert stored.id is not None
        assert await read_raw(session, user_id=user.id, message_id=stored.id) == BROKEN
    assert index_message(BROKEN, with_body=True).parse_error is not None  # the full parse sees the damage
    assert good.parse_error is None
    assert good.seen


async def test_nested_folders_are_created_with_their_parents(db: Database) -> None:
    user = await add_user(db=db, email="bob@example.test", password="long enough")
    async with db.write() as session:
        leaf = await folder_by_path(session, user.id, "Archive/2024/Ça va")
        again = await folder_by_path(session, user.id, "Archive/2024/Ça va")
    assert leaf.id == again.id
    async with db.read() as session:
        folders = {f.path: f for f in (await session.exec(select(Folder).where(Folder.user_id == user.id))).all()}
    assert folders["Archive/2024/Ça va"].parent_id == folders["Archive/2024"].id
    assert folders["Archive/2024"].parent_id == folders["Archive"].id
    assert folders["Archive"].parent_id is None


async def test_another_users_message_is_not_found(db: Database) -> None:
    alice = await add_user(db=db, email="alice@example.test", password="long enough")
    mallory = await add_user(db=db, email="mallory@example.test", password="long enough")
    async with db.write() as session:
        inbox = await folder_by_path(session, alice.id, "Inbox")
        assert inbox.id is not None
        message = await deliver(session, user_id=alice.id, folder_id=inbox.id, raw=GOOD)
    assert message.id is not None
    async with db.read() as session:
        with pytest.raises(NotFound):
            await read_raw(session, user_id=mallory.id, message_id=message.id)


async def test_a_nul_byte_in_the_text_is_stored_on_every_database(db: Database) -> None:
    """PostgreSQL text cannot hold NUL: the index drops it, the raw bytes keep it."""
    raw = b"Subject: nul\r\nContent-Type: text/plain\r\n\r\nbefore\x00after\r\n"
    user = await add_user(db=db, email="nul@example.test", password="long enough")
    async with db.write() as session:
        inbox = await folder_by_path(session, user.id, "Inbox")
        assert inbox.id is not None
        message = await deliver(session, user_id=user.id, folder_id=inbox.id, raw=raw, full_index=True)
    assert message.preview == "before after"
    async with db.read() as session:
        assert message.id is not None
        assert await read_raw(session, user_id=user.id, message_id=message.id) == raw


async def test_a_large_body_is_stored_byte_for_byte(db: Database) -> None:
    """Bodies over STREAM_BYTES take SQLite's incremental blob path; every database returns them whole."""
    raw = b"Subject: big\r\n\r\n" + bytes(range(256)) * (9 * 1024 * 1024 // 256) + b"\r\n"
    user = await add_user(db=db, email="big@example.test", password="long enough")
    async with db.write() as session:
        inbox = await folder_by_path(session, user.id, "Inbox")
        assert inbox.id is not None
        small = await deliver(session, user_id=user.id, folder_id=inbox.id, raw=GOOD)
        large = await deliver(session, user_id=user.id, folder_id=inbox.id, raw=raw)
    async with db.read() as session:
        assert large.id is not None
        assert small.id is not None
        assert await read_raw(session, user_id=user.id, message_id=large.id) == raw
        assert await read_raw(session, user_id=user.id, message_id=small.id) == GOOD
    assert large.size == len(raw)
