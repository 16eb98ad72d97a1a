"""The remote Sent folder (issue 18): a message sent through an SMTP account that names the retrieval
task of the same mailbox is appended, \\Seen, to that mailbox's Sent folder on Dovecot; a failed
APPEND is retried from the outbox without sending the message again; the next retrieval run does
not import the copy a second time; providers that file sent mail themselves are skipped, saying why;
another user's task is refused."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from service.config import Settings
from service.domain.compose import Draft
from service.domain.outbox import OutboxStatus, SendResult, SentCopyStatus
from service.domain.smtp_accounts import files_sent_itself
from service.domain.values import FolderTransfer, Protocol, Security
from service.errors import InvalidInput
from service.persistence.database import Database
from service.persistence.mailstore import read_raw
from service.persistence.secrets import SecretBox
from service.persistence.tables import Message, OutboxEntry, RetrievalTask
from service.persistence.types import utcnow
from service.protocols.imap import RemoteFolder
from service.protocols.imap.append import appenduid, find_sent_folder, new_sent_folder
from service.usecases import retrieval_tasks, sending, smtp_accounts
from service.usecases.sending import sent_copy
from service.usecases.users import add_user
from tests.fixtures import free_ports
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.smtp import SmtpServer, StartSmtpServer
from tests.retrieval_env import Env, make_env
from tests.test_smtp_fakes import account_input

NOW = utcnow().replace(microsecond=0)


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


async def account_with_copy(env: Env, server: SmtpServer, task_id: int | None, **overrides: object) -> int:
    values = {"email_address": env.mailbox.email, "sent_copy_task_id": task_id} | overrides
    created = await smtp_accounts.add_smtp_account(
        db=env.db,
        secret_box=env.secret_box,
        user_id=env.user_id,
        account=account_input(server.host, server.port, **values),
    )
    return created.id


async def send(env: Env, account_id: int, subject: str = "Hello from Tributary", *, wait: bool = True) -> SendResult:
    """Send, then (`wait`) let the Sent copy the send started in the background finish."""
    result = await sending.send_message(
        db=env.db,
        secret_box=env.secret_box,
        settings=env.settings,
        user_id=env.user_id,
        from_account_id=account_id,
        draft=Draft(to=("bob@example.test",), bcc=("carol@example.test",), subject=subject, text="Hi Bob"),
        now=NOW,
    )
    if wait:
        await sending.wait_for_background_copies()
    return result


async def entry_of(env: Env, outbox_id: int) -> OutboxEntry:
    async with env.db.read() as session:
        entry = await session.get(OutboxEntry, outbox_id)
    assert entry is not None
    return entry


def remote_sent(env: Env, folder: str = "Sent") -> list[tuple[int, str]]:
    """(UID, flags) of each message in the remote folder, as Dovecot sees it."""
    out = env.dovecot.doveadm("-f", "tab", "fetch", "-u", env.mailbox.email, "uid flags", "mailbox", folder, "all")
    rows = out.splitlines()[1:]
    return [(int(uid), flags) for uid, flags in (row.split("\t", 1) for row in rows)]


async def local_copies(env: Env, subject: str) -> list[int]:
    """The local folder of every stored message with this subject."""
    async with env.db.read() as session:
        return list((await session.exec(select(Message.folder_id).where(Message.subject == subject))).all())


async def test_a_sent_message_is_appended_seen_to_the_remote_sent_folder_and_not_imported_again(
    env: Env, smtp_server: StartSmtpServer
) -> None:
    env.dovecot.create_folder(env.mailbox.email, "Sent")
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    task_id = await env.add_task(folder_transfer=FolderTransfer.ROOT)
    assert (await env.run(task_id)).errors == []
    account_id = await account_with_copy(env, server, task_id)

    result = await send(env, account_id)

    assert result.status is OutboxStatus.SENT
    assert len(server.received) == 1
    [(uid, flags)] = remote_sent(env)
    assert "\\Seen" in flags
    entry = await entry_of(env, result.outbox_id)
    assert entry.sent_copy_status is SentCopyStatus.DONE
    assert (entry.sent_copy_folder, entry.sent_copy_uid) == ("Sent", uid)
    appended = env.dovecot.doveadm("fetch", "-u", env.mailbox.email, "text", "mailbox", "Sent", "uid", str(uid))
    assert "Bcc: carol@example.test" in appended  # the copy holds what local Sent holds

    run = await env.run(task_id)

    assert run.errors == []
    assert run.imported == 0
    assert len(await local_copies(env, "Hello from Tributary")) == 1
    # A message the phone put in Sent meanwhile is still imported.
    env.dovecot.deliver(env.mailbox.email, b"Subject: From the phone\r\nMessage-ID: <p@x>\r\n\r\nhi\r\n", folder="Sent")
    assert (await env.run(task_id)).imported == 1
    assert len(await local_copies(env, "Hello from Tributary")) == 1


async def test_the_send_answers_before_the_append_which_follows_in_the_background(
    env: Env, smtp_server: StartSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow IMAP server must not delay the compose page's answer: the APPEND starts only after
    send_message has returned, and the outbox round does not append the copy a second time."""
    env.dovecot.create_folder(env.mailbox.email, "Sent")
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    task_id = await env.add_task(folder_transfer=FolderTransfer.ROOT)
    account_id = await account_with_copy(env, server, task_id)
    real_append = sent_copy._append
    answered: list[bool] = []
    states: list[SentCopyStatus | None] = []

    async def slow_append(*args: Any) -> Any:
        answered.append(bool(states))
        # Meanwhile the scheduler's round finds the copy claimed by this attempt: nothing to do.
        await sending.process_due_outbox(db=env.db, secret_box=env.secret_box, settings=env.settings, now=NOW)
        return await real_append(*args)

    monkeypatch.setattr(sent_copy, "_append", slow_append)

    result = await send(env, account_id, wait=False)
    states.append((await entry_of(env, result.outbox_id)).sent_copy_status)

    assert result.status is OutboxStatus.SENT
    assert states == [SentCopyStatus.PENDING]
    assert remote_sent(env) == []
    await sending.wait_for_background_copies()
    assert answered == [True]
    entry = await entry_of(env, result.outbox_id)
    assert (entry.sent_copy_status, entry.sent_copy_attempts) == (SentCopyStatus.DONE, 1)
    assert len(remote_sent(env)) == 1
    assert len(server.received) == 1


