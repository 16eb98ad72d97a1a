"""The Administration page's per-domain "OAuth2 sign-in (Google, Microsoft, ...)" switch (issue 15).

What an administrator and a user see: the switch sits beside "IMAP/POP Retrieval" and "SMTP Accounts"
(and `tributary domain set --oauth on|off`, `domain list --json` "oauth"); turned off, "Sign in with
<provider>" is not offered on New Retrieval Task / New SMTP Account, starting or reconnecting a sign-in
is refused with one sentence, and a task or account that already signs in with a provider stops signing
in (its run fails with that sentence, as a task does when retrieval is turned off: nothing is asked of
the provider or the mail server); turned back on, everything works again.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from click.testing import CliRunner, Result
from litestar import Litestar

from service.cli import cli
from service.config import Settings
from service.domain.oauth import CredentialStatus
from service.domain.outbox import OutboxStatus
from service.domain.values import Protocol
from service.errors import FeatureDisabled
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.types import utcnow
from service.usecases.connection_tests import SavedSmtpAccount, SavedTask, run_connection_test
from service.usecases.domains import get_domain_settings, set_domain
from service.usecases.oauth import forget_discovery
from service.usecases.sending import process_due_outbox, send_from_choices
from service.usecases.users import add_user
from tests.cli_runner import cli_environment
from tests.fixtures.dovecot import MailUser
from tests.fixtures.dovecot_oauth import OAuthDovecot
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.smtp_oauth import StartSmtpOAuthServer
from tests.fixtures.webapp import WebClient, post_form, set_up_admin
from tests.mail_samples import sample
from tests.test_api import api
from tests.test_oauth_wiring import PUBLIC_URL as WIRING_URL
from tests.test_oauth_wiring import World, _send, _smtp_account
from tests.test_web_admin import domain_fields
from web.app import create_app

PUBLIC_URL = "http://testserver.local"  # the AsyncTestClient's own address
LABEL = "Local Test Mail"
OFF = "Your administrator turned off OAuth2 sign-in for example.test."
SWITCH = "OAuth2 sign-in (Google, Microsoft, ...)"


@pytest.fixture(autouse=True)
def _provider(oauth_server: OAuthServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test server as provider "local", with an IMAP and an SMTP server to fill the forms."""
    env = oauth_server.provider_env("local", LABEL)
    env["TRIBUTARY_OAUTH_LOCAL_IMAP_HOST"] = "imap.example.test"
    env["TRIBUTARY_OAUTH_LOCAL_SMTP_HOST"] = "smtp.example.test"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    oauth_server.allow_redirect_uri(f"{PUBLIC_URL}/oauth/callback")
    forget_discovery()
    yield
    forget_discovery()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"public_url": PUBLIC_URL})


@pytest.fixture
def web_app(settings: Settings) -> Litestar:
    return create_app(settings)


async def _oauth_enabled(db: Database) -> bool:
    return (await get_domain_settings(db=db, name="example.test")).oauth_enabled


def _switch_checked(page: str, domain_id: int) -> bool:
    box = re.search(rf'<input type="checkbox" role="switch" class="switch" id="domain-{domain_id}-oauth"[^>]*>', page)
    assert box is not None, page
    return " checked" in box.group(0)


# -- the Administration page --------------------------------------------------------------


