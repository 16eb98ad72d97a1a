"""A folder renamed on the server is not imported again: its cursor, and its local folder when
it was made for it, follow the new name; new mail in it arrives once (issue 14). Against the
real Dovecot fixture, renaming as the mailbox's user does (IMAP RENAME, RFC 3501 6.3.5)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from imapclient import IMAPClient
from sqlalchemy import event
from sqlmodel import col, select

from service.config import Settings
from service.domain.values import FolderTransfer, LogLevel
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.persistence.secrets import SecretBox
from service.persistence.tables import Folder, ImapCursor, Message
from service.usecases.retrieval.imap_renames import Orphans
from service.usecases.retrieval.store import Cursor
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.mail_samples import sample
from tests.retrieval_env import Env, make_env


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


@contextmanager
def as_the_user(env: Env) -> Iterator[IMAPClient]:
    client = IMAPClient(env.dovecot.host, port=env.dovecot.imaps_port, ssl_context=env.dovecot.ssl_context())
    client.login(env.mailbox.email, env.mailbox.password)
    try:
        yield client
    finally:
        client.logout()


def deliver_to(env: Env, folder: str, *subjects: str) -> None:
    for subject in subjects:
        env.dovecot.deliver(env.mailbox.email, sample(subject), folder=folder)


async def folder_paths(env: Env) -> set[str]:
    async with env.db.read() as session:
        return set((await session.exec(select(Folder.path))).all())


async def cursors(env: Env) -> set[str]:
    async with env.db.read() as session:
        return set((await session.exec(select(ImapCursor.remote_folder))).all())


async def test_a_renamed_tree_keeps_its_local_folders_and_imports_only_new_mail(env: Env) -> None:
    deliver_to(env, "Archiv", "a1", "a2", "a3")
    deliver_to(env, "Archiv/2024", "b1", "b2")
    deliver_to(env, "INBOX", "inbox")
    task_id = await env.add_task()
    assert (await env.run(task_id)).imported == 6

    with as_the_user(env) as client:
        client.rename_folder("Archiv", "Alt")
    deliver_to(env, "Alt", "new in the renamed folder")

    result = await env.run(task_id)
    assert (result.imported, result.skipped, result.errors) == (1, 0, [])
    counts = await env.local_counts()
    assert {path: n for path, n in counts.items() if path.startswith("Remote/")} == {
        "Remote/INBOX": 1,
        "Remote/Alt": 4,
        "Remote/Alt/2024": 2,
    }
    assert not any(path.startswith("Remote/Archiv") for path in await folder_paths(env))
    assert set((await env.local_hashes()).values()) == {1}
    assert await cursors(env) == {"INBOX", "Alt", "Alt/2024"}
    infos = await env.logs(LogLevel.INFO)
    assert any("Archiv" in text and "renamed to Alt" in text for text in infos)
    # The child's local folder moved with its parent: the log says where its mail is, not where it was.
    assert any(
        "Archiv/2024" in text and "kept in Remote/Alt/2024, where new mail arrives too." in text for text in infos
    )
    assert not any("Remote/Archiv/2024" in text for text in infos if "renamed" in text), infos

    assert (await env.run(task_id)).imported == 0
    deliver_to(env, "Alt/2024", "new in the renamed child")
    assert (await env.run(task_id)).imported == 1
    assert (await env.local_counts())["Remote/Alt/2024"] == 3


async def test_a_folder_renamed_and_recreated_under_its_old_name_is_not_imported_again(env: Env) -> None:
    """Rename "Archiv" and create a new "Archiv" (as clients, or Dovecot's auto=create for Sent,
    do): the old path is listed again, but its UIDVALIDITY is not the cursor's. The cursor follows
    the renamed folder; the new folder is new, not a reset one."""
    deliver_to(env, "Archiv", "a1", "a2", "a3")
    task_id = await env.add_task()
    assert (await env.run(task_id)).imported == 3

    with as_the_user(env) as client:
        client.rename_folder("Archiv", "Archiv 2023")
        client.create_folder("Archiv")
    deliver_to(env, "Archiv", "new in the new Archiv")

    result = await env.run(task_id)
    assert (result.imported, result.skipped, result.errors) == (1, 0, [])
    assert set((await env.local_hashes()).values()) == {1}
    counts = await env.local_counts()
    assert (counts["Remote/Archiv 2023"], counts["Remote/Archiv"]) == (3, 1)
    assert await env.logs(LogLevel.WARNING) == []
    assert await cursors(env) == {"INBOX", "Archiv", "Archiv 2023"}
    assert (await env.run(task_id)).imported == 0


async def test_a_local_folder_the_user_filed_mail_in_stays_and_new_mail_goes_to_the_new_name(env: Env) -> None:
    deliver_to(env, "Projekte", "p1", "p2")
    task_id = await env.add_task(folder_transfer=FolderTransfer.ROOT)
    assert (await env.run(task_id)).imported == 2
    async with env.db.write() as session:
        projekte = await folder_by_path(session, env.user_id, "Projekte")
        assert projekte.id is not None
        await deliver(session, user_id=env.user_id, folder_id=projekte.id, raw=sample("filed here by the user"))

    with as_the_user(env) as client:
        client.rename_folder("Projekte", "Projekte 2025")
    deliver_to(env, "Projekte 2025", "p3")

    result = await env.run(task_id)
    assert (result.imported, result.errors) == (1, [])
    counts = await env.local_counts()
    assert (counts["Projekte"], counts["Projekte 2025"]) == (3, 1)
    assert set((await env.local_hashes()).values()) == {1}
    assert (await env.run(task_id)).imported == 0


async def test_a_folder_recreated_under_a_new_name_is_matched_by_content(env: Env) -> None:
    """Copy-then-delete (or a server that gives a renamed folder a new UIDVALIDITY): the
    messages are matched against what the task stored from the folder that is gone."""
    kept = [sample(f"k{n}") for n in range(3)]
    for raw in kept:
        env.dovecot.deliver(env.mailbox.email, raw, folder="Belege")
    task_id = await env.add_task()
    assert (await env.run(task_id)).imported == 3

    for raw in kept:
        env.dovecot.deliver(env.mailbox.email, raw, folder="Rechnungen")
    env.dovecot.doveadm("mailbox", "delete", "-u", env.mailbox.email, "Belege")
    deliver_to(env, "Rechnungen", "really new")

    result = await env.run(task_id)
    assert (result.imported, result.skipped, result.errors) == (1, 3, [])
    counts = await env.local_counts()
    assert (counts["Remote/Belege"], counts["Remote/Rechnungen"]) == (3, 1)
    assert set((await env.local_hashes()).values()) == {1}
    assert (await env.run(task_id)).imported == 0

    # The matched copies are Rechnungen's now: a copy in yet another new folder is that folder's own.
    env.dovecot.deliver(env.mailbox.email, kept[0], folder="Steuer")
    later = await env.run(task_id)
    assert (later.imported, later.skipped) == (1, 0)
    assert (await env.local_counts())["Remote/Steuer"] == 1


class Killed(Exception):
    """The process dies at this statement."""


async def test_content_matched_copies_change_origin_with_the_batch_and_its_cursor_or_not_at_all(env: Env) -> None:
    """DESIGN section 3: a batch, its cursor and the new origin of the copies it matched commit in one
    transaction. Killed at the statement that gives a matched copy its new origin, the run leaves no
    cursor for the new folder, so the next run matches the copies again."""
    kept = [sample(f"k{n}") for n in range(3)]
    for raw in kept:
        env.dovecot.deliver(env.mailbox.email, raw, folder="Belege")
    task_id = await env.add_task()
    assert (await env.run(task_id)).imported == 3
    for raw in kept:
        env.dovecot.deliver(env.mailbox.email, raw, folder="Rechnungen")
    env.dovecot.doveadm("mailbox", "delete", "-u", env.mailbox.email, "Belege")
    deliver_to(env, "Rechnungen", "really new")

    killed: list[str] = []

    def kill_at_adoption(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE MESSAGE ") and "remote_uidvalidity" in statement:
            killed.append(statement)
            raise Killed

    engine = env.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", kill_at_adoption)
    try:
        await env.run(task_id)  # the runner logs the crash and releases the lease
    finally:
        event.remove(engine, "before_cursor_execute", kill_at_adoption)
    assert killed
    assert "Rechnungen" not in await cursors(env)
    assert await origins(env) == {"Belege": 3}

    result = await env.run(task_id)
    assert (result.imported, result.skipped, result.errors) == (1, 3, [])
    assert await origins(env) == {"Rechnungen": 4}
    assert set((await env.local_hashes()).values()) == {1}


async def origins(env: Env) -> dict[str | None, int]:
    async with env.db.read() as session:
        return dict(Counter((await session.exec(select(Message.remote_folder))).all()))


async def test_a_new_folder_with_a_message_also_in_another_live_folder_is_imported(env: Env) -> None:
    """Content matching is only against folders that are gone: a copy in a second folder that
    still exists is that folder's message too."""
    raw = sample("in two folders")
    env.dovecot.deliver(env.mailbox.email, raw, folder="Eins")
    task_id = await env.add_task()
    assert (await env.run(task_id)).imported == 1
    env.dovecot.deliver(env.mailbox.email, raw, folder="Zwei")
    assert (await env.run(task_id)).imported == 1
    async with env.db.read() as session:
        paths = (await session.exec(select(Folder.path).order_by(col(Folder.path)))).all()
    assert {"Remote/Eins", "Remote/Zwei"} <= set(paths)


def test_only_a_distinctive_uidvalidity_identifies_a_renamed_folder() -> None:
    cursors = {"INBOX": Cursor(1, 10), "Alt": Cursor(7, 5), "Weg": Cursor(1, 3), "Auch weg": Cursor(1, 4)}
    orphans = Orphans.of(cursors, {"INBOX", "Neu"})
    assert set(orphans.cursors) == {"Alt", "Weg", "Auch weg"}
    assert orphans.claim(1, 20) is None  # shared by several folders: a server that numbers them all alike
    assert orphans.claim(7, 5) is None  # a UIDNEXT not above the last UID retrieved: not that folder
    assert orphans.claim(7, None) == ("Alt", Cursor(7, 5))
    assert orphans.claim(7, 6) is None  # claimed once only
