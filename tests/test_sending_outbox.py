"""Sending as a user sees it: the message waits in Outbox, goes out, lands in Sent exactly as the
server received it (plus Bcc), and every failure ends in the right state with the server's words."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from service.config import Settings
from service.domain.compose import Attachment, Draft
from service.domain.outbox import OutboxStatus, SendResult
from service.domain.values import LogLevel, LogSource, Security, SpecialUse
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Folder, LogEntry, Message, OutboxEntry, SmtpAccount
from service.persistence.types import utcnow
from service.scheduler import Scheduler
from service.usecases import sending
from tests.fixtures.smtp import SmtpMode, StartSmtpServer
from tests.stored_bodies import stored_raws
from tests.test_smtp_fakes import RawSmtpServer, make_account, make_user, scripted_aiosmtpd, trusting

SECURITY: dict[SmtpMode, Security] = {"plain": Security.NONE, "starttls": Security.STARTTLS, "ssl": Security.SSL}
NOW = utcnow().replace(microsecond=0)


async def folder_raws(db: Database, user_id: int, use: SpecialUse) -> list[bytes]:
    async with db.read() as session:
        folder = select(Folder.id).where(Folder.user_id == user_id, Folder.special_use == use)
        return await stored_raws(session, col(Message.user_id) == user_id, col(Message.folder_id).in_(folder))


async def logs(db: Database, source: LogSource | None = None) -> list[LogEntry]:
    async with db.read() as session:
        entries = (await session.exec(select(LogEntry).order_by(col(LogEntry.id)))).all()
    return [e for e in entries if source is None or e.source == source]


async def send(
    db: Database,
    secret_box: SecretBox,
    settings: Settings,
    user_id: int,
    account_id: int | None,
    draft: Draft | None = None,
    now: datetime = NOW,
) -> SendResult:
    return await sending.send_message(
        db=db,
        secret_box=secret_box,
        settings=settings,
        user_id=user_id,
        from_account_id=account_id,
        draft=draft or Draft(to=("bob@example.test",), subject="Hello", text="Hi Bob"),
        now=now,
    )


async def process(db: Database, secret_box: SecretBox, settings: Settings, later: timedelta) -> list[SendResult]:
    return await sending.process_due_outbox(db=db, secret_box=secret_box, settings=settings, now=NOW + later)


@pytest.mark.parametrize("mode", ["plain", "starttls", "ssl"])
async def test_sent_copy_equals_the_delivered_data_plus_bcc(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer, mode: SmtpMode
) -> None:
    server = smtp_server(mode=mode, users={"alice": "pw-alice"})
    user_id = await make_user(db)
    account_id = await make_account(
        db,
        secret_box,
        user_id,
        server.host,
        server.port,
        password="pw-alice",
        security=SECURITY[mode],
        auth_required=True,
        username="alice",
        display_name="Alice Ärmel",
    )
    draft = Draft(
        to=("Bob <bob@example.test>",),
        bcc=("Sam <sam@example.test>",),
        subject="Grüße",
        text=".hidden dot\nbye\n",
        attachments=(Attachment("naïve.txt", b"data", "text/plain"),),
    )
    result = await send(db, secret_box, trusting(settings, server), user_id, account_id, draft)

    assert (result.status, result.refused) == (OutboxStatus.SENT, {})
    (received,) = server.received
    assert received.rcpt_tos == ["bob@example.test", "sam@example.test"]
    assert received.auth_user == "alice"
    assert b"sam@example.test" not in received.data
    assert await folder_raws(db, user_id, SpecialUse.OUTBOX) == []
    assert await folder_raws(db, user_id, SpecialUse.SENT) == [b"Bcc: Sam <sam@example.test>\r\n" + received.data]
    assert b"From: Alice =?utf-8?q?=C3=84rmel?= <alice@example.test>\r\n" in received.data
    [info] = await logs(db, LogSource.OUTGOING)
    assert info.level == LogLevel.INFO
    assert "“Grüße”" in info.text
    assert "pw-alice" not in info.text
    assert await sending.list_outbox(db=db, user_id=user_id) == []


async def test_without_save_copy_the_message_is_deleted_after_sending(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await make_user(db)
    account_id = await make_account(db, secret_box, user_id, server.host, server.port, save_copy_in_sent=False)
    assert (await send(db, secret_box, settings, user_id, account_id)).status is OutboxStatus.SENT
    assert len(server.received) == 1
    assert await folder_raws(db, user_id, SpecialUse.SENT) == []
    assert await folder_raws(db, user_id, SpecialUse.OUTBOX) == []


async def test_451_stays_queued_then_succeeds_on_retry(db: Database, secret_box: SecretBox, settings: Settings) -> None:
    with scripted_aiosmtpd(data=["451 4.3.0 Try again later"]) as server:
        user_id = await make_user(db)
        account_id = await make_account(db, secret_box, user_id, server.host, server.port)
        first = await send(db, secret_box, settings, user_id, account_id)
        assert first.status is OutboxStatus.QUEUED
        assert "451 4.3.0 Try again later" in first.detail
        assert first.next_attempt_at == NOW + timedelta(minutes=1)
        assert len(await folder_raws(db, user_id, SpecialUse.OUTBOX)) == 1
        [waiting] = await sending.list_outbox(db=db, user_id=user_id)
        assert (waiting.status, waiting.attempts, waiting.last_reply) == (
            OutboxStatus.QUEUED,
            1,
            "451 4.3.0 Try again later",
        )

        assert await process(db, secret_box, settings, timedelta(seconds=30)) == []
        [retried] = await process(db, secret_box, settings, timedelta(minutes=1))
        assert retried.status is OutboxStatus.SENT
        assert len(server.handler.received) == 1
        assert len(server.handler.attempts) == 2
    [copy] = await folder_raws(db, user_id, SpecialUse.SENT)
    assert copy == server.handler.received[0][1]
    assert [e.level for e in await logs(db, LogSource.OUTGOING)] == [LogLevel.WARNING, LogLevel.INFO]


async def test_550_fails_with_the_server_reply_kept(db: Database, secret_box: SecretBox, settings: Settings) -> None:
    with scripted_aiosmtpd(data=["550 5.7.1 Message looks like spam"]) as server:
        user_id = await make_user(db)
        account_id = await make_account(db, secret_box, user_id, server.host, server.port)
        result = await send(db, secret_box, settings, user_id, account_id)
        assert result.status is OutboxStatus.FAILED
        assert "550 5.7.1 Message looks like spam" in result.detail
        assert await process(db, secret_box, settings, timedelta(hours=2)) == []
        assert len(server.handler.attempts) == 1
    [failed] = await sending.list_outbox(db=db, user_id=user_id)
    assert failed.last_reply == "550 5.7.1 Message looks like spam"
    assert failed.message_id is not None
    assert len(await folder_raws(db, user_id, SpecialUse.OUTBOX)) == 1
    assert (await logs(db, LogSource.OUTGOING))[-1].level == LogLevel.ERROR


async def test_partial_refusal_then_a_retry_only_to_those_not_yet_accepted(
    db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    script = {"busy@example.test": ["450 4.2.1 Mailbox busy"], "gone@example.test": ["550 5.1.1 No such user"]}
    with scripted_aiosmtpd(rcpt=script) as server:
        user_id = await make_user(db)
        account_id = await make_account(db, secret_box, user_id, server.host, server.port)
        draft = Draft(to=("bob@example.test", "busy@example.test"), cc=("gone@example.test",), subject="Party")
        first = await send(db, secret_box, settings, user_id, account_id, draft)
        assert first.status is OutboxStatus.QUEUED
        assert first.refused == {
            "busy@example.test": "450 4.2.1 Mailbox busy",
            "gone@example.test": "550 5.1.1 No such user",
        }
        [waiting] = await sending.list_outbox(db=db, user_id=user_id)
        assert (waiting.accepted, waiting.pending) == (("bob@example.test",), ("busy@example.test",))

        [second] = await process(db, secret_box, settings, timedelta(minutes=1))
        assert second.status is OutboxStatus.SENT
        assert second.refused == {"gone@example.test": "550 5.1.1 No such user"}
        assert "gone@example.test" in second.detail
        assert [rcpts for rcpts, _data in server.handler.received] == [["bob@example.test"], ["busy@example.test"]]
        assert server.handler.received[0][1] == server.handler.received[1][1]
    assert await folder_raws(db, user_id, SpecialUse.SENT) == [server.handler.received[0][1]]


async def test_every_recipient_refused_fails(db: Database, secret_box: SecretBox, settings: Settings) -> None:
    with scripted_aiosmtpd(rcpt={"bob@example.test": ["550 5.1.1 No such user"]}) as server:
        user_id = await make_user(db)
        account_id = await make_account(db, secret_box, user_id, server.host, server.port)
        result = await send(db, secret_box, settings, user_id, account_id)
        assert server.handler.attempts == []
    assert (result.status, result.refused) == (OutboxStatus.FAILED, {"bob@example.test": "550 5.1.1 No such user"})


async def test_connection_dropped_after_data_is_unknown_and_never_resent(
    db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    with RawSmtpServer(drop_after_data=True) as server:
        user_id = await make_user(db)
        account_id = await make_account(db, secret_box, user_id, server.host, server.port)
        result = await send(db, secret_box, settings, user_id, account_id)
        assert result.status is OutboxStatus.UNKNOWN
        assert "may have been delivered" in result.detail
        assert await process(db, secret_box, settings, timedelta(hours=3)) == []
        assert len(server.messages) == 1
    [unknown] = await sending.list_outbox(db=db, user_id=user_id)
    assert unknown.status is OutboxStatus.UNKNOWN
    assert len(await folder_raws(db, user_id, SpecialUse.OUTBOX)) == 1


async def test_wrong_password_fails_logs_smtp_auth_and_flags_the_account(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="ssl", users={"alice": "right"})
    user_id = await make_user(db)
    account_id = await make_account(
        db, secret_box, user_id, server.host, server.port, "wrong", security=Security.SSL, auth_required=True
    )
    result = await send(db, secret_box, trusting(settings, server), user_id, account_id)
    assert result.status is OutboxStatus.FAILED
    assert "refused the username or password" in result.detail
    assert server.received == []
    [auth] = await logs(db, LogSource.SMTP_AUTH)
    assert auth.level == LogLevel.ERROR
    assert auth.smtp_account_id == account_id
    async with db.read() as session:
        account = await session.get(SmtpAccount, account_id)
    assert account is not None
    assert account.needs_action
    assert account.last_error == result.detail


async def test_the_per_minute_limit_queues_instead_of_failing(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await make_user(db)
    account_id = await make_account(db, secret_box, user_id, server.host, server.port, messages_per_minute=1)
    first = await send(db, secret_box, settings, user_id, account_id)
    second = await send(db, secret_box, settings, user_id, account_id, now=NOW + timedelta(seconds=5))
    assert (first.status, second.status) == (OutboxStatus.SENT, OutboxStatus.QUEUED)
    assert second.next_attempt_at == NOW + timedelta(minutes=1)
    assert "limit of 1 messages a minute" in second.detail
    assert await process(db, secret_box, settings, timedelta(seconds=30)) == []
    assert len(server.received) == 1
    [later] = await process(db, secret_box, settings, timedelta(minutes=1))
    assert later.status is OutboxStatus.SENT
    assert len(server.received) == 2


async def test_an_unreachable_server_is_retried_for_a_day_then_fails(
    db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    with RawSmtpServer() as server:
        port = server.port  # closed again: nothing listens there now
    user_id = await make_user(db)
    account_id = await make_account(db, secret_box, user_id, "127.0.0.1", port)
    first = await send(db, secret_box, settings, user_id, account_id)
    assert first.status is OutboxStatus.QUEUED
    assert first.detail.startswith(f"Nothing answers on port {port} of 127.0.0.1.")
    [again] = await process(db, secret_box, settings, timedelta(hours=23, minutes=59))
    assert again.status is OutboxStatus.QUEUED
    assert again.next_attempt_at == NOW + timedelta(hours=24)
    [last] = await process(db, secret_box, settings, timedelta(hours=24))
    assert last.status is OutboxStatus.FAILED
    assert last.detail.startswith(f"Tributary gave up after 24 hours. Nothing answers on port {port} of 127.0.0.1.")


async def test_debug_transcript_is_logged_with_credentials_redacted(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="starttls", users={"alice@example.test": "Tr0ub4dor&3"})
    user_id = await make_user(db)
    account_id = await make_account(
        db,
        secret_box,
        user_id,
        server.host,
        server.port,
        "Tr0ub4dor&3",
        security=Security.STARTTLS,
        auth_required=True,
        enable_debug=True,
    )
    assert (await send(db, secret_box, trusting(settings, server), user_id, account_id)).status is OutboxStatus.SENT
    [debug] = [e for e in await logs(db, LogSource.OUTGOING) if e.level == LogLevel.DEBUG]
    assert "> STARTTLS" in debug.text
    assert "> AUTH PLAIN [redacted]" in debug.text
    assert "> RCPT TO:<bob@example.test>" in debug.text
    assert "Tr0ub4dor&3" not in debug.text
    assert all("Tr0ub4dor&3" not in e.text for e in await logs(db))


async def test_a_process_that_died_mid_send_leaves_unknown_not_a_resend(
    db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    user_id = await make_user(db)
    with RawSmtpServer() as server:
        account_id = await make_account(db, secret_box, user_id, server.host, server.port)
        sent = await send(db, secret_box, settings, user_id, account_id)
    async with db.write() as session:
        entry = await session.get(OutboxEntry, sent.outbox_id)
        assert entry is not None
        entry.status = OutboxStatus.SENDING  # as a crashed worker would leave it
        session.add(entry)
    assert await process(db, secret_box, settings, timedelta(minutes=90)) == []
    [still_sending] = await sending.list_outbox(db=db, user_id=user_id, include_sent=True)
    assert still_sending.status is OutboxStatus.SENDING  # a long attempt may still be running
    assert await process(db, secret_box, settings, timedelta(hours=3)) == []
    [unknown] = await sending.list_outbox(db=db, user_id=user_id, include_sent=True)
    assert unknown.status is OutboxStatus.UNKNOWN
    assert "stopped while this message was being sent" in (unknown.last_error or "")


async def test_retry_after_failure_goes_only_to_the_recipients_not_accepted(
    db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    user_id = await make_user(db)
    with scripted_aiosmtpd(rcpt={"gone@example.test": ["550 5.1.1 No such user"]}) as server:
        account_id = await make_account(db, secret_box, user_id, server.host, server.port)
        draft = Draft(to=("gone@example.test",))
        failed = await send(db, secret_box, settings, user_id, account_id, draft)
        assert failed.status is OutboxStatus.FAILED
        again = await sending.retry_outbox_message(
            db=db, secret_box=secret_box, settings=settings, user_id=user_id, outbox_id=failed.outbox_id, now=NOW
        )
        assert again.status is OutboxStatus.SENT
        assert [rcpts for rcpts, _ in server.handler.received] == [["gone@example.test"]]
    async with db.read() as session:
        entry = await session.get(OutboxEntry, failed.outbox_id)
    assert entry is not None
    assert json.loads(entry.accepted_recipients) == ["gone@example.test"]


async def test_the_scheduler_retries_the_outbox(db: Database, secret_box: SecretBox, settings: Settings) -> None:
    with scripted_aiosmtpd(data=["451 4.3.0 Try again later"]) as server:
        user_id = await make_user(db)
        account_id = await make_account(db, secret_box, user_id, server.host, server.port)
        first = await send(db, secret_box, settings, user_id, account_id, now=utcnow())
        assert first.status is OutboxStatus.QUEUED
        async with db.write() as session:  # the retry is due now
            await session.exec(update(OutboxEntry).values(next_attempt_at=utcnow()))
        scheduler = Scheduler(settings=settings, db=db, secret_box=secret_box)
        await scheduler.outbox()
        [sent] = await sending.list_outbox(db=db, user_id=user_id, include_sent=True)
        assert sent.status is OutboxStatus.SENT
        assert len(server.handler.received) == 1