async def test_a_copy_cut_short_by_a_restart_is_appended_once_when_it_is_stale(
    env: Env, smtp_server: StartSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process stops after the APPEND reached the server but before its UID was recorded: the
    copy stays "appending" until stale, then the retry finds it by Message-ID instead of appending."""
    env.dovecot.create_folder(env.mailbox.email, "Sent")
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    task_id = await env.add_task(folder_transfer=FolderTransfer.ROOT)
    account_id = await account_with_copy(env, server, task_id)
    real_append = sent_copy._append

    async def append_then_die(*args: Any) -> Any:
        await real_append(*args)
        raise asyncio.CancelledError  # the loop is shutting down

    monkeypatch.setattr(sent_copy, "_append", append_then_die)
    result = await send(env, account_id)
    monkeypatch.setattr(sent_copy, "_append", real_append)
    assert (await entry_of(env, result.outbox_id)).sent_copy_status is SentCopyStatus.APPENDING
    assert len(remote_sent(env)) == 1

    soon = NOW + timedelta(minutes=5)
    await sending.process_due_outbox(db=env.db, secret_box=env.secret_box, settings=env.settings, now=soon)
    assert (await entry_of(env, result.outbox_id)).sent_copy_status is SentCopyStatus.APPENDING
    stale = NOW + sent_copy.STALE_APPENDING + timedelta(minutes=1)
    await sending.process_due_outbox(db=env.db, secret_box=env.secret_box, settings=env.settings, now=stale)

    [(uid, _flags)] = remote_sent(env)
    entry = await entry_of(env, result.outbox_id)
    assert (entry.sent_copy_status, entry.sent_copy_uid, entry.sent_copy_attempts) == (SentCopyStatus.DONE, uid, 2)
    assert (await env.run(task_id)).imported == 0
    assert len(await local_copies(env, "Hello from Tributary")) == 1
    assert len(server.received) == 1


async def test_without_a_sent_folder_one_is_created_and_subfolder_transfer_skips_the_copy_too(
    env: Env, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    task_id = await env.add_task()
    account_id = await account_with_copy(env, server, task_id)

    result = await send(env, account_id, subject="First")

    assert (await entry_of(env, result.outbox_id)).sent_copy_status is SentCopyStatus.DONE
    assert "Sent" in env.dovecot.folders(env.mailbox.email)
    assert len(remote_sent(env)) == 1
    run = await env.run(task_id)
    assert run.errors == []
    assert run.imported == 0
    assert "Remote/Sent" not in await env.local_counts()


async def test_a_failed_append_is_retried_from_the_outbox_and_never_sends_again(
    env: Env, smtp_server: StartSmtpServer
) -> None:
    env.dovecot.create_folder(env.mailbox.email, "Sent")
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    [closed_port] = free_ports(1)
    task_id = await env.add_task(port=closed_port)  # the IMAP server is down
    account_id = await account_with_copy(env, server, task_id)

    result = await send(env, account_id)

    assert result.status is OutboxStatus.SENT
    entry = await entry_of(env, result.outbox_id)
    assert entry.sent_copy_status is SentCopyStatus.PENDING
    assert entry.sent_copy_error
    assert str(closed_port) in entry.sent_copy_error
    assert remote_sent(env) == []
    # Not due yet: nothing happens.
    await sending.process_due_outbox(db=env.db, secret_box=env.secret_box, settings=env.settings, now=NOW)
    assert (await entry_of(env, result.outbox_id)).sent_copy_attempts == 1

    async with env.db.write() as session:  # the server is back
        await session.exec(
            update(RetrievalTask).where(col(RetrievalTask.id) == task_id).values(port=env.dovecot.imaps_port)
        )
    later = NOW + timedelta(minutes=5)
    await sending.process_due_outbox(db=env.db, secret_box=env.secret_box, settings=env.settings, now=later)
    await sending.process_due_outbox(db=env.db, secret_box=env.secret_box, settings=env.settings, now=later)

    entry = await entry_of(env, result.outbox_id)
    assert entry.sent_copy_status is SentCopyStatus.DONE
    assert entry.sent_copy_attempts == 2
    assert len(server.received) == 1  # the SMTP server got the message exactly once
    assert len(remote_sent(env)) == 1
    assert (await env.run(task_id)).imported == 0
    assert len(await local_copies(env, "Hello from Tributary")) == 1


async def test_a_retry_finds_a_copy_stored_by_an_attempt_whose_answer_was_lost(
    env: Env, smtp_server: StartSmtpServer
) -> None:
    env.dovecot.create_folder(env.mailbox.email, "Sent")
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    [closed_port] = free_ports(1)
    task_id = await env.add_task(port=closed_port)
    account_id = await account_with_copy(env, server, task_id)
    result = await send(env, account_id)
    async with env.db.read() as session:
        local = await session.get(Message, (await entry_of(env, result.outbox_id)).message_id)
        assert local is not None
        raw = await read_raw(session, user_id=env.user_id, message_id=local.id or 0)
    env.dovecot.deliver(env.mailbox.email, raw, folder="Sent")  # the lost attempt's copy
    async with env.db.write() as session:
        await session.exec(
            update(RetrievalTask).where(col(RetrievalTask.id) == task_id).values(port=env.dovecot.imaps_port)
        )

    await sending.process_due_outbox(
        db=env.db, secret_box=env.secret_box, settings=env.settings, now=NOW + timedelta(minutes=5)
    )

    [(uid, _flags)] = remote_sent(env)
    entry = await entry_of(env, result.outbox_id)
    assert (entry.sent_copy_status, entry.sent_copy_uid) == (SentCopyStatus.DONE, uid)
    assert (await env.run(task_id)).imported == 0


async def test_a_provider_that_files_sent_mail_itself_is_skipped_with_a_sentence(
    env: Env, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    gmail_task = await env.add_task(host="imap.gmail.com")
    account_id = await account_with_copy(env, server, gmail_task)

    result = await send(env, account_id)

    assert result.status is OutboxStatus.SENT
    assert len(server.received) == 1
    entry = await entry_of(env, result.outbox_id)
    assert entry.sent_copy_status is SentCopyStatus.SKIPPED
    assert entry.sent_copy_error is not None
    assert "Gmail" in entry.sent_copy_error
    assert "Sent" not in env.dovecot.folders(env.mailbox.email)
    note = files_sent_itself("smtp.gmail.com")
    assert note is not None
    assert "does not add a copy" in note
    assert files_sent_itself("smtp.office365.com") is not None
    assert files_sent_itself("SMTP-MAIL.OUTLOOK.COM.") is not None
    assert files_sent_itself("notgmail.com") is None
    assert files_sent_itself("gmail.com.evil.test") is None
    view = await smtp_accounts.add_smtp_account(
        db=env.db,
        secret_box=env.secret_box,
        user_id=env.user_id,
        account=account_input("smtp.gmail.com", 587, email_address="other@example.test", sent_copy_task_id=gmail_task),
    )
    assert view.sent_copy_note is not None
    assert "Gmail" in view.sent_copy_note


async def test_another_users_task_and_a_pop3_task_are_refused(env: Env, smtp_server: StartSmtpServer) -> None:
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    other = await add_user(db=env.db, email="mallory@example.test", password="long enough")
    new = retrieval_tasks.NewTask(
        protocol=Protocol.IMAP,
        host="127.0.0.1",
        port=env.dovecot.imaps_port,
        security=Security.SSL,
        username="x",
        password="y",
    )
    theirs = (await retrieval_tasks.add_task(db=env.db, secret_box=env.secret_box, user_id=other.id, new=new)).id
    with pytest.raises(InvalidInput, match="one of your IMAP retrieval tasks"):
        await account_with_copy(env, server, theirs)
    pop = (
        await retrieval_tasks.add_task(
            db=env.db,
            secret_box=env.secret_box,
            user_id=env.user_id,
            new=replace(new, protocol=Protocol.POP3),
        )
    ).id
    with pytest.raises(InvalidInput, match="one of your IMAP retrieval tasks"):
        await account_with_copy(env, server, pop)
    mine = await env.add_task()
    account_id = await account_with_copy(env, server, mine)
    with pytest.raises(InvalidInput, match="one of your IMAP retrieval tasks"):
        await smtp_accounts.update_smtp_account(
            db=env.db,
            secret_box=env.secret_box,
            user_id=env.user_id,
            account_id=account_id,
            account=account_input(server.host, server.port, email_address=env.mailbox.email, sent_copy_task_id=theirs),
        )
    with pytest.raises(InvalidInput, match="Save a copy in Sent"):
        await account_with_copy(env, server, mine, email_address="b@example.test", save_copy_in_sent=False)


async def test_a_run_that_imported_the_copy_before_its_uid_was_recorded_leaves_one_local_copy(
    env: Env, smtp_server: StartSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Push may fetch the appended message the moment it lands, before the outbox records its UID:
    recording the UID then removes that second local copy."""
    env.dovecot.create_folder(env.mailbox.email, "Sent")
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    task_id = await env.add_task(folder_transfer=FolderTransfer.ROOT)
    assert (await env.run(task_id)).errors == []
    account_id = await account_with_copy(env, server, task_id)
    real_append = sent_copy._append
    imported: list[int] = []

    async def append_then_retrieve(*args: Any) -> Any:
        copy = await real_append(*args)
        imported.append((await env.run(task_id)).imported)
        return copy

    monkeypatch.setattr(sent_copy, "_append", append_then_retrieve)

    result = await send(env, account_id)

    assert imported == [1]  # the run did import it
    assert (await entry_of(env, result.outbox_id)).sent_copy_status is SentCopyStatus.DONE
    assert len(await local_copies(env, "Hello from Tributary")) == 1
    assert (await env.run(task_id)).imported == 0
    assert len(await local_copies(env, "Hello from Tributary")) == 1


async def test_a_sent_folder_with_a_non_ascii_name_is_found_and_its_copy_not_imported_again(
    env: Env, smtp_server: StartSmtpServer
) -> None:
    env.dovecot.create_folder(env.mailbox.email, "Éléments envoyés")
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    task_id = await env.add_task()
    account_id = await account_with_copy(env, server, task_id)

    result = await send(env, account_id, subject="Ça marche")

    entry = await entry_of(env, result.outbox_id)
    assert (entry.sent_copy_status, entry.sent_copy_folder) == (SentCopyStatus.DONE, "Éléments envoyés")
    assert "Sent" not in env.dovecot.folders(env.mailbox.email)
    assert len(remote_sent(env, "Éléments envoyés")) == 1
    assert (await env.run(task_id)).imported == 0
    assert len(await local_copies(env, "Ça marche")) == 1


def test_the_sent_folder_is_the_special_use_one_then_a_common_name() -> None:
    def folder(path: str, special: bytes | None = None) -> RemoteFolder:
        return RemoteFolder(name=path, path=path, special_use=special)

    marked = folder("Postausgang", b"\\Sent")
    assert find_sent_folder([folder("INBOX"), folder("Sent"), marked]) == marked
    assert find_sent_folder([folder("INBOX"), folder("sent items")]) == folder("sent items")
    assert find_sent_folder([folder("INBOX"), folder("Drafts")]) is None
    # Cyrus and Courier list every folder under the personal namespace "INBOX.".
    under_inbox = [replace(folder(path), personal_prefix="INBOX/") for path in ("INBOX", "INBOX/Sent Messages")]
    assert find_sent_folder(under_inbox) == under_inbox[1]
    assert find_sent_folder([replace(folder("INBOX/Notes"), personal_prefix="INBOX/")]) is None
    courier = [RemoteFolder(name="INBOX", path="INBOX", special_use=None, personal_prefix="INBOX/")]
    courier.append(RemoteFolder(name="INBOX.Notes", path="INBOX/Notes", special_use=None, personal_prefix="INBOX/"))
    created = new_sent_folder(courier)
    assert (created.name, created.path) == ("INBOX.Sent", "INBOX/Sent")
    assert (new_sent_folder([folder("INBOX")]).name, new_sent_folder([]).path) == ("Sent", "Sent")
    assert appenduid(b"[APPENDUID 1712 42] Append completed.") == (1712, 42)
    assert appenduid(b"Append completed.") == (None, None)
    assert appenduid(None) == (None, None)


async def test_deleting_the_task_skips_pending_copies_and_clears_the_accounts_choice(
    env: Env, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    [closed_port] = free_ports(1)
    task_id = await env.add_task(port=closed_port)
    account_id = await account_with_copy(env, server, task_id)
    result = await send(env, account_id)
    assert (await entry_of(env, result.outbox_id)).sent_copy_status is SentCopyStatus.PENDING

    await retrieval_tasks.delete_task(db=env.db, task_id=task_id, user_id=env.user_id)
    await sending.process_due_outbox(
        db=env.db, secret_box=env.secret_box, settings=env.settings, now=NOW + timedelta(minutes=5)
    )

    entry = await entry_of(env, result.outbox_id)
    assert entry.sent_copy_status is SentCopyStatus.SKIPPED
    assert entry.sent_copy_error == sent_copy.TASK_GONE
    assert len(server.received) == 1
    account = await smtp_accounts.get_smtp_account(db=env.db, user_id=env.user_id, account_id=account_id)
    assert account.sent_copy_task is None


async def test_a_task_deleted_while_its_copy_was_appended_leaves_the_copy_done_and_the_sent_message(
    env: Env, smtp_server: StartSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retrieval task is deleted during the APPEND: recording the copy must not give the local
    Sent message the gone task as its origin (a foreign key error that would leave the copy
    "appending" for an hour and then skip it, although it is stored)."""
    env.dovecot.create_folder(env.mailbox.email, "Sent")
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    task_id = await env.add_task(folder_transfer=FolderTransfer.ROOT)
    account_id = await account_with_copy(env, server, task_id)
    real_append = sent_copy._append

    async def append_while_deleted(*args: Any) -> Any:
        copy = await real_append(*args)
        await retrieval_tasks.delete_task(db=env.db, task_id=task_id, user_id=env.user_id)
        return copy

    monkeypatch.setattr(sent_copy, "_append", append_while_deleted)
    result = await send(env, account_id)

    entry = await entry_of(env, result.outbox_id)
    assert entry.sent_copy_status is SentCopyStatus.DONE
    assert len(remote_sent(env)) == 1
    async with env.db.read() as session:
        [local] = (await session.exec(select(Message).where(Message.subject == "Hello from Tributary"))).all()
    assert local.task_id is None
    assert local.id == entry.message_id
