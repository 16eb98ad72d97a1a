"""Canary passwords never show up in clear: not in the logs, not in a response, not in the database.

Distinctive passwords are planted the way people plant them: Tributary's own login
password through first-run setup (and a second user's through `tributary user add`),
a retrieval task's password through the New Retrieval Task form, an SMTP account's
through New SMTP Account, the company relay's through the administration page. Then
everything that handles them runs, with "Enable debug" on: good and bad sign-ins, Test
Connection (IMAP and POP3 against Dovecot, SMTP against aiosmtpd), Retrieve Messages
Now with the protocol transcript, and sending through the account and through the relay.
OAuth2 tokens (issue 15) too: an OAuth2 retrieval task and an OAuth2 SMTP account signed in
with canary access and refresh tokens (planted encrypted, as the callback saves them), whose
saved Test Connection offers the access token and, refused, spends the refresh token at the
provider; then their edit pages, their API resources, the CLI's `list --json` and the OpenAPI
document are fetched.

Afterwards the test searches every log record (every logger, at DEBUG), every response
(status line, headers and body), the CLI's output, and a dump of every table (every
column of every row) for each canary: as typed, in base64 (alone and as SASL PLAIN's
"\\0user\\0password", or for a token inside XOAUTH2's and OAUTHBEARER's messages, RFC 7628), and in hex.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import MetaData, func, select
from sqlmodel import select as sqlmodel_select

from service.config import Settings
from service.domain.oauth import AuthKind, CredentialStatus
from service.domain.values import Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import RetrievalTask, SmtpAccount
from service.persistence.types import utcnow
from service.usecases.domains import get_domain_settings
from service.usecases.oauth import forget_discovery
from service.usecases.users import find_user
from tests.cli_runner import tributary
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.dovecot_oauth import OAuthDovecot
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.smtp import SmtpServer, StartSmtpServer
from tests.fixtures.smtp_oauth import StartSmtpOAuthServer
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
TASK_ACCESS = "cnryTaskAccess6Wd3Hs8pQz"
TASK_REFRESH = "cnryTaskRefresh1Bv7Ke4nXa"
SMTP_ACCESS = "cnrySmtpAccess8Lm2Gr5tYu"
SMTP_REFRESH = "cnrySmtpRefresh3Pc9Jf6wNo"
OAUTH_TASK_USER = "oauth-box@example.test"
OAUTH_SMTP_USER = "oauth-sender@example.test"
TOKEN_USERS = {
    TASK_ACCESS: OAUTH_TASK_USER,
    TASK_REFRESH: OAUTH_TASK_USER,
    SMTP_ACCESS: OAUTH_SMTP_USER,
    SMTP_REFRESH: OAUTH_SMTP_USER,
}
CANARIES = [LOGIN, WRONG, CLI_USER, TASK, SMTP, RELAY, *TOKEN_USERS]


def forms_of(canary: str) -> list[bytes]:
    """The canary as it could leak: clear, base64 (alone and as SASL PLAIN), hex (either case)."""
    clear = canary.encode()
    forms = [clear, base64.b64encode(clear), clear.hex().encode(), clear.hex().upper().encode()]
    if canary in USERS:
        forms.append(base64.b64encode(b"\0" + USERS[canary].encode() + b"\0" + clear))
    if canary in TOKEN_USERS:  # the SASL messages that carry a bearer token (RFC 7628 section 3.1)
        user = TOKEN_USERS[canary].encode()
        forms.append(base64.b64encode(b"user=" + user + b"\x01auth=Bearer " + clear + b"\x01\x01"))
        forms.append(base64.b64encode(b"n,a=" + user + b",\x01auth=Bearer " + clear + b"\x01\x01"))
    return forms


def leaks(haystack: bytes, where: str) -> list[str]:
    return [f"{canary} in {where}" for canary in CANARIES for form in forms_of(canary) if form in haystack]


@pytest.fixture(autouse=True)
def _provider(oauth_server: OAuthServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test authorization server as OAuth2 provider "local" (it refuses the canary tokens)."""
    for name, value in oauth_server.provider_env("local", "Local Test Mail").items():
        monkeypatch.setenv(name, value)
    forget_discovery()
    yield
    forget_discovery()


@pytest.fixture
def smtp(smtp_server: StartSmtpServer) -> SmtpServer:
    return smtp_server(mode="starttls", users={"alice": SMTP})


@pytest.fixture
def relay(smtp_server: StartSmtpServer) -> SmtpServer:
    return smtp_server(mode="starttls", users={"relay-user": RELAY})


@pytest.fixture
def smtp_oauth(smtp_oauth_server: StartSmtpOAuthServer) -> SmtpServer:
    """An aiosmtpd offering XOAUTH2 and OAUTHBEARER, checking tokens at the test authorization server."""
    return smtp_oauth_server(mode="starttls")


