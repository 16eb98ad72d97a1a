"""SMTP Accounts and Send From: the settings card, the domain switch, Test Connection, the relay
and which address a reply defaults to."""

from __future__ import annotations

import dataclasses

import pytest
from sqlmodel import select

from service.config import Settings
from service.domain.compose import Draft
from service.domain.outbox import OutboxStatus
from service.domain.smtp_accounts import SmtpAccountView
from service.domain.values import Protocol, Security, SpecialUse
from service.errors import Conflict, FeatureDisabled, InvalidInput, NotFound
from service.persistence import mailstore
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, Message, RetrievalTask, SmtpAccount
from service.usecases import domains, sending, smtp_accounts
from tests.fixtures.smtp import StartSmtpServer
from tests.test_smtp_fakes import RawSmtpServer, account_input, make_account, make_user, trusting

DISABLED = "Your administrator turned off SMTP accounts for example.test."


async def test_add_list_update_delete_with_a_write_only_password(db: Database, secret_box: SecretBox) -> None:
    user_id = await make_user(db)
    created = await smtp_accounts.add_smtp_account(
        db=db,
        secret_box=secret_box,
        user_id=user_id,
        account=account_input("smtp.example.test", None, security=Security.SSL, auth_required=True),
        password="hunter2-secret",
    )
    assert (created.port, created.username, created.has_password, created.is_default) == (
        465,
        "alice@example.test",
        True,
        False,
    )
    assert "hunter2-secret" not in repr(created)
    async with db.read() as session:
        stored = (await session.exec(select(SmtpAccount.password_encrypted))).one()
    assert stored is not None
    assert "hunter2-secret" not in stored
    assert secret_box.decrypt(stored) == "hunter2-secret"

    changed = await smtp_accounts.update_smtp_account(
        db=db,
        secret_box=secret_box,
        user_id=user_id,
        account_id=created.id,
        account=account_input(
            "smtp.example.test", None, security=Security.SSL, auth_required=True, display_name="Alice", is_default=True
        ),
        password="",
    )
    assert (changed.display_name, changed.is_default, changed.has_password) == ("Alice", True, True)
    async with db.read() as session:
        assert (await session.exec(select(SmtpAccount.password_encrypted))).one() == stored
    assert [a.label for a in await smtp_accounts.list_smtp_accounts(db=db, user_id=user_id)] == [
        "Alice <alice@example.test>"
    ]

    await smtp_accounts.delete_smtp_account(db=db, user_id=user_id, account_id=created.id)
    assert await smtp_accounts.list_smtp_accounts(db=db, user_id=user_id) == []


async def test_password_required_when_authenticating_and_refused_input(db: Database, secret_box: SecretBox) -> None:
    user_id = await make_user(db)
    with pytest.raises(InvalidInput, match="Enter the password"):
        await smtp_accounts.add_smtp_account(
            db=db, secret_box=secret_box, user_id=user_id, account=account_input("h.test", 25, auth_required=True)
        )
    with pytest.raises(InvalidInput, match="not a valid email address"):
        await smtp_accounts.add_smtp_account(
            db=db, secret_box=secret_box, user_id=user_id, account=account_input("h.test", 25, email_address="x")
        )


async def test_another_users_account_is_not_found(db: Database, secret_box: SecretBox) -> None:
    alice = await make_user(db)
    bob = await make_user(db, "bob@example.test")
    account_id = await make_account(db, secret_box, alice, "h.test", 25)
    with pytest.raises(NotFound):
        await smtp_accounts.get_smtp_account(db=db, user_id=bob, account_id=account_id)
    with pytest.raises(NotFound):
        await smtp_accounts.delete_smtp_account(db=db, user_id=bob, account_id=account_id)
    with pytest.raises(NotFound):
        await sending.send_message(
            db=db,
            secret_box=secret_box,
            settings=Settings(),
            user_id=bob,
            from_account_id=account_id,
            draft=Draft(to=("x@example.test",)),
        )


async def test_duplicates_and_the_per_user_limit_are_refused(db: Database, secret_box: SecretBox) -> None:
    user_id = await make_user(db)
    await make_account(db, secret_box, user_id, "h.test", 25)
    with pytest.raises(Conflict, match=r"already have an SMTP account for ALICE@example\.test"):
        await make_account(db, secret_box, user_id, "other.test", 25, email_address="ALICE@example.test")
    async with db.write() as session:
        domain = (await session.exec(select(Domain))).one()
        domain.max_smtp_accounts_per_user = 1
        session.add(domain)
    with pytest.raises(Conflict, match="at most 1 SMTP account"):
        await make_account(db, secret_box, user_id, "h.test", 25, email_address="alias@example.test")


