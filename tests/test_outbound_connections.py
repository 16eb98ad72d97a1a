"""The outbound policy against real servers on loopback: refused by default (Test Connection, a
retrieval run and an SMTP send say the same sentence, and nothing is connected), allowed for a
domain through its allowed hosts, and Test Connection rate limited per user."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from service.config import Settings
from service.domain.compose import Draft
from service.domain.outbound import NOT_ALLOWED
from service.domain.outbox import OutboxStatus
from service.domain.smtp_accounts import SmtpAccountInput
from service.domain.values import Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import domains, retrieval_tasks, sending, smtp_accounts
from service.usecases.rate_limit import TESTS_PER_MINUTE, TooManyAttempts
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.smtp import StartSmtpServer
from tests.mail_samples import sample
from tests.retrieval_env import Env, make_env
from tests.test_smtp_fakes import make_account, make_user, trusting


class Listener:
    """A bare listening socket: a TCP handshake would leave a connection to accept."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.sock.close()


@pytest.fixture
def strict(settings: Settings) -> Settings:
    """The suite's settings without its loopback exception: the default policy."""
    return settings.model_copy(update={"outbound_allow": ""})


@pytest.fixture
async def env(
    db: Database, strict: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, strict, secret_box, dovecot, mail_user)


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
async def test_retrieval_to_loopback_is_refused_then_allowed_for_the_domain(env: Env, protocol: Protocol) -> None:
    env.dovecot.deliver(env.mailbox.email, sample("kept out, then in"))
    task_id = await env.add_task(protocol)

    report = await retrieval_tasks.test_task(
        db=env.db, secret_box=env.secret_box, settings=env.settings, task_id=task_id, user_id=env.user_id
    )
    assert not report.ok
    assert [(s.name, s.ok, s.detail) for s in report.steps] == [("resolve", False, NOT_ALLOWED)]
    result = await env.run(task_id)
    assert (result.imported, result.errors) == (0, [NOT_ALLOWED])
    assert (await retrieval_tasks.get_task(db=env.db, task_id=task_id, user_id=None)).last_error == NOT_ALLOWED

    await domains.set_domain(db=env.db, name="example.test", allowed_hosts=("127.0.0.1",))
    report = await retrieval_tasks.test_task(
        db=env.db, secret_box=env.secret_box, settings=env.settings, task_id=task_id, user_id=env.user_id
    )
    assert report.ok, report.steps
    assert report.steps[0].detail == "127.0.0.1"
    assert (await env.run(task_id)).imported == 1


async def test_odd_spellings_of_loopback_are_refused_before_any_connection(env: Env, listener: Listener) -> None:
    for host in ("2130706433", "0x7f000001", "0177.0.0.1", "localhost"):
        new = retrieval_tasks.NewTask(
            protocol=Protocol.IMAP, host=host, port=listener.port, security=Security.NONE, username="u", password="p"
        )
        report = await retrieval_tasks.test_unsaved(
            secret_box=env.secret_box, settings=env.settings, new=new, db=env.db, user_id=env.user_id
        )
        assert [(s.name, s.detail) for s in report.steps] == [("resolve", NOT_ALLOWED)], host
    assert listener.connections() == 0


async def test_an_allowed_host_name_allows_what_it_resolves_to(env: Env) -> None:
    """The name is allowed, so its (loopback) addresses are; a "*." entry covers subdomains only."""
    task_id = await env.add_task(host="localhost", verify_certificate=False)
    await domains.set_domain(db=env.db, name="example.test", allowed_hosts=("*.localhost",))
    refused = await retrieval_tasks.test_task(
        db=env.db, secret_box=env.secret_box, settings=env.settings, task_id=task_id, user_id=env.user_id
    )
    assert [(s.name, s.detail) for s in refused.steps] == [("resolve", NOT_ALLOWED)]
    await domains.set_domain(db=env.db, name="example.test", allowed_hosts=("LocalHost",))
    report = await retrieval_tasks.test_task(
        db=env.db, secret_box=env.secret_box, settings=env.settings, task_id=task_id, user_id=env.user_id
    )
    assert report.ok, report.steps


