"""Search finds a user's messages through the database's own full-text index (migration 0009),
on SQLite and PostgreSQL: filled when a message is stored, kept in step on move and delete."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

import pytest
from sqlalchemy import text, update
from sqlmodel import col

from service.config import Settings
from service.domain.message_index import index_message
from service.domain.values import Protocol
from service.errors import InvalidInput
from service.persistence import mailstore, migrations, search_backlog, search_index
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Message
from service.usecases import mailbox
from service.usecases.search import search
from service.usecases.users import add_user
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.retrieval_env import make_env

PASSWORD = "long enough"


def make(
    subject: str,
    *,
    sender: str = "Anna Müller <anna@example.test>",
    to: str = "alice@example.test",
    cc: str = "",
    date: str = "Tue, 05 Mar 2024 10:00:00 +0000",
    body: str = "nothing to see",
    html: str | None = None,
    attachment: str | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = date
    if html is not None:
        message.set_content(html, subtype="html")
    else:
        message.set_content(body)
    if attachment:
        message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename=attachment)
    return message.as_bytes(policy=SMTP)


async def store(db: Database, user_id: int, folder: str, *raws: bytes, seen: bool = False) -> list[int]:
    async with db.write() as session:
        target = await mailstore.folder_by_path(session, user_id, folder)
        assert target.id is not None
        return await mailstore.deliver_many(
            session,
            user_id=user_id,
            folder_id=target.id,
            messages=[mailstore.IncomingMessage(raw=raw, seen=seen) for raw in raws],
        )


async def found(db: Database, user_id: int, query: str) -> list[str]:
    return [hit.message.subject for hit in (await search(db=db, user_id=user_id, query=query)).hits]


@pytest.fixture
async def alice(db: Database) -> int:
    return (await add_user(db=db, email="alice@example.test", password=PASSWORD)).id


async def test_every_operator_finds_what_it_names(db: Database, alice: int) -> None:
    await store(
        db,
        alice,
        "Inbox",
        make("Budget 2024", body="The quarterly report is attached.", attachment="Bericht_März.pdf"),
        make("Lunch", sender="Bob Smith <bob@other.test>", cc="carol@example.test", body="Pizza at noon? café"),
        make("Old news", date="Mon, 01 Jan 2018 09:00:00 +0000", body="quarterly report from long ago"),
    )
    await store(
        db,
        alice,
        "Archive/Work Stuff",
        make("Report filed", date="Mon, 04 Mar 2024 10:00:00 +0000", body="filed away"),
        seen=True,
    )
    assert await found(db, alice, "quarterly") == ["Budget 2024", "Old news"]  # newest first
    assert await found(db, alice, '"quarterly report"') == ["Budget 2024", "Old news"]
    assert await found(db, alice, '"report quarterly"') == []
    assert await found(db, alice, "from:bob") == ["Lunch"]
    assert await found(db, alice, "from:bob@other.test") == ["Lunch"]
    assert await found(db, alice, 'from:"anna müller" after:2020-01-01') == ["Budget 2024", "Report filed"]
    assert await found(db, alice, "to:carol") == ["Lunch"]  # Cc counts as a recipient
    assert await found(db, alice, "subject:report") == ["Report filed"]
    assert await found(db, alice, "report") == ["Budget 2024", "Report filed", "Old news"]
    assert await found(db, alice, "has:attachment") == ["Budget 2024"]
    assert await found(db, alice, "bericht_marz") == ["Budget 2024"]  # attachment name, accents folded
    assert await found(db, alice, "is:unread filed") == []
    assert await found(db, alice, "is:read") == ["Report filed"]
    assert await found(db, alice, 'in:"archive/work stuff"') == ["Report filed"]
    assert await found(db, alice, "in:inbox quarterly before:2020-01-01") == ["Old news"]
    assert await found(db, alice, "in:Nowhere quarterly") == []
    assert await found(db, alice, "cafe") == ["Lunch"]  # remove_diacritics / plain_words
    assert await found(db, alice, "xyz:quarterly") == []  # an unknown operator is words
    hits = (await search(db=db, user_id=alice, query="filed")).hits
    assert [(h.folder.path, h.folder.name) for h in hits] == [("Archive/Work Stuff", "Work Stuff")]


async def test_html_body_is_found_as_text(db: Database, alice: int) -> None:
    markup = "<html><head><style>.hidden{}</style></head><body><p>Hello <b>Wonder</b>land &amp; more</p>"
    await store(db, alice, "Inbox", make("Newsletter", html=markup + "<script>var secret=1</script></body></html>"))
    assert await found(db, alice, "wonderland") == ["Newsletter"]  # the word the reader sees
    assert await found(db, alice, '"hello wonderland & more"') == ["Newsletter"]
    assert await found(db, alice, "hidden") == []
    assert await found(db, alice, "secret") == []
    assert await found(db, alice, "body") == []


async def test_index_follows_moves_and_deletes(db: Database, alice: int) -> None:
    [mid] = await store(db, alice, "Inbox", make("Travel plans", body="Flight to Lisbon"))
    assert await store(db, alice, "Archive") == []  # creates the folder
    async with db.read() as session:
        folders = {f.path: f.id or 0 for f in await mailstore.list_folders(session, alice)}
    await mailbox.move_messages(db=db, user_id=alice, message_ids=[mid], folder_id=folders["Archive"])
    assert await found(db, alice, "in:archive lisbon") == ["Travel plans"]
    assert await found(db, alice, "in:inbox lisbon") == []
    await mailbox.delete_messages(db=db, user_id=alice, message_ids=[mid])  # to the Trash
    assert [h.folder.path for h in (await search(db=db, user_id=alice, query="lisbon")).hits] == ["Trash"]
    await mailbox.delete_messages(db=db, user_id=alice, message_ids=[mid])  # for good
    assert await found(db, alice, "lisbon") == []
    assert await _index_rows(db) == 0


async def _index_rows(db: Database) -> int:
    async with db.read() as session:
        return int((await session.exec(text("SELECT count(*) FROM message_search"))).one()[0])  # type: ignore[call-overload]


async def test_deleting_a_folder_or_user_empties_their_index(db: Database, alice: int) -> None:
    await store(db, alice, "Old", make("One", body="alpha"), make("Two", body="alpha"))
    assert await _index_rows(db) == 2
    async with db.write() as session:
        await session.exec(text("DELETE FROM folder WHERE path = 'Old'"))  # type: ignore[call-overload]
    assert await _index_rows(db) == 0


async def test_another_users_mail_is_never_found(db: Database, alice: int) -> None:
    mallory = (await add_user(db=db, email="mallory@example.test", password=PASSWORD)).id
    await store(db, alice, "Inbox", make("Secret plans", body="the treasure map"))
    await store(db, mallory, "Inbox", make("Mallory's own", body="no treasure here"))
    assert await found(db, mallory, "treasure") == ["Mallory's own"]
    assert await found(db, mallory, "secret") == []
    assert await found(db, mallory, "in:inbox is:unread") == ["Mallory's own"]
    assert await found(db, alice, "treasure") == ["Secret plans"]


@pytest.mark.parametrize("dense_from", [search_index.DENSE_MATCHES, -1])
async def test_pages_newest_first(db: Database, alice: int, dense_from: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both PostgreSQL plans (few matches through GIN, many by walking newest first) page alike."""
    monkeypatch.setattr(search_index, "DENSE_MATCHES", dense_from)
    raws = [make(f"Item {n:02}", date=f"Tue, 05 Mar 2024 10:{n:02}:00 +0000", body="common") for n in range(7)]
    await store(db, alice, "Inbox", *raws)
    first = await search(db=db, user_id=alice, query="common", page=1, per_page=3)
    assert [h.message.subject for h in first.hits] == ["Item 06", "Item 05", "Item 04"]
    assert (first.previous_page, first.next_page) == (None, 2)
    last = await search(db=db, user_id=alice, query="common", page=3, per_page=3)
    assert [h.message.subject for h in last.hits] == ["Item 00"]
    assert (last.previous_page, last.next_page) == (2, None)
    with pytest.raises(InvalidInput):
        await search(db=db, user_id=alice, query="common", page=0)


