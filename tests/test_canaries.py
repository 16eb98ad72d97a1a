"""Canary passwords never show up in clear: not in the logs, not in a response, not in the database.

Distinctive passwords are planted the way people plant them: Tributary's own login
password through first-run setup (and a second user's through `tributary user add`),
a retrieval task's password through the New Retrieval Task form, an SMTP account's
through New SMTP Account, the company relay's through the administration page. Then
everything that handles them runs, with "Enable debug" on: good and bad sign-ins, Test
Connection (IMAP and POP3 against Dovecot, SMTP against aiosmtpd), Retrieve Messages
Now with the protocol transcript, and sending through the account and through the relay.

Afterwards the test searches every log record (every logger, at DEBUG), every response
(status line, headers and body), the CLI's output, and a dump of every table (every
column of every row) for each canary: as typed, in base64 (alone and as SASL PLAIN's
"\\0user\\0password"), and in hex.
"""

from __future__ import annotations

import base64
import logging
import uuid
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import MetaData, func, select
from sqlmodel import select as sqlmodel_select

from service.config import Settings
from service.persistence.database import Database
from service.persistence.tables import RetrievalTask, SmtpAccount
from service.usecases.domains import get_domain_settings
from tests.cli_runner import tributary
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp import SmtpServer, StartSmtpServer
from tests.fixtures.webapp import ADMIN_EMAIL, SESSION_COOKIE, WebClient, log_in, post_form, set_up_admin
from tests.settings_web import htmx_post, task_fields
from tests.test_web_admin import domain_fields
from web.app import create_app

LOGIN = "cnryLogin7Hq2Zt9wXk"
WRONG = "cnryWrong3Fv8Np1sQe"
CLI_USER = "cnryCliUser5Tg4Mw2Ld"
TASK = "cnryTask4Kp8Xv1mRb"
SMTP = "cnrySmtp9Rw3Yb6nJc"
RELAY = "cnryRelay2Jd5Lc8sVh"
USERS = {TASK: "canary-box@example.test", SMTP: "alice", RELAY: "relay-user", LOGIN: ADMIN_EMAIL}
CANARIES = [LOGIN, WRONG, CLI_USER, TASK, SMTP, RELAY]


def forms_of(canary: str) -> list[bytes]:
    """The canary as it could leak: clear, base64 (alone and as SASL PLAIN), hex (either case)."""
    clear = canary.encode()
    forms = [clear, base64.b64encode(clear), clear.hex().encode(), clear.hex().upper().encode()]
    if canary in USERS:
        forms.append(base64.b64encode(b"\0" + USERS[canary].encode() + b"\0" + clear))
    return forms


def leaks(haystack: bytes, where: str) -> list[str]:
    return [f"{canary} in {where}" for canary in CANARIES for form in forms_of(canary) if form in haystack]


@pytest.fixture
def smtp(smtp_server: StartSmtpServer) -> SmtpServer:
    return smtp_server(mode="starttls", users={"alice": SMTP})


@pytest.fixture
def relay(smtp_server: StartSmtpServer) -> SmtpServer:
    return smtp_server(mode="starttls", users={"relay-user": RELAY})


@pytest.fixture
def web_app(
    settings: Settings, tmp_path: Path, dovecot: DovecotServer, smtp: SmtpServer, relay: SmtpServer
) -> Litestar:
    """The app, trusting the three fixtures' self-signed certificates (as a company CA file would)."""
    bundle = tmp_path / "fixture-cas.pem"
    bundle.write_bytes(
        b"".join(p.read_bytes() for p in (dovecot.cert_pem_path, smtp.cert_pem_path, relay.cert_pem_path))
    )
    return create_app(settings.model_copy(update={"extra_ca_file": bundle}))


async def dump_database(db: Database) -> bytes:
    """Every value of every row of every table, as bytes."""
    chunks: list[bytes] = []
    async with db.read() as session:
        connection = await session.connection()
        metadata = MetaData()
        await connection.run_sync(metadata.reflect)
        assert {"retrieval_task", "smtp_account", "domain", "log_entry", "message_body"} <= set(metadata.tables)
        for table in metadata.sorted_tables:
            for row in (await connection.execute(select(table))).all():
                for value in row:
                    chunks.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(chunks)


def smtp_fields(server: SmtpServer) -> dict[str, str]:
    return {
        "display_name": "Alice Example",
        "email_address": "alice@example.test",
        "host": "127.0.0.1",
        "security": "starttls",
        "port": str(server.port),
        "auth_required": "on",
        "username": "alice",
        "password": SMTP,
        "verify_certificate": "on",
        "timeout_seconds": "10",
        "save_copy_in_sent": "on",
        "is_active": "on",
        "enable_debug": "on",
    }


