"""OAuth2 sign-in in the web face and the API (issue 15), against the local authorization server of
tests/fixtures/oauth_server.py configured as the provider "local" (TRIBUTARY_OAUTH_LOCAL_*).

What a user would see: the provider buttons on the New pages (and none when no provider is
configured); a button leads (303) to the provider's consent page; the callback saves the task or
account under the reported address and says so in one sentence; access_denied, a replayed
callback, another session's state and a browser that is not signed in save nothing and say one
sentence; a revoked consent shows "Reconnect" and lights the badge, and Reconnect completes again.
The API starts and reconnects with {"id", "status", "authorize_url"} and shows "auth" and "status".
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from litestar import Litestar

from service.config import Settings
from service.domain.oauth import CredentialStatus
from service.errors import NeedsReconnect
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import RetrievalTask, SmtpAccount
from service.usecases.oauth import access_token_for, forget_discovery
from service.usecases.oauth_targets import OAuthStart, begin_oauth
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.webapp import WebClient, post_form, set_up_admin
from tests.test_api import api, signed_in
from web.app import create_app
from web.controllers.settings.present import RECONNECT_HINT

PUBLIC_URL = "http://testserver.local"  # the AsyncTestClient's own address
MAILBOX = "remote.box@example.test"
LABEL = "Local Test Mail"
STATE_INVALID = "This sign-in link is not valid any more (used, expired or from another browser): start again."


@pytest.fixture(autouse=True)
def _provider(oauth_server: OAuthServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test server as provider "local", with IMAP and SMTP servers to fill the forms."""
    env = oauth_server.provider_env("local", LABEL)
    env.update(
        {
            "TRIBUTARY_OAUTH_LOCAL_IMAP_HOST": "imap.example.test",
            "TRIBUTARY_OAUTH_LOCAL_IMAP_PORT": "993",
            "TRIBUTARY_OAUTH_LOCAL_POP3_HOST": "pop.example.test",
            "TRIBUTARY_OAUTH_LOCAL_POP3_PORT": "995",
            "TRIBUTARY_OAUTH_LOCAL_SMTP_HOST": "smtp.example.test",
            "TRIBUTARY_OAUTH_LOCAL_SMTP_PORT": "587",
        }
    )
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