async def test_the_switch_turns_the_buttons_and_the_start_off_and_on(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    domain_id = (await get_domain_settings(db=db, name="example.test")).id
    page = (await web_client.get("/admin")).text
    assert f'<label for="domain-{domain_id}-oauth">{SWITCH}</label>' in page
    assert _switch_checked(page, domain_id)  # on by default

    # Without the CSRF token nothing changes.
    forged = await web_client.post(f"/admin/domains/{domain_id}", data=domain_fields(oauth_enabled="off"))
    assert forged.status_code == 403
    assert await _oauth_enabled(db)

    saved = await post_form(web_client, f"/admin/domains/{domain_id}", domain_fields(oauth_enabled="off"))
    assert saved.status_code == 200, saved.text
    assert not await _oauth_enabled(db)
    assert not _switch_checked((await web_client.get("/admin")).text, domain_id)
    settings = await get_domain_settings(db=db, name="example.test")
    assert (settings.retrieval_enabled, settings.smtp_accounts_enabled) == (True, True)  # the others untouched

    for path in ("/settings/retrieval/new", "/settings/smtp/new"):
        new_page = await web_client.get(path)
        assert new_page.status_code == 200
        assert f"Sign in with {LABEL}" not in new_page.text
        assert "oauth-form" not in new_page.text
    refused = await post_form(web_client, "/settings/retrieval/oauth", {"provider": "local", "protocol": "imap"})
    assert refused.status_code == 403
    assert OFF in refused.text
    api_refused = await api(web_client, "POST", "/oauth/start", {"provider": "local", "kind": "smtp"})
    assert api_refused.status_code == 403
    assert OFF in api_refused.text
    assert (await api(web_client, "GET", "/retrieval-tasks")).json() == []
    assert (await api(web_client, "GET", "/smtp-accounts")).json() == []

    assert (await post_form(web_client, f"/admin/domains/{domain_id}", domain_fields())).status_code == 200
    assert await _oauth_enabled(db)
    for path in ("/settings/retrieval/new", "/settings/smtp/new"):
        assert f"Sign in with {LABEL}</button>" in (await web_client.get(path)).text
    started = await post_form(web_client, "/settings/retrieval/oauth", {"provider": "local", "protocol": "imap"})
    assert started.status_code == 303


# -- the CLI ------------------------------------------------------------------------------


async def test_cli_sets_and_lists_the_switch(settings: Settings, db: Database, oauth_server: OAuthServer) -> None:
    await add_user(db=db, email="alice@example.test", password="long enough password")
    environ = {
        **cli_environment(settings),
        **oauth_server.provider_env("local", LABEL),
        "TRIBUTARY_OAUTH_LOCAL_IMAP_HOST": "imap.example.test",
        "TRIBUTARY_PUBLIC_URL": PUBLIC_URL,
    }

    async def tributary(*args: str) -> Result:
        return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=environ, catch_exceptions=False)

    add = ("retrieval", "add", "--user", "alice@example.test", "--protocol", "imap", "--oauth-provider", "local")
    listed = await tributary("domain", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [(d["name"], d["oauth"]) for d in json.loads(listed.stdout)] == [("example.test", True)]

    off = await tributary("domain", "set", "example.test", "--oauth", "off", "--json")
    assert off.exit_code == 0, off.stderr
    shown = json.loads(off.stdout)
    assert (shown["oauth"], shown["retrieval_enabled"], shown["smtp_accounts_enabled"]) == (False, True, True)
    assert [d["oauth"] for d in json.loads((await tributary("domain", "list", "--json")).stdout)] == [False]
    assert "OAuth2 sign-in off" in (await tributary("domain", "list")).stdout
    refused = await tributary(*add, "--json")
    assert refused.exit_code != 0
    assert OFF in refused.stderr

    on = await tributary("domain", "set", "example.test", "--oauth", "on", "--json")
    assert json.loads(on.stdout)["oauth"] is True
    added = await tributary(*add, "--json")
    assert added.exit_code == 0, added.stderr
    assert json.loads(added.stdout)["status"] == "pending"


# -- the service: begin, reconnect and existing tasks and accounts -------------------------


@pytest.fixture
async def world(
    settings: Settings,
    db: Database,
    secret_box: SecretBox,
    oauth_server: OAuthServer,
    dovecot_oauth: OAuthDovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    configured = settings.model_copy(update={"public_url": WIRING_URL, "extra_ca_file": dovecot_oauth.cert_pem_path})
    oauth_server.allow_redirect_uri(configured.oauth_redirect_uri)
    user = await add_user(db=db, email="alice@example.test", password="long enough password")
    return World(configured, db, secret_box, oauth_server, user.id)


async def _switch(world: World, on: bool) -> None:
    await set_domain(db=world.db, name="example.test", oauth_enabled=on)


async def test_an_existing_task_stops_signing_in_until_the_switch_is_on_again(
    world: World, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser
) -> None:
    dovecot_oauth.deliver(oauth_mail_user.email, sample("before"))
    started = await world.begin("retrieval", protocol=Protocol.IMAP, host="127.0.0.1", port=dovecot_oauth.imaps_port)
    await world.consent(started.authorize_url, oauth_mail_user.email)
    assert (await world.run(started.id)).imported == 1
    account = await world.begin("smtp", host="127.0.0.1", port=2525)
    await world.consent(account.authorize_url, "alice.sender@example.test")

    await _switch(world, False)
    for kind in ("retrieval", "smtp"):
        with pytest.raises(FeatureDisabled, match=re.escape(OFF)):
            await world.begin(kind, protocol=Protocol.IMAP, host="127.0.0.1")
    with pytest.raises(FeatureDisabled, match=re.escape(OFF)):
        await world.reconnect("retrieval", started.id)

    dovecot_oauth.deliver(oauth_mail_user.email, sample("after"))
    tokens, introspections = len(world.oauth.token_requests), world.oauth.requests["/introspect"]
    result = await world.run(started.id)
    assert (result.imported, result.errors) == (0, [OFF])
    task = await world.task(started.id)
    # As with retrieval turned off: the row says why; nothing to reconnect, no action asked of the user.
    assert (task.last_error, task.needs_action, task.oauth_status) == (OFF, False, CredentialStatus.OK)
    for subject in (SavedTask(started.id), SavedSmtpAccount(account.id)):
        report = await run_connection_test(
            db=world.db, secret_box=world.box, settings=world.settings, user_id=world.user_id, subject=subject
        )
        assert [(s.name, s.ok, s.detail) for s in report.steps] == [("token", False, OFF)]
    # Neither the provider nor the mail server was asked anything.
    assert (len(world.oauth.token_requests), world.oauth.requests["/introspect"]) == (tokens, introspections)

    await _switch(world, True)
    result = await world.run(started.id)
    assert (result.imported, result.errors) == (1, [])
    assert (await world.task(started.id)).last_error is None
    again = await world.reconnect("retrieval", started.id)
    assert again.authorize_url.startswith(world.oauth.url("/authorize?"))


async def test_an_existing_smtp_account_stops_sending_until_the_switch_is_on_again(
    world: World, smtp_oauth_server: StartSmtpOAuthServer
) -> None:
    """As with SMTP Accounts turned off: not in Send From, a new message is refused, a queued one fails
    with the sentence (no sign-in tried, the account not in needs action)."""
    mailbox = "alice.sender@example.test"
    server, account_id = await _smtp_account(world, smtp_oauth_server, mailbox)
    assert (await _send(world, account_id, "first")).status is OutboxStatus.SENT
    world.oauth.revoke_user(mailbox)
    assert (await _send(world, account_id, "queued")).status is OutboxStatus.QUEUED  # waits for Reconnect
    again = await world.reconnect("smtp", account_id)
    await world.consent(again.authorize_url, mailbox)

    await _switch(world, False)
    assert await send_from_choices(db=world.db, user_id=world.user_id) == []
    with pytest.raises(FeatureDisabled, match=re.escape(OFF)):
        await _send(world, account_id, "refused")
    tokens = len(world.oauth.token_requests)
    later = utcnow() + timedelta(minutes=5)
    results = await process_due_outbox(db=world.db, secret_box=world.box, settings=world.settings, now=later)
    assert [(r.status, r.detail) for r in results] == [(OutboxStatus.FAILED, OFF)]
    assert len(world.oauth.token_requests) == tokens
    assert len(server.received) == 1
    assert not (await world.account(account_id)).needs_action  # nothing the user can fix

    await _switch(world, True)
    assert [c.address for c in await send_from_choices(db=world.db, user_id=world.user_id)] == [mailbox]
    assert (await _send(world, account_id, "back on")).status is OutboxStatus.SENT
    assert len(server.received) == 2