async def test_canary_passwords_never_appear_in_clear(
    web_client: WebClient,
    db: Database,
    settings: Settings,
    dovecot: DovecotServer,
    smtp: SmtpServer,
    relay: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    responses: list[bytes] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        head = f"{response.status_code} {response.request.method} {response.request.url}\n"
        head += "".join(f"{name}: {value}\n" for name, value in response.headers.multi_items())
        responses.append(head.encode() + response.content)

    web_client.event_hooks["response"].append(keep)
    USERS[TASK] = f"canary-{uuid.uuid4().hex[:8]}@example.test"  # Dovecot outlives one test: a fresh box
    mailbox = dovecot.add_user(USERS[TASK], TASK)
    dovecot.deliver(mailbox.email, b"From: a@example.test\r\nSubject: hello\r\n\r\nbody\r\n")

    # Tributary's own password: setup, a bad sign-in (wrong password, unknown user), a good one.
    await set_up_admin(web_client, password=LOGIN)
    web_client.cookies.delete(SESSION_COOKIE)
    assert (await log_in(web_client, password=WRONG)).status_code == 401
    assert (await log_in(web_client, email="nobody@example.test", password=WRONG)).status_code == 401
    assert (await log_in(web_client, password=LOGIN)).status_code == 303

    # The relay, then the SMTP account and the retrieval task, each tested with debug on.
    domain = await get_domain_settings(db=db, name="example.test")
    relay_fields = domain_fields(
        relay_host="127.0.0.1",
        relay_port=str(relay.port),
        relay_security="starttls",
        relay_username="relay-user",
        relay_password=RELAY,
    )
    assert (await post_form(web_client, f"/admin/domains/{domain.id}", relay_fields)).status_code == 200
    assert (await htmx_post(web_client, "/settings/smtp/test", smtp_fields(smtp))).status_code == 200
    assert (await post_form(web_client, "/settings/smtp/new", smtp_fields(smtp))).status_code == 303
    imap = task_fields(
        dovecot, mailbox, protocol="imap", port=str(dovecot.imaps_port), folder_transfer="root", enable_debug="on"
    )
    pop3 = task_fields(dovecot, mailbox, enable_debug="on", leave_on_server="on")
    for fields in (imap, pop3):
        tested = await htmx_post(web_client, "/settings/retrieval/test", fields)
        assert tested.status_code == 200
        assert "Test Connection succeeded" in tested.text, tested.text
    task_ids = []
    for fields in (imap, pop3):
        assert (await post_form(web_client, "/settings/retrieval/new", fields)).status_code == 303
        task_ids.append(await _newest_id(db, RetrievalTask))
    account_id = await _newest_id(db, SmtpAccount)
    assert (await htmx_post(web_client, f"/settings/smtp/{account_id}/test")).status_code == 200
    for task_id in task_ids:
        assert (await htmx_post(web_client, f"/settings/retrieval/{task_id}/test")).status_code == 200
        ran = await htmx_post(web_client, f"/settings/retrieval/{task_id}/run")
        assert ran.status_code == 200

    # Sending through the account and through the relay, then the pages that show what happened.
    for send_from in (str(account_id), "relay"):
        sent = await post_form(
            web_client, "/compose", {"send_from": send_from, "to": "bob@example.test", "subject": "hi", "body": "x"}
        )
        assert "Message sent" in sent.text, sent.text
    assert len(smtp.received) == 1
    assert len(relay.received) == 1
    for path in ("/settings/connectivity", "/settings/logs", "/admin", f"/settings/retrieval/{task_ids[0]}/edit"):
        assert (await web_client.get(path)).status_code == 200

    # A second user from the command line.
    cli = tributary(settings, "user", "add", "cli@example.test", "--password-stdin", "--json", stdin=CLI_USER + "\n")
    assert cli.returncode == 0, cli.stderr

    found: list[str] = []
    for record in caplog.records:
        line = f"{record.name} {record.levelname} {record.getMessage()} {record.exc_text or ''} {record.args!r}"
        found += leaks(line.encode(), f"log record {record.name}")
    found += leaks(caplog.text.encode(), "the captured log")
    for response in responses:
        first_line = response.split(b"\n", 1)[0].decode()
        found += leaks(response, f"response {first_line}")
    found += leaks((cli.stdout + cli.stderr).encode(), "the CLI's output")
    dump = await dump_database(db)
    found += leaks(dump, "the database")
    # The search did see the debug transcripts (credentials redacted) and the plain identities.
    for expected in (b"LOGIN [redacted]", b"PASS [redacted]", b"AUTH PLAIN [redacted]", USERS[TASK].encode()):
        assert expected in dump, expected
    assert leaks(b"x" + base64.b64encode(b"\0alice\0" + SMTP.encode()), "a self-check") != []
    assert sorted(set(found)) == []


async def _newest_id(db: Database, model: type[RetrievalTask] | type[SmtpAccount]) -> int:
    async with db.read() as session:
        newest = (await session.exec(sqlmodel_select(func.max(model.id)))).one()
    assert newest is not None
    return int(newest)