WORST = [
    "",
    "   ",
    '"',
    '"unbalanced quote',
    'in:"unclosed',
    "a\x00b",
    "\udcff\udcfe",
    "*",
    "NEAR(a b)",
    "a AND OR NOT b",
    "-^()*:{}[]'\\;--",
    "'; DROP TABLE message; --",
    "subject:",
    "from:*",
    "after:2024-13-45 before:0000-00-00",
    "x" * 100_000,
    "a " * 50_000,
    '" OR 1=1 --',
    "col:val sender : x",
    "\u0301\u0301",
    "㎏",
]


@pytest.mark.parametrize("query", WORST)
async def test_worst_inputs_find_nothing_without_failing(db: Database, alice: int, query: str) -> None:
    await store(db, alice, "Inbox", make("Innocent", body="plain words"))
    results = await search(db=db, user_id=alice, query=query)
    assert results.hits == () or all(h.message.subject == "Innocent" for h in results.hits)
    assert await found(db, alice, "plain") == ["Innocent"]  # and the table is still there


async def test_precomputed_index_carries_the_search_text(db: Database, alice: int) -> None:
    """Retrieval indexes in its download thread (`index_message`); delivery uses that text."""
    raw = make("Prepared", body="computed ahead in a worker thread")
    async with db.write() as session:
        inbox = await mailstore.folder_by_path(session, alice, "Inbox")
        assert inbox.id is not None
        incoming = mailstore.IncomingMessage(raw=raw, index=index_message(raw))
        await mailstore.deliver_many(session, user_id=alice, folder_id=inbox.id, messages=[incoming])
    assert await found(db, alice, '"worker thread"') == ["Prepared"]