async def test_everything_but_delete_is_refused_when_the_domain_turned_smtp_accounts_off(
    db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    user_id = await make_user(db)
    account_id = await make_account(db, secret_box, user_id, "h.test", 25)
    await domains.set_domain(db=db, name="example.test", smtp_accounts_enabled=False)
    with pytest.raises(FeatureDisabled) as refused:
        await make_account(db, secret_box, user_id, "h.test", 25, email_address="b@example.test")
    assert str(refused.value) == DISABLED
    with pytest.raises(FeatureDisabled, match=DISABLED):
        await smtp_accounts.list_smtp_accounts(db=db, user_id=user_id)
    with pytest.raises(FeatureDisabled, match=DISABLED):
        await smtp_accounts.update_smtp_account(
            db=db, secret_box=secret_box, user_id=user_id, account_id=account_id, account=account_input("h.test", 25)
        )
    with pytest.raises(FeatureDisabled, match=DISABLED):
        await smtp_accounts.probe_smtp_account(
            db=db, secret_box=secret_box, settings=settings, user_id=user_id, account_id=account_id
        )
    with pytest.raises(FeatureDisabled, match=DISABLED):
        await sending.send_message(
            db=db,
            secret_box=secret_box,
            settings=settings,
            user_id=user_id,
            from_account_id=account_id,
            draft=Draft(to=("bob@example.test",)),
        )
    assert await sending.send_from_choices(db=db, user_id=user_id) == []
    await smtp_accounts.delete_smtp_account(db=db, user_id=user_id, account_id=account_id)


async def test_test_connection_for_saved_and_unsaved_settings(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="starttls", users={"alice@example.test": "pw"})
    trusted = trusting(settings, server)
    user_id = await make_user(db)
    form = account_input(server.host, server.port, security=Security.STARTTLS, auth_required=True)
    report = await smtp_accounts.probe_smtp_settings(
        db=db, secret_box=secret_box, settings=trusted, user_id=user_id, account=form, password="pw"
    )
    assert report.ok
    assert [s.name for s in report.steps] == ["resolve", "connect", "greeting", "ehlo", "starttls", "auth"]
    account_id = await make_account(
        db, secret_box, user_id, server.host, server.port, "wrong", security=Security.STARTTLS, auth_required=True
    )
    failed = await smtp_accounts.probe_smtp_account(
        db=db, secret_box=secret_box, settings=trusted, user_id=user_id, account_id=account_id
    )
    assert not failed.ok
    assert (failed.steps[-1].name, failed.steps[-1].ok) == ("auth", False)
    fixed = await smtp_accounts.probe_smtp_settings(
        db=db,
        secret_box=secret_box,
        settings=trusted,
        user_id=user_id,
        account=form,
        password="pw",
        account_id=account_id,
    )
    assert fixed.ok
    untrusted = await smtp_accounts.probe_smtp_account(
        db=db, secret_box=secret_box, settings=settings, user_id=user_id, account_id=account_id
    )
    assert untrusted.steps[-1].name == "starttls"
    assert "could not be verified" in untrusted.steps[-1].detail


async def _set_relay(db: Database, host: str, port: int) -> None:
    async with db.write() as session:
        domain = (await session.exec(select(Domain))).one()
        domain.relay_host, domain.relay_port, domain.relay_security = host, port, Security.NONE
        session.add(domain)


async def test_send_from_choices_default_and_the_company_relay(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await make_user(db, display_name="Alice Liddell")
    work = await make_account(
        db, secret_box, user_id, "h.test", 25, email_address="alice@work.test", display_name="Alice at Work"
    )
    home = await make_account(db, secret_box, user_id, "h.test", 25, email_address="alice@home.test")
    await make_account(db, secret_box, user_id, "h.test", 25, email_address="off@home.test", is_active=False)
    await _set_relay(db, server.host, server.port)
    choices = await sending.send_from_choices(db=db, user_id=user_id)
    assert [(c.key, c.label, c.is_default) for c in choices] == [
        (str(work), "Alice at Work <alice@work.test>", True),
        (str(home), "alice@home.test", False),
        ("relay", "Alice Liddell <alice@example.test>", False),
    ]
    view = await smtp_accounts.get_smtp_account(db=db, user_id=user_id, account_id=home)
    await smtp_accounts.update_smtp_account(
        db=db,
        secret_box=secret_box,
        user_id=user_id,
        account_id=home,
        account=account_input("h.test", 25, email_address=view.email_address, is_default=True),
    )
    default = await sending.default_sender(db=db, user_id=user_id)
    assert default is not None
    assert default.account_id == home

    result = await sending.send_message(
        db=db,
        secret_box=secret_box,
        settings=settings,
        user_id=user_id,
        from_account_id=None,
        draft=Draft(to=("bob@example.test",), subject="Via relay"),
    )
    assert result.status is OutboxStatus.SENT
    (received,) = server.received
    assert received.mail_from == "alice@example.test"
    assert b"From: Alice Liddell <alice@example.test>\r\n" in received.data


async def test_a_reply_defaults_to_the_address_the_original_was_delivered_to(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False)
    user_id = await make_user(db)
    first = await make_account(db, secret_box, user_id, server.host, server.port, email_address="a@one.test")
    second = await make_account(db, secret_box, user_id, server.host, server.port, email_address="a@two.test")
    original = (
        b"From: Bob <bob@example.test>\r\nTo: Someone <other@example.test>, A <A@Two.test>\r\n"
        b"Subject: Question\r\nMessage-ID: <q1@example.test>\r\nReferences: <q0@example.test>\r\n\r\nWell?\r\n"
    )
    async with db.write() as session:
        task = RetrievalTask(
            user_id=user_id, protocol=Protocol.IMAP, host="h", port=993, username="a@one.test", password_encrypted="x"
        )
        session.add(task)
        await session.flush()
        assert task.id is not None
        inbox = (await mailstore.ensure_special_folders(session, user_id))[SpecialUse.INBOX].id
        assert inbox is not None
        by_header = await mailstore.deliver(session, user_id=user_id, folder_id=inbox, raw=original)
        by_task = await mailstore.deliver(
            session,
            user_id=user_id,
            folder_id=inbox,
            raw=b"Subject: list mail\r\n\r\nhi\r\n",
            origin=mailstore.MessageOrigin(task_id=task.id),
        )
    assert by_header.id is not None
    assert by_task.id is not None
    replied_to = await sending.default_sender(db=db, user_id=user_id, reply_to_message_id=by_header.id)
    assert replied_to is not None
    assert replied_to.account_id == second
    from_task = await sending.default_sender(db=db, user_id=user_id, reply_to_message_id=by_task.id)
    assert from_task is not None
    assert from_task.account_id == first

    result = await sending.send_message(
        db=db,
        secret_box=secret_box,
        settings=settings,
        user_id=user_id,
        from_account_id=second,
        draft=Draft(to=("bob@example.test",), subject="Re: Question"),
        reply_to_message_id=by_header.id,
    )
    assert result.status is OutboxStatus.SENT
    data = server.received[0].data
    assert b"In-Reply-To: <q1@example.test>\r\n" in data
    assert b"References: <q0@example.test> <q1@example.test>\r\n" in data
    async with db.read() as session:
        answered = await session.get(Message, by_header.id)
    assert answered is not None
    assert answered.answered


async def test_deleting_an_account_fails_its_queued_messages(
    db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    with RawSmtpServer() as server:
        port = server.port
    user_id = await make_user(db)
    account_id = await make_account(db, secret_box, user_id, "127.0.0.1", port)
    queued = await sending.send_message(
        db=db,
        secret_box=secret_box,
        settings=settings,
        user_id=user_id,
        from_account_id=account_id,
        draft=Draft(to=("bob@example.test",)),
    )
    assert queued.status is OutboxStatus.QUEUED
    await smtp_accounts.delete_smtp_account(db=db, user_id=user_id, account_id=account_id)
    [failed] = await sending.list_outbox(db=db, user_id=user_id)
    assert failed.status is OutboxStatus.FAILED
    assert failed.last_error == "The SMTP account this message was to go through was deleted."


def test_views_never_carry_a_password() -> None:
    names = {f.name for f in dataclasses.fields(SmtpAccountView)}
    assert "password" not in " ".join(names).replace("has_password", "")
