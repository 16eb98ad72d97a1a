"""Test Connection is one use case (service.usecases.connection_tests) whichever face asks: the JSON
API, the settings pages and the CLI all count against the same rate limit and obey the domain's
outbound allow list (merged with TRIBUTARY_OUTBOUND_ALLOW), for settings as typed and saved ones.

The servers are the real loopback Dovecot and aiosmtpd; the default policy refuses loopback, so
the app here runs without the suite's loopback exception.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar import Litestar

from service.config import Settings
from service.domain.outbound import NOT_ALLOWED
from service.domain.values import LogLevel, Protocol, Security
from service.errors import InvalidInput
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import domains, retrieval_tasks
from service.usecases.connection_tests import SavedSmtpAccount, SavedTask, TaskSettings, run_connection_test
from service.usecases.logs import list_logs
from service.usecases.rate_limit import TESTS_PER_MINUTE, WINDOW_SECONDS, TooManyAttempts, limiter_for
from service.usecases.retrieval_tasks import NewTask
from tests.cli_runner import tributary
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.smtp import StartSmtpServer
from tests.fixtures.webapp import WebClient
from tests.settings_web import htmx_post, task_fields, text_of
from tests.test_api import api, signed_in, smtp_body
from tests.test_smtp_fakes import make_account, make_user
from web.app import create_app


class FakeClock:
    """The limiter's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def strict(settings: Settings, dovecot: DovecotServer) -> Settings:
    """The suite's settings without its loopback exception (the default policy), trusting Dovecot's CA."""
    return settings.model_copy(update={"outbound_allow": "", "extra_ca_file": dovecot.cert_pem_path})


@pytest.fixture
def web_app(strict: Settings) -> Litestar:
    return create_app(strict)


def api_task(dovecot: DovecotServer, mailbox: MailUser) -> dict[str, Any]:
    return {
        "protocol": "imap",
        "host": "127.0.0.1",
        "port": dovecot.imaps_port,
        "security": "ssl",
        "username": mailbox.email,
        "password": mailbox.password,
        "timeout_seconds": 10,
    }


def steps(report: dict[str, Any]) -> list[tuple[str, bool, str]]:
    return [(s["name"], s["ok"], s["detail"]) for s in report["steps"]]