async def test_the_migration_indexes_mail_already_stored(settings: Settings, db: Database, alice: int) -> None:
    await store(db, alice, "Inbox", *(make(f"Before {n}", body=f"stored before search existed {n}") for n in range(3)))
    await db.dispose()
    migrations.downgrade(settings, "0008")  # no index at all
    migrations.upgrade(settings)  # 0009 builds it
    again = Database(settings)
    try:
        assert sorted(await found(again, alice, '"before search existed"')) == ["Before 0", "Before 1", "Before 2"]
        assert await found(again, alice, "2") == ["Before 2"]
    finally:
        await again.dispose()


async def test_dates_far_from_now_are_indexed_moved_and_deleted(db: Database, alice: int) -> None:
    """The SQLite index is keyed by sort_date (seconds since 2000, clamped): old, undated and
    far-future messages are stored, found in date order and deleted like any other."""
    old = make("From 1985", date="Mon, 07 Jan 1985 10:00:00 +0000", body="timeless")
    undated = b"Subject: Undated\r\nFrom: x@example.test\r\n\r\ntimeless too\r\n"
    async with db.write() as session:
        inbox = await mailstore.folder_by_path(session, alice, "Inbox")
        assert inbox.id is not None
        far = datetime(2150, 1, 1, tzinfo=UTC)  # a server's bogus INTERNALDATE
        ids = await mailstore.deliver_many(
            session,
            user_id=alice,
            folder_id=inbox.id,
            messages=[
                mailstore.IncomingMessage(raw=old),
                mailstore.IncomingMessage(raw=undated, received_at=far),
                mailstore.IncomingMessage(raw=make("Sane", body="timeless"), received_at=far),
            ],
        )
    assert await found(db, alice, "timeless") == ["Undated", "Sane", "From 1985"]
    assert await found(db, alice, "timeless before:1990-01-01") == ["From 1985"]
    assert await found(db, alice, "timeless after:2100-01-01") == ["Undated"]
    async with db.write() as session:  # if a sort_date ever changes, the index follows
        moved = datetime(2001, 1, 1, tzinfo=UTC)
        await session.exec(update(Message).where(col(Message.id) == ids[1]).values(sort_date=moved))
    assert await found(db, alice, "timeless before:2002-01-01 after:2000-12-31") == ["Undated"]
    trash = await mailbox.delete_messages(db=db, user_id=alice, message_ids=ids)
    assert trash.trashed == 3
    await mailbox.delete_messages(db=db, user_id=alice, message_ids=ids)
    assert await _index_rows(db) == 0


@pytest.mark.dovecot
@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
async def test_retrieved_mail_is_found(
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    dovecot: DovecotServer,
    mail_user: MailUser,
    protocol: Protocol,
) -> None:
    """Mail that retrieval stores is queued for the index (search_backlog) and found by the next
    search, which indexes the searcher's queue first."""
    env = await make_env(db, settings, secret_box, dovecot, mail_user)
    markup = "<p>Your <b>boarding</b> pass for flight TP1234</p>"
    dovecot.deliver(mail_user.email, make("Boarding pass", html=markup, attachment="Ticket_Lissabon.pdf"))
    dovecot.deliver(mail_user.email, make("Other", body="nothing about flights"))
    result = await env.run(await env.add_task(protocol))
    assert result.imported == 2
    assert (await _index_rows(db), await search_backlog.pending(db, user_id=env.user_id)) == (0, 2)
    assert await found(db, env.user_id, "tp1234 has:attachment") == ["Boarding pass"]
    assert (await _index_rows(db), await search_backlog.pending(db)) == (2, 0)
    assert await found(db, env.user_id, "ticket_lissabon") == ["Boarding pass"]
