"""The CLI contract of OAuth2 sign-in (issue 15), run in-process (click's runner, in a worker thread so the
command's own event loop is its own) against the test OAuth server, the OAuth Dovecot and aiosmtpd:

`retrieval add|smtp add --oauth-provider NAME --json` print {"id", "status": "pending", "authorize_url"};
`retrieval list --json` / `smtp list --json` show "auth" and "status"; `retrieval|smtp reconnect ID --json`
print a fresh authorize_url. The browser's part (consent, then the web app's callback) is played by the
fixture server's `approve` and `complete_authorization`, which the callback calls.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner, Result

from service.cli import cli
from service.config import Settings
from service.domain.outbox import OutboxStatus
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import RetrievalTask
from service.persistence.types import utcnow
from service.usecases.oauth import complete_authorization, forget_discovery
from service.usecases.sending import process_due_outbox
from service.usecases.users import add_user
from tests.cli_runner import cli_environment
from tests.fixtures.dovecot import MailUser
from tests.fixtures.dovecot_oauth import OAuthDovecot
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.smtp_oauth import StartSmtpOAuthServer
from tests.mail_samples import sample

PUBLIC_URL = "http://127.0.0.1:8997"
USER = "alice@example.test"


@pytest.fixture(autouse=True)
def _fresh_discovery() -> Iterator[None]:
    forget_discovery()
    yield
    forget_discovery()


@dataclass
class Cli:
    settings: Settings
    db: Database
    box: SecretBox
    oauth: OAuthServer
    environ: dict[str, str]
    outputs: list[str]

    async def __call__(self, *args: str) -> Result:
        """`tributary ARGS` in-process; every output is kept for the canary."""
        runner = CliRunner()
        result = await asyncio.to_thread(runner.invoke, cli, list(args), env=self.environ, catch_exceptions=False)
        self.outputs.append(result.stdout + result.stderr)
        return result

    async def json(self, *args: str) -> Any:
        result = await self(*args, "--json")
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    async def browser(self, authorize_url: str, email: str) -> None:
        """Consent at the provider, then the web app's callback."""
        callback = self.oauth.approve(authorize_url, email)
        assert callback.startswith(f"{PUBLIC_URL}/oauth/callback?")
        params = {key: values[0] for key, values in parse_qs(urlsplit(callback).query).items()}
        await complete_authorization(
            db=self.db,
            settings=self.settings,
            secret_box=self.box,
            state=params.get("state"),
            code=params.get("code"),
            error=params.get("error"),
            session_binding=None,  # a CLI-started sign-in completes in any browser
        )