async def test_the_api_test_of_unsaved_settings_is_rate_limited(
    web_client: WebClient, web_app: Litestar, db: Database, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    await signed_in(web_client, db)
    clock = FakeClock()
    limiter_for(web_app.state.db).clock = clock
    body = api_task(dovecot, mail_user)
    for _ in range(TESTS_PER_MINUTE):
        answered = await api(web_client, "POST", "/retrieval-tasks/test", body)
        assert answered.status_code == 200, answered.text
        assert steps(answered.json()) == [("resolve", False, NOT_ALLOWED)]

    refused = await api(web_client, "POST", "/retrieval-tasks/test", body)
    assert refused.status_code == 429
    assert refused.json() == {
        "error": f"You can test connections {TESTS_PER_MINUTE} times a minute. Wait 60 seconds, then try again."
    }
    assert refused.headers["retry-after"] == "60"
    # One budget for every kind and form of Test Connection.
    for path, payload in [
        ("/smtp-accounts/test", smtp_body("127.0.0.1", 25)),
        ("/retrieval-tasks/test", {**body, "protocol": "pop3", "port": dovecot.pop3s_port}),
    ]:
        assert (await api(web_client, "POST", path, payload)).status_code == 429

    clock.now += WINDOW_SECONDS / 2
    again = await api(web_client, "POST", "/retrieval-tasks/test", body)
    assert again.headers["retry-after"] == "30"
    clock.now += WINDOW_SECONDS / 2  # the first test leaves the window
    assert (await api(web_client, "POST", "/retrieval-tasks/test", body)).status_code == 200


@pytest.mark.parametrize("face", ["api", "page"])
async def test_unsaved_settings_obey_the_domains_allow_list_on_every_face(
    web_client: WebClient, db: Database, dovecot: DovecotServer, mail_user: MailUser, face: str
) -> None:
    """A loopback Dovecot is refused before any connection, then reached once the domain allows it."""
    await signed_in(web_client, db)

    async def tested() -> str:
        if face == "api":
            answered = await api(web_client, "POST", "/retrieval-tasks/test", api_task(dovecot, mail_user))
            assert answered.status_code == 200, answered.text
            return json.dumps(answered.json())
        answered = await htmx_post(web_client, "/settings/retrieval/test", task_fields(dovecot, mail_user))
        assert answered.status_code == 200
        return text_of(answered.text)

    refused = await tested()
    assert NOT_ALLOWED in refused
    await domains.set_domain(db=db, name="example.test", allowed_hosts=("127.0.0.1",))
    reached = await tested()
    assert NOT_ALLOWED not in reached
    assert ('"ok": true' if face == "api" else "Test Connection succeeded") in reached


async def test_the_page_shows_the_rate_limit_in_place_of_the_steps(
    web_client: WebClient, web_app: Litestar, db: Database, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    await signed_in(web_client, db)
    limiter_for(web_app.state.db).clock = FakeClock()
    fields = task_fields(dovecot, mail_user)
    for _ in range(TESTS_PER_MINUTE):
        assert NOT_ALLOWED in text_of((await htmx_post(web_client, "/settings/retrieval/test", fields)).text)
    limited = await htmx_post(web_client, "/settings/retrieval/test", fields)
    assert limited.status_code == 200  # htmx swaps only successful answers
    assert f"You can test connections {TESTS_PER_MINUTE} times a minute." in text_of(limited.text)


async def test_the_operator_is_not_limited_but_unsaved_settings_need_a_user(
    db: Database, strict: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    user_id = await make_user(db)
    new = NewTask(
        protocol=Protocol.IMAP,
        host="127.0.0.1",
        port=dovecot.imaps_port,
        security=Security.SSL,
        username=mail_user.email,
        password=mail_user.password,
    )
    for _ in range(TESTS_PER_MINUTE):
        await run_connection_test(
            db=db, secret_box=secret_box, settings=strict, user_id=user_id, subject=TaskSettings(new)
        )
    with pytest.raises(TooManyAttempts):
        await run_connection_test(
            db=db, secret_box=secret_box, settings=strict, user_id=user_id, subject=TaskSettings(new)
        )
    with pytest.raises(InvalidInput, match="tested for a user"):
        await run_connection_test(
            db=db, secret_box=secret_box, settings=strict, user_id=None, subject=TaskSettings(new)
        )
    task = await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=user_id, new=new)
    report = await run_connection_test(
        db=db, secret_box=secret_box, settings=strict, user_id=None, subject=SavedTask(task.id)
    )
    assert [(s.name, s.detail) for s in report.steps] == [("resolve", NOT_ALLOWED)]


def test_the_cli_tests_under_the_owners_domain_policy(
    strict: Settings, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    assert (
        tributary(strict, "user", "add", "me@example.test", "--password-stdin", stdin="long enough\n").returncode == 0
    )
    added = tributary(
        strict,
        *("retrieval", "add", "--user", "me@example.test", "--protocol", "imap", "--server", "127.0.0.1"),
        *("--port", str(dovecot.imaps_port), "--security", "ssl", "--username", mail_user.email),
        *("--password-stdin", "--manual", "--json"),
        stdin=mail_user.password + "\n",
    )
    assert added.returncode == 0, added.stderr
    task_id = str(json.loads(added.stdout)["id"])

    refused = tributary(strict, "retrieval", "test", task_id, "--json")
    assert refused.returncode == 1
    assert [(s["name"], s["detail"]) for s in json.loads(refused.stdout)["steps"]] == [("resolve", NOT_ALLOWED)]
    assert tributary(strict, "domain", "set", "example.test", "--allow-hosts", "127.0.0.1").returncode == 0
    reached = tributary(strict, "retrieval", "test", task_id, "--json")
    assert reached.returncode == 0, reached.stdout + reached.stderr
    assert json.loads(reached.stdout)["ok"] is True


async def test_an_smtp_accounts_debug_option_logs_the_test_transcript_without_the_password(
    db: Database, settings: Settings, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", users={"alice": "pw-canary-7"}, require_starttls=False)
    user_id = await make_user(db)
    account_id = await make_account(
        db,
        secret_box,
        user_id,
        server.host,
        server.port,
        password="pw-canary-7",
        security=Security.NONE,
        auth_required=True,
        username="alice",
        enable_debug=True,
    )
    report = await run_connection_test(
        db=db, secret_box=secret_box, settings=settings, user_id=user_id, subject=SavedSmtpAccount(account_id)
    )
    assert report.ok, report.steps
    [entry] = await list_logs(db=db, user_id=user_id, level=LogLevel.DEBUG, smtp_account_id=account_id)
    assert entry.text.startswith(f"Test Connection with {server.host}:")
    assert "AUTH" in entry.text
    assert "pw-canary-7" not in entry.text