@pytest.fixture
def web_app(
    settings: Settings,
    tmp_path: Path,
    dovecot: DovecotServer,
    smtp: SmtpServer,
    relay: SmtpServer,
    dovecot_oauth: OAuthDovecot,
    smtp_oauth: SmtpServer,
) -> Litestar:
    """The app, trusting the fixtures' self-signed certificates (as a company CA file would)."""
    bundle = tmp_path / "fixture-cas.pem"
    servers = (dovecot, smtp, relay, dovecot_oauth, smtp_oauth)
    bundle.write_bytes(b"".join(server.cert_pem_path.read_bytes() for server in servers))
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
    secret_box: SecretBox,
    dovecot_oauth: OAuthDovecot,
    smtp_oauth: SmtpServer,
    oauth_server: OAuthServer,
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

    # OAuth2: a task and an account holding canary tokens, tested with debug on (the servers refuse the access
    # token, XOAUTH2 or OAUTHBEARER in the transcript, and the provider refuses the refresh token), then
    # every place that shows them: the pages, the API resources, the OpenAPI document and the CLI's lists.
    oauth_task_id, oauth_account_id = await _plant_oauth(db, secret_box, dovecot_oauth, smtp_oauth)
    assert (await htmx_post(web_client, f"/settings/retrieval/{oauth_task_id}/run")).status_code == 200
    for kind, target_id in (("retrieval", oauth_task_id), ("smtp", oauth_account_id)):
        assert (await htmx_post(web_client, f"/settings/{kind}/{target_id}/test")).status_code == 200
    assert sum(r.grant_type == "refresh_token" for r in oauth_server.token_requests) == 2  # both refresh tokens
    for path in (
        "/settings/connectivity",
        "/settings/logs",
        f"/settings/retrieval/{oauth_task_id}/edit",
        f"/settings/smtp/{oauth_account_id}/edit",
        "/api/v1/retrieval-tasks",
        f"/api/v1/retrieval-tasks/{oauth_task_id}",
        "/api/v1/smtp-accounts",
        f"/api/v1/smtp-accounts/{oauth_account_id}",
        "/api/v1/schema/openapi.json",
    ):
        assert (await web_client.get(path)).status_code == 200, path
    retrieval_page = (await web_client.get(f"/api/v1/retrieval-tasks/{oauth_task_id}")).json()
    assert (retrieval_page["auth"], retrieval_page["status"]) == ("oauth2", "reconnect")  # the refresh was refused
    lists = [tributary(settings, kind, "list", "--user", ADMIN_EMAIL, "--json") for kind in ("retrieval", "smtp")]
    for listed in lists:
        assert listed.returncode == 0, listed.stderr
        assert "oauth2" in listed.stdout

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
    for run in (cli, *lists):
        found += leaks((run.stdout + run.stderr).encode(), f"the output of {' '.join(run.args[1:4])}")
    dump = await dump_database(db)
    found += leaks(dump, "the database")
    assert sorted(set(found)) == []
    # The search did see the debug transcripts (credentials redacted) and the plain identities.
    for expected in (b"LOGIN [redacted]", b"PASS [redacted]", b"AUTH PLAIN [redacted]", USERS[TASK].encode()):
        assert expected in dump, expected
    for expected in (b"AUTHENTICATE OAUTHBEARER [redacted]", b"AUTH OAUTHBEARER [redacted]"):
        assert expected in dump, expected  # the retrieval run and the SMTP test offered the tokens (RFC 7628)
    assert leaks(b"x" + base64.b64encode(b"\0alice\0" + SMTP.encode()), "a self-check") != []
    xoauth2 = f"user={OAUTH_SMTP_USER}\x01auth=Bearer {SMTP_ACCESS}\x01\x01".encode()
    assert leaks(b"AUTH XOAUTH2 " + base64.b64encode(xoauth2), "a self-check") != []


async def _newest_id(db: Database, model: type[RetrievalTask] | type[SmtpAccount]) -> int:
    async with db.read() as session:
        newest = (await session.exec(sqlmodel_select(func.max(model.id)))).one()
    assert newest is not None
    return int(newest)


async def _plant_oauth(db: Database, box: SecretBox, dovecot: DovecotServer, smtp: SmtpServer) -> tuple[int, int]:
    """An OAuth2 task (IMAP at the OAuth Dovecot) and account (at the OAuth aiosmtpd) holding the canary tokens,
    encrypted as the callback saves them; the access tokens look fresh, so Test Connection offers them first."""
    user_id = (await find_user(db=db, email=ADMIN_EMAIL)).id
    expires = utcnow() + timedelta(hours=1)
    task = RetrievalTask(
        user_id=user_id,
        name="OAuth canary",
        protocol=Protocol.IMAP,
        host="127.0.0.1",
        port=dovecot.imaps_port,
        security=Security.SSL,
        username=OAUTH_TASK_USER,
        auth=AuthKind.OAUTH2,
        oauth_provider="local",
        oauth_access_token_encrypted=box.encrypt(TASK_ACCESS),
        oauth_refresh_token_encrypted=box.encrypt(TASK_REFRESH),
        oauth_expires_at=expires,
        oauth_status=CredentialStatus.OK,
        enable_debug=True,
    )
    account = SmtpAccount(
        user_id=user_id,
        email_address=OAUTH_SMTP_USER,
        host="127.0.0.1",
        port=smtp.port,
        security=Security.STARTTLS,
        username=OAUTH_SMTP_USER,
        auth=AuthKind.OAUTH2,
        oauth_provider="local",
        oauth_access_token_encrypted=box.encrypt(SMTP_ACCESS),
        oauth_refresh_token_encrypted=box.encrypt(SMTP_REFRESH),
        oauth_expires_at=expires,
        oauth_status=CredentialStatus.OK,
        enable_debug=True,
    )
    async with db.write() as session:
        session.add(task)
        session.add(account)
        await session.flush()
        assert task.id is not None
        assert account.id is not None
        return task.id, account.id