async def test_smtp_send_and_test_connection_to_loopback_are_refused_then_allowed(
    db: Database, secret_box: SecretBox, strict: Settings, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="starttls", users={"alice": "pw-alice"})
    user_id = await make_user(db)
    account_id = await make_account(
        db,
        secret_box,
        user_id,
        server.host,
        server.port,
        password="pw-alice",
        security=Security.STARTTLS,
        auth_required=True,
        username="alice",
    )
    settings = trusting(strict, server)

    report = await smtp_accounts.probe_smtp_account(
        db=db, secret_box=secret_box, settings=settings, user_id=user_id, account_id=account_id
    )
    assert [(s.name, s.ok, s.detail) for s in report.steps] == [("resolve", False, NOT_ALLOWED)]
    draft = Draft(to=("bob@example.test",), subject="Hello", text="Hi")
    result = await sending.send_message(
        db=db, secret_box=secret_box, settings=settings, user_id=user_id, from_account_id=account_id, draft=draft
    )
    assert (result.status, result.detail) == (OutboxStatus.FAILED, NOT_ALLOWED)
    assert server.received == []
    assert server.open_connections == 0

    await domains.set_domain(db=db, name="example.test", allowed_hosts=(f"{server.host}/32",))
    report = await smtp_accounts.probe_smtp_account(
        db=db, secret_box=secret_box, settings=settings, user_id=user_id, account_id=account_id
    )
    assert report.ok, report.steps
    sent = await sending.send_message(
        db=db, secret_box=secret_box, settings=settings, user_id=user_id, from_account_id=account_id, draft=draft
    )
    assert sent.status is OutboxStatus.SENT
    assert len(server.received) == 1


async def test_the_company_relay_obeys_the_policy(
    db: Database, secret_box: SecretBox, strict: Settings, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    user_id = await make_user(db)
    [domain] = await domains.list_domain_settings(db=db)
    await domains.update_domain(
        db=db,
        secret_box=secret_box,
        domain_id=domain.id,
        settings=domains.DomainSettingsInput(
            relay_host=server.host, relay_port=server.port, relay_security=Security.NONE
        ),
    )
    draft = Draft(to=("bob@example.test",), subject="Relayed", text="Hi")
    result = await sending.send_message(
        db=db, secret_box=secret_box, settings=strict, user_id=user_id, from_account_id=None, draft=draft
    )
    assert (result.status, result.detail) == (OutboxStatus.FAILED, NOT_ALLOWED)
    assert server.received == []


async def test_test_connection_is_rate_limited_per_user(env: Env) -> None:
    task_id = await env.add_task()
    for _ in range(TESTS_PER_MINUTE):
        report = await retrieval_tasks.test_task(
            db=env.db, secret_box=env.secret_box, settings=env.settings, task_id=task_id, user_id=env.user_id
        )
        assert report.steps[0].detail == NOT_ALLOWED
    with pytest.raises(TooManyAttempts, match=r"test connections 10 times a minute\. Wait \d+ seconds"):
        await retrieval_tasks.test_task(
            db=env.db, secret_box=env.secret_box, settings=env.settings, task_id=task_id, user_id=env.user_id
        )
    with pytest.raises(TooManyAttempts):  # one budget for retrieval tasks and SMTP accounts
        await smtp_accounts.probe_smtp_settings(
            db=env.db,
            secret_box=env.secret_box,
            settings=env.settings,
            user_id=env.user_id,
            account=SmtpAccountInput(email_address="reader@example.test", host="127.0.0.1", port=25),
        )
    other = await make_user(env.db, "other@example.test")
    new = retrieval_tasks.NewTask(protocol=Protocol.IMAP, host="127.0.0.1", port=1, username="u", password="p")
    report = await retrieval_tasks.test_unsaved(
        secret_box=env.secret_box, settings=env.settings, new=new, db=env.db, user_id=other
    )
    assert report.steps[0].detail == NOT_ALLOWED
    # The operator (the CLI, user_id None) is not limited.
    await retrieval_tasks.test_task(
        db=env.db, secret_box=env.secret_box, settings=env.settings, task_id=task_id, user_id=None
    )