@pytest.fixture
async def tributary(
    settings: Settings,
    db: Database,
    secret_box: SecretBox,
    oauth_server: OAuthServer,
    dovecot_oauth: OAuthDovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    configured = settings.model_copy(update={"public_url": PUBLIC_URL, "extra_ca_file": dovecot_oauth.cert_pem_path})
    oauth_server.allow_redirect_uri(configured.oauth_redirect_uri)
    provider = oauth_server.provider_env("local")
    for name, value in provider.items():
        monkeypatch.setenv(name, value)
    environ = {**cli_environment(configured), **provider, "TRIBUTARY_PUBLIC_URL": PUBLIC_URL}
    await add_user(db=db, email=USER, password="long enough password")
    return Cli(configured, db, secret_box, oauth_server, environ, [])


def _tokens(server: OAuthServer) -> list[str]:
    return list(server._tokens)


async def test_retrieval_add_with_a_provider_then_run_revoke_and_reconnect(
    tributary: Cli, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser
) -> None:
    dovecot_oauth.deliver(oauth_mail_user.email, sample("one"))
    added = await tributary.json(
        *("retrieval", "add", "--user", USER, "--protocol", "imap", "--oauth-provider", "local"),
        *("--server", "127.0.0.1", "--port", str(dovecot_oauth.imaps_port), "--security", "ssl", "--manual"),
    )
    assert set(added) == {"id", "status", "authorize_url"}
    assert added["status"] == "pending"
    assert added["authorize_url"].startswith(tributary.oauth.url("/authorize"))
    task_id = added["id"]
    listed = await tributary.json("retrieval", "list", "--user", USER)
    assert [(t["id"], t["auth"], t["status"]) for t in listed] == [(task_id, "oauth2", "pending")]

    await tributary.browser(added["authorize_url"], oauth_mail_user.email)
    listed = await tributary.json("retrieval", "list", "--user", USER)
    assert [(t["auth"], t["status"], t["username"]) for t in listed] == [("oauth2", "ok", oauth_mail_user.email)]
    ran = await tributary.json("retrieval", "run", str(task_id))
    assert (ran["imported"], ran["errors"]) == (1, [])

    tributary.oauth.revoke_user(oauth_mail_user.email)
    failed = await tributary("retrieval", "run", str(task_id), "--json")
    assert failed.exit_code == 1
    assert "Reconnect" in json.loads(failed.stdout)["errors"][0]
    listed = await tributary.json("retrieval", "list", "--user", USER)
    assert [(t["status"], t["needs_action"]) for t in listed] == [("reconnect", True)]
    assert "[oauth2: reconnect]" in (await tributary("retrieval", "list", "--user", USER)).stdout

    again = await tributary.json("retrieval", "reconnect", str(task_id))
    assert (again["id"], again["status"]) == (task_id, "reconnect")
    assert again["authorize_url"] != added["authorize_url"]
    dovecot_oauth.deliver(oauth_mail_user.email, sample("two"))
    await tributary.browser(again["authorize_url"], oauth_mail_user.email)
    assert [t["status"] for t in await tributary.json("retrieval", "list", "--user", USER)] == ["ok"]
    ran = await tributary.json("retrieval", "run", str(task_id))
    assert (ran["imported"], ran["errors"]) == (1, [])

    printed = "\n".join(tributary.outputs)
    assert all(token not in printed for token in _tokens(tributary.oauth))


async def test_smtp_add_with_a_provider_sends_waits_when_revoked_and_resumes(
    tributary: Cli, smtp_oauth_server: StartSmtpOAuthServer
) -> None:
    server = smtp_oauth_server(mode="starttls")
    tributary.environ["TRIBUTARY_EXTRA_CA_FILE"] = str(server.cert_pem_path)
    tributary.settings = tributary.settings.model_copy(update={"extra_ca_file": server.cert_pem_path})
    mailbox = "alice.sender@example.test"
    added = await tributary.json(
        *("smtp", "add", "--user", USER, "--oauth-provider", "local", "--display-name", "Alice", "--default"),
        *("--server", "127.0.0.1", "--port", str(server.port), "--security", "starttls"),
    )
    assert (set(added), added["status"]) == ({"id", "status", "authorize_url"}, "pending")
    account_id = added["id"]
    listed = await tributary.json("smtp", "list", "--user", USER)
    assert [(a["id"], a["auth"], a["status"]) for a in listed] == [(account_id, "oauth2", "pending")]

    await tributary.browser(added["authorize_url"], mailbox)
    listed = await tributary.json("smtp", "list", "--user", USER)
    assert [(a["email_address"], a["auth"], a["status"]) for a in listed] == [(mailbox, "oauth2", "ok")]
    send = ("send", "--user", USER, "--from", str(account_id), "--to", "bob@example.test")
    assert (await tributary.json(*send, "--subject", "first"))["status"] == "sent"
    assert len(server.received) == 1

    tributary.oauth.revoke_user(mailbox)
    waiting = await tributary(*send, "--subject", "second", "--json")
    assert waiting.exit_code == 0, waiting.stderr  # queued, not failed
    assert json.loads(waiting.stdout)["status"] == "queued"
    outbox = await tributary.json("outbox", "--user", USER)
    assert [(e["status"], "Reconnect" in e["last_error"]) for e in outbox] == [("queued", True)]
    assert [a["status"] for a in await tributary.json("smtp", "list", "--user", USER)] == ["reconnect"]

    again = await tributary.json("smtp", "reconnect", str(account_id))
    assert (again["id"], again["status"]) == (account_id, "reconnect")
    await tributary.browser(again["authorize_url"], mailbox)
    later = utcnow().replace(microsecond=0)
    results = await process_due_outbox(
        db=tributary.db, secret_box=tributary.box, settings=tributary.settings, now=later.replace(year=later.year + 1)
    )
    assert [r.status for r in results] == [OutboxStatus.SENT]
    assert len(server.received) == 2

    printed = "\n".join(tributary.outputs)
    assert all(token not in printed for token in _tokens(tributary.oauth))


async def test_mistakes_are_one_sentence(tributary: Cli) -> None:
    unknown = await tributary(
        "retrieval", "add", "--user", USER, "--protocol", "imap", "--oauth-provider", "nosuch", "--json"
    )
    assert unknown.exit_code == 1
    assert "nosuch" in unknown.stderr
    assert unknown.stderr.count("\n") == 1
    bare = await tributary("retrieval", "add", "--user", USER, "--protocol", "imap", "--json")
    assert (bare.exit_code, json.loads(bare.stderr)) == (  # --json: the error is JSON too
        1,
        {"error": "Give --server and --username (or sign in with --oauth-provider)."},
    )
    no_server = await tributary("retrieval", "add", "--user", USER, "--protocol", "pop3", "--oauth-provider", "local")
    assert no_server.exit_code == 1
    assert "POP3 server" in no_server.stderr
    assert await tributary.json("retrieval", "list", "--user", USER) == []  # nothing left behind
    missing = await tributary("smtp", "reconnect", "999", "--json")
    assert (missing.exit_code, json.loads(missing.stderr)) == (1, {"error": "This SMTP account does not exist."})


async def test_retrieval_add_with_a_provider_keeps_the_task_options(tributary: Cli) -> None:
    added = await tributary.json(
        *("retrieval", "add", "--user", USER, "--protocol", "pop3", "--oauth-provider", "local"),
        *("--server", "127.0.0.1", "--port", "995", "--security", "ssl"),
        *("--no-filter", "--delete-from-server", "--debug"),
    )
    async with tributary.db.read() as session:
        task = await session.get(RetrievalTask, added["id"])
    assert task is not None
    assert (task.apply_filters, task.leave_on_server, task.enable_debug) == (False, False, True)

    kept = await tributary.json(
        *("retrieval", "add", "--user", USER, "--protocol", "pop3", "--oauth-provider", "local"),
        *("--server", "127.0.0.1", "--port", "995", "--delete-after-days", "7"),
    )
    async with tributary.db.read() as session:
        task = await session.get(RetrievalTask, kept["id"])
    assert task is not None
    assert (task.apply_filters, task.leave_on_server, task.delete_after_days, task.enable_debug) == (
        True,
        True,
        7,
        False,
    )

    for flag in ("--apop", "--no-verify-cert", "--password-stdin"):
        refused = await tributary(
            *("retrieval", "add", "--user", USER, "--protocol", "pop3", "--oauth-provider", "local"),
            *("--server", "127.0.0.1", flag),
        )
        assert refused.exit_code == 1
        assert "do not go with --oauth-provider" in refused.stderr
        assert refused.stderr.count("\n") == 1
    assert len(await tributary.json("retrieval", "list", "--user", USER)) == 2