def _path(url: str) -> str:
    """The callback URL as the test client requests it (path and query)."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL
    return f"{parts.path}?{parts.query}"


async def _flash(client: WebClient, response: httpx.Response) -> str:
    """Follow the 303 back to Connectivity and return its one-sentence notice."""
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/settings/connectivity")
    page = await client.get("/settings/connectivity")
    found = re.search(r'<p class="notice notice-(\w+)" role="status">([^<]*)</p>', page.text)
    assert found is not None, page.text
    return f"{found.group(1)}: {html.unescape(found.group(2))}"


async def _row(db: Database, kind: str, target_id: int) -> RetrievalTask | SmtpAccount:
    found: RetrievalTask | SmtpAccount | None
    async with db.read() as session:
        table = RetrievalTask if kind == "retrieval" else SmtpAccount
        found = await session.get(table, target_id)
    assert found is not None
    return found


async def _start(client: WebClient, kind: str, **body: object) -> dict[str, object]:
    response = await api(client, "POST", "/oauth/start", {"provider": "local", "kind": kind, **body})
    assert response.status_code == 201, response.text
    started: dict[str, object] = response.json()
    assert set(started) == {"id", "status", "authorize_url"}
    assert started["status"] == "pending"
    return started


# -- the API and the callback ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["retrieval", "smtp"])
async def test_api_start_then_callback_saves_under_the_reported_address(
    web_client: WebClient, db: Database, oauth_server: OAuthServer, kind: str
) -> None:
    await signed_in(web_client, db)
    started = await _start(web_client, kind)
    url = str(started["authorize_url"])
    assert url.startswith(oauth_server.url("/authorize?"))
    assert parse_qs(urlsplit(url).query)["redirect_uri"] == [f"{PUBLIC_URL}/oauth/callback"]
    resource = "/retrieval-tasks" if kind == "retrieval" else "/smtp-accounts"
    pending = (await api(web_client, "GET", f"{resource}/{started['id']}")).json()
    assert (pending["auth"], pending["status"]) == ("oauth2", "pending")
    assert pending["host"] == f"{'imap' if kind == 'retrieval' else 'smtp'}.example.test"

    callback = await web_client.get(_path(oauth_server.approve(url, MAILBOX)))
    anchor = "task" if kind == "retrieval" else "smtp"
    assert callback.headers["location"] == f"/settings/connectivity#{anchor}-{started['id']}"
    what = "the retrieval task is ready" if kind == "retrieval" else "the SMTP account is ready to send"
    assert await _flash(web_client, callback) == f"ok: Signed in as {MAILBOX}: {what}."

    saved = (await api(web_client, "GET", f"{resource}/{started['id']}")).json()
    assert (saved["auth"], saved["status"], saved["username"]) == ("oauth2", "ok", MAILBOX)
    assert not any("token" in key for key in saved)  # tokens are never returned
    listed = (await api(web_client, "GET", resource)).json()
    assert [(item["auth"], item["status"]) for item in listed] == [("oauth2", "ok")]

    again = await api(web_client, "POST", f"{resource}/{started['id']}/reconnect")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == started["id"]
    assert again.json()["status"] == "ok"  # unchanged until the callback completes
    assert again.json()["authorize_url"] != url  # a fresh state
    assert parse_qs(urlsplit(again.json()["authorize_url"]).query)["login_hint"] == [MAILBOX]


async def test_a_password_task_shows_password_and_ok(web_client: WebClient, db: Database) -> None:
    await signed_in(web_client, db)
    body = {"protocol": "imap", "host": "imap.example.test", "username": "me", "password": "pw"}
    created = await api(web_client, "POST", "/retrieval-tasks", body)
    assert created.status_code == 201, created.text
    assert (created.json()["auth"], created.json()["status"]) == ("password", "ok")
    refused = await api(web_client, "POST", f"/retrieval-tasks/{created.json()['id']}/reconnect")
    assert refused.status_code == 400
    assert set(refused.json()) == {"error"}


async def test_api_start_refuses_a_provider_that_is_not_configured(web_client: WebClient, db: Database) -> None:
    await signed_in(web_client, db)
    response = await api(web_client, "POST", "/oauth/start", {"provider": "google", "kind": "smtp"})
    assert response.status_code == 403
    assert "not offered" in response.json()["error"]
    assert (await api(web_client, "GET", "/smtp-accounts")).json() == []  # nothing left behind
    missing = await api(web_client, "POST", "/smtp-accounts/999/reconnect")
    assert missing.status_code == 404


async def test_access_denied_saves_nothing_and_says_so(
    web_client: WebClient, db: Database, oauth_server: OAuthServer
) -> None:
    await signed_in(web_client, db)
    started = await _start(web_client, "retrieval")
    callback = await web_client.get(_path(oauth_server.deny(str(started["authorize_url"]))))
    assert await _flash(web_client, callback) == f"error: Sign-in with {LABEL} was cancelled: nothing was saved."
    row = await _row(db, "retrieval", int(str(started["id"])))
    assert row.oauth_status is CredentialStatus.PENDING
    assert row.oauth_access_token_encrypted is None
    assert row.oauth_refresh_token_encrypted is None


async def test_a_replayed_callback_saves_nothing(
    web_client: WebClient, db: Database, oauth_server: OAuthServer
) -> None:
    await signed_in(web_client, db)
    started = await _start(web_client, "smtp")
    callback = _path(oauth_server.approve(str(started["authorize_url"]), MAILBOX))
    assert (await _flash(web_client, await web_client.get(callback))).startswith("ok: ")
    before = await _row(db, "smtp", int(str(started["id"])))

    assert await _flash(web_client, await web_client.get(callback)) == f"error: {STATE_INVALID}"
    after = await _row(db, "smtp", int(str(started["id"])))
    assert after.oauth_access_token_encrypted == before.oauth_access_token_encrypted


async def test_another_sessions_state_saves_nothing(
    web_client: WebClient, db: Database, oauth_server: OAuthServer
) -> None:
    """A callback with a state started in another browser session (here: before signing out and in
    again) is refused and leaves the state usable by the session it belongs to."""
    await signed_in(web_client, db)
    started = await _start(web_client, "retrieval")
    callback = _path(oauth_server.approve(str(started["authorize_url"]), MAILBOX))
    first_session = web_client.cookies.get("tributary_session")
    await post_form(web_client, "/logout", {})
    await post_form(web_client, "/login", {"email": "admin@example.test", "password": "correct horse battery staple"})
    assert web_client.cookies.get("tributary_session") != first_session

    assert await _flash(web_client, await web_client.get(callback)) == f"error: {STATE_INVALID}"
    assert (await _row(db, "retrieval", int(str(started["id"])))).oauth_status is CredentialStatus.PENDING


async def test_a_browser_that_is_not_signed_in(
    web_client: WebClient,
    db: Database,
    secret_box: SecretBox,
    settings: Settings,
    oauth_server: OAuthServer,
) -> None:
    """A web-started state needs its session; a CLI-started one (no binding) completes in any browser,
    which then gets the sentence on a page of its own."""
    user_id = await signed_in(web_client, db)
    started = await _start(web_client, "retrieval")
    web_callback = _path(oauth_server.approve(str(started["authorize_url"]), MAILBOX))
    await post_form(web_client, "/logout", {})

    refused = await web_client.get(web_callback)
    assert refused.status_code == 400
    assert STATE_INVALID in refused.text
    assert (await _row(db, "retrieval", int(str(started["id"])))).oauth_status is CredentialStatus.PENDING

    cli = await begin_oauth(
        db=db,
        settings=settings,
        secret_box=secret_box,
        user_id=user_id,
        start=OAuthStart(kind="smtp", provider="local"),
        session_binding=None,
    )
    done = await web_client.get(_path(oauth_server.approve(cli.authorize_url, MAILBOX)))
    assert done.status_code == 200
    assert done.headers["content-type"].startswith("text/html")
    assert f"Signed in as {MAILBOX}: the SMTP account is ready to send." in done.text
    assert (await _row(db, "smtp", cli.id)).oauth_status is CredentialStatus.OK


async def test_a_callback_without_state_says_one_sentence(web_client: WebClient, db: Database) -> None:
    await signed_in(web_client, db)
    assert await _flash(web_client, await web_client.get("/oauth/callback?code=abc")) == f"error: {STATE_INVALID}"


# -- the pages ---------------------------------------------------------------------------------------


async def test_new_pages_offer_the_configured_providers(
    web_client: WebClient, db: Database, oauth_server: OAuthServer
) -> None:
    await signed_in(web_client, db)
    for path in ("/settings/retrieval/new", "/settings/smtp/new"):
        page = await web_client.get(path)
        assert page.status_code == 200
        assert f"Sign in with {LABEL}</button>" in page.text
        assert "Sign in with Google" not in page.text  # not configured
        # The redirect after the button's form must be allowed to reach the provider.
        assert f"form-action 'self' {oauth_server.issuer}" in page.headers["content-security-policy"]


async def test_no_buttons_without_providers(
    web_client: WebClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRIBUTARY_OAUTH_LOCAL_CLIENT_ID")  # a provider without a client id is not offered
    await signed_in(web_client, db)
    page = await web_client.get("/settings/retrieval/new")
    assert "oauth-form" not in page.text
    assert "Sign in with your provider" not in page.text
    assert "form-action 'self';" in page.headers["content-security-policy"]


async def test_the_button_leads_to_consent_and_reconnect_after_revocation(
    web_client: WebClient, db: Database, settings: Settings, secret_box: SecretBox, oauth_server: OAuthServer
) -> None:
    await set_up_admin(web_client)
    started = await post_form(web_client, "/settings/retrieval/oauth", {"provider": "local", "protocol": "pop3"})
    assert started.status_code == 303
    authorize_url = started.headers["location"]
    assert authorize_url.startswith(oauth_server.url("/authorize?"))

    page = await web_client.get("/settings/connectivity")
    assert "Waiting for sign-in" in page.text
    assert ">Reconnect</button>" in page.text
    assert "Retrieve Messages Now" not in page.text  # nothing to run before the sign-in

    assert (
        await _flash(web_client, await web_client.get(_path(oauth_server.approve(authorize_url, MAILBOX))))
    ).startswith("ok: ")
    tasks = (await api(web_client, "GET", "/retrieval-tasks")).json()
    assert [(t["protocol"], t["username"], t["status"]) for t in tasks] == [("pop3", MAILBOX, "ok")]
    task_id = int(tasks[0]["id"])

    # The provider refuses the refresh: the task needs action, its row says why, the badge lights.
    oauth_server.revoke_user(MAILBOX)
    with pytest.raises(NeedsReconnect):
        await access_token_for(
            db=db, settings=settings, secret_box=secret_box, kind="retrieval", target_id=task_id, force_refresh=True
        )
    page = await web_client.get("/settings/connectivity")
    assert RECONNECT_HINT in page.text
    assert "After you reconnect" in page.text  # automatic runs stop until then
    assert ">Reconnect</button>" in page.text
    assert 'id="attention-badge" class="attention-badge"' in page.text
    assert (await api(web_client, "GET", f"/retrieval-tasks/{task_id}")).json()["status"] == "reconnect"

    again = await post_form(web_client, f"/settings/retrieval/{task_id}/reconnect", {})
    assert again.status_code == 303
    callback = await web_client.get(_path(oauth_server.approve(again.headers["location"], MAILBOX)))
    assert (await _flash(web_client, callback)).startswith("ok: ")
    page = await web_client.get("/settings/connectivity")
    assert ">Reconnect</button>" not in page.text
    assert 'class="attention-badge"' not in page.text


async def test_a_start_that_cannot_begin_says_why(
    web_client: WebClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await set_up_admin(web_client)
    monkeypatch.delenv("TRIBUTARY_OAUTH_LOCAL_SMTP_HOST")
    response = await post_form(web_client, "/settings/smtp/oauth", {"provider": "local"})
    assert response.status_code == 400
    assert "has no SMTP server set up" in response.text
    assert (await api(web_client, "GET", "/smtp-accounts")).json() == []


async def test_administration_lists_the_configured_providers(
    web_client: WebClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await set_up_admin(web_client)
    page = await web_client.get("/admin")
    assert page.status_code == 200
    assert f"<strong>{LABEL}</strong>" in page.text
    assert "IMAP imap.example.test:993, POP3 pop.example.test:995, SMTP smtp.example.test:587" in page.text
    assert f"{PUBLIC_URL}/oauth/callback" in page.text

    monkeypatch.setenv("TRIBUTARY_OAUTH_LOCAL_IMAP_PORT", "99999")
    page = await web_client.get("/admin")
    assert "TRIBUTARY_OAUTH_LOCAL_IMAP_PORT must be a port number from 1 to 65535" in page.text
    assert "That provider is not offered until it is corrected." in page.text
    assert f"<strong>{LABEL}</strong>" not in page.text
    new_task = await web_client.get("/settings/retrieval/new")
    assert "Sign in with your provider" not in new_task.text


async def test_editing_an_account_that_signs_in_with_a_provider_asks_no_password(
    web_client: WebClient, db: Database, oauth_server: OAuthServer
) -> None:
    await signed_in(web_client, db)
    started = await _start(web_client, "smtp", display_name="Remote")
    await web_client.get(_path(oauth_server.approve(str(started["authorize_url"]), MAILBOX)))
    edit = await web_client.get(f"/settings/smtp/{started['id']}/edit")
    assert 'name="password"' not in edit.text
    assert "Signs in with the provider: no password is stored." in edit.text
    saved = await post_form(
        web_client,
        f"/settings/smtp/{started['id']}/edit",
        {
            "display_name": "Remote Box",
            "email_address": MAILBOX,
            "host": "smtp.example.test",
            "security": "starttls",
            "verify_certificate": "on",  # checked on the page: a token goes only over verified TLS
            "port": "587",
            "auth_required": "on",
            "username": MAILBOX,
            "timeout_seconds": "30",
            "is_active": "on",
        },
    )
    assert await _flash(web_client, saved) == f"ok: Saved the SMTP account Remote Box <{MAILBOX}>."
    account = (await api(web_client, "GET", f"/smtp-accounts/{started['id']}")).json()
    assert (account["display_name"], account["auth"], account["status"]) == ("Remote Box", "oauth2", "ok")
