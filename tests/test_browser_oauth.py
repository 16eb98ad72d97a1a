"""OAuth2 sign-in in a real browser (issue 15): Chromium goes from "Sign in with <provider>" through the
test authorization server's consent page (tests/fixtures/oauth_server.py, configured as provider
"local") back to Settings, with the task saved under the mailbox address; Retrieve Messages Now
imports from a Dovecot that checks the token by introspection; an SMTP account signed in the same
way sends a message through aiosmtpd checking its token. Deny, a replayed callback and another
session's state say one sentence and save nothing. A revoked consent shows Reconnect and lights
the badge; Reconnect runs the consent again and retrieval resumes. The pages fit a 390 px phone.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from service.config import Settings
from service.usecases.oauth import forget_discovery
from tests.fixtures.browser import create_administrator
from tests.fixtures.dovecot import MailUser
from tests.fixtures.dovecot_oauth import OAuthDovecot
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.smtp_oauth import start_smtp_oauth_server
from tests.mail_samples import sample
from web.app import create_app

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]

EMAIL = "ada@example.test"
PASSWORD = "correct horse battery staple"
LABEL = "Local Test Mail"
BUTTON = f"Sign in with {LABEL}"
STATE_INVALID = "This sign-in link is not valid any more (used, expired or from another browser): start again."
SCREENSHOTS = "/tmp/tributary-oauth-{}.png"


@dataclass
class Site:
    url: str
    settings: Settings
    smtp: SmtpServer


@pytest.fixture
def site(
    settings: Settings,
    tmp_path: Path,
    oauth_server: OAuthServer,
    dovecot_oauth: OAuthDovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Site]:
    """The app on 127.0.0.1:<port> with TRIBUTARY_PUBLIC_URL at that address, the OAuth test server as
    provider "local" whose IMAP/POP3 server is the OAuth Dovecot and SMTP server an aiosmtpd checking tokens."""
    smtp = start_smtp_oauth_server(tmp_path / "smtp", oauth_server, "starttls")
    bundle = tmp_path / "ca.pem"  # both test certificates
    bundle.write_bytes(dovecot_oauth.cert_pem_path.read_bytes() + smtp.cert_pem_path.read_bytes())
    env = oauth_server.provider_env("local", LABEL)
    env.update(
        {
            "TRIBUTARY_OAUTH_LOCAL_IMAP_HOST": "127.0.0.1",
            "TRIBUTARY_OAUTH_LOCAL_IMAP_PORT": str(dovecot_oauth.imaps_port),
            "TRIBUTARY_OAUTH_LOCAL_POP3_HOST": "127.0.0.1",
            "TRIBUTARY_OAUTH_LOCAL_POP3_PORT": str(dovecot_oauth.pop3s_port),
            "TRIBUTARY_OAUTH_LOCAL_SMTP_HOST": "127.0.0.1",
            "TRIBUTARY_OAUTH_LOCAL_SMTP_PORT": str(smtp.port),
            "TRIBUTARY_OAUTH_LOCAL_SMTP_SECURITY": "starttls",
        }
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    forget_discovery()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    configured = settings.model_copy(update={"public_url": url, "extra_ca_file": bundle})
    oauth_server.allow_redirect_uri(f"{url}/oauth/callback")
    config = uvicorn.Config(
        create_app(configured), lifespan="on", log_level="warning", access_log=False, ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the web app did not start; see the captured log")
        time.sleep(0.05)
    try:
        yield Site(url, configured, smtp)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        smtp.stop()
        forget_discovery()


def _watch(page: Page, site: Site) -> list[str]:
    """Script errors, CSP violations and failed requests of Tributary's pages (not the provider's:
    its consent page has no favicon)."""
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and message.location.get("url", "").startswith(site.url):
            problems.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 and r.url.startswith(site.url) else None,
    )
    return problems


def _context(browser: Browser, site: Site, **options: object) -> BrowserContext:
    return browser.new_context(base_url=site.url, viewport={"width": 1200, "height": 900}, **options)  # type: ignore[arg-type]


def _sign_in(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def _notice(page: Page, text: str) -> None:
    expect(page.get_by_role("status").filter(has_text=text)).to_be_visible()


def test_retrieval_round_trip_revocation_and_reconnect(
    site: Site, browser: Browser, oauth_server: OAuthServer, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser
) -> None:
    oauth_server.consent_user = oauth_mail_user.email
    dovecot_oauth.deliver(oauth_mail_user.email, sample("Hello through OAuth"))
    context = _context(browser, site)
    page = context.new_page()
    problems = _watch(page, site)
    create_administrator(page, EMAIL, PASSWORD)

    page.goto("/settings/connectivity")
    page.get_by_role("button", name="New Retrieval Task").click()
    expect(page.get_by_role("heading", name="Sign in with your provider")).to_be_visible()
    page.get_by_label("Retrieve with").select_option("imap")
    page.get_by_role("button", name=BUTTON).click()

    expect(page.get_by_role("heading", name="Allow access to your mailbox?")).to_be_visible()
    expect(page.get_by_text(oauth_mail_user.email)).to_be_visible()
    page.get_by_role("button", name="Allow").click()

    expect(page).to_have_url(re.compile(r"/settings/connectivity#task-\d+$"))
    _notice(page, f"Signed in as {oauth_mail_user.email}: the retrieval task is ready.")
    row = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name=oauth_mail_user.email))
    expect(row).to_contain_text(f"IMAP · {oauth_mail_user.email} on 127.0.0.1:{dovecot_oauth.imaps_port}")
    expect(row.get_by_role("button", name="Reconnect")).to_have_count(0)

    row.get_by_role("button", name="Retrieve Messages Now").click()
    expect(row.get_by_text("Retrieving messages…")).to_be_hidden()
    page.reload()
    expect(row.locator(".fact").filter(has_text="Messages imported")).to_contain_text("1")
    expect(row.get_by_text("Working", exact=True)).to_be_visible()
    expect(page.locator("#attention-badge")).to_be_hidden()

    # Consent withdrawn at the provider: the next run cannot renew the sign-in.
    oauth_server.revoke_user(oauth_mail_user.email)
    row.get_by_role("button", name="Retrieve Messages Now").click()
    expect(row.get_by_role("button", name="Reconnect")).to_be_visible()
    expect(row).to_contain_text("The provider no longer accepts this sign-in")
    expect(row.get_by_text("Needs your action", exact=True)).to_be_visible()
    expect(page.locator("#attention-badge")).to_have_text("1")
    page.screenshot(path=SCREENSHOTS.format("reconnect"), full_page=True)

    row.get_by_role("button", name="Reconnect").click()
    page.get_by_role("button", name="Allow").click()
    _notice(page, f"Signed in as {oauth_mail_user.email}: the retrieval task is ready.")
    expect(page.locator("#attention-badge")).to_be_hidden()
    dovecot_oauth.deliver(oauth_mail_user.email, sample("After reconnecting"))
    row.get_by_role("button", name="Retrieve Messages Now").click()
    expect(row.get_by_text("Retrieving messages…")).to_be_hidden()
    page.reload()
    expect(row.locator(".fact").filter(has_text="Messages imported")).to_contain_text("2")
    expect(row.get_by_role("button", name="Reconnect")).to_have_count(0)
    assert problems == []
    context.close()


def test_smtp_account_signs_in_and_sends(
    site: Site, browser: Browser, oauth_server: OAuthServer, oauth_mail_user: MailUser
) -> None:
    oauth_server.consent_user = oauth_mail_user.email
    context = _context(browser, site)
    page = context.new_page()
    problems = _watch(page, site)
    create_administrator(page, EMAIL, PASSWORD)
    page.goto("/settings/smtp/new")
    page.get_by_role("button", name=BUTTON).click()
    page.get_by_role("button", name="Allow").click()
    expect(page).to_have_url(re.compile(r"/settings/connectivity#smtp-\d+$"))
    _notice(page, f"Signed in as {oauth_mail_user.email}: the SMTP account is ready to send.")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Compose").click()
    send_from = page.get_by_label("Send From")
    choice = send_from.locator("option", has_text=oauth_mail_user.email).get_attribute("value")
    assert choice is not None
    send_from.select_option(choice)
    page.get_by_label("To", exact=True).fill("bob@example.test")
    page.get_by_label("Subject").fill("Sent with a token")
    page.get_by_label("Message body").fill("Hello Bob.\n")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("heading", name="Message sent")).to_be_visible()
    received = site.smtp.received
    assert [(m.mail_from, m.rcpt_tos, m.auth_user) for m in received] == [
        (oauth_mail_user.email, ["bob@example.test"], oauth_mail_user.email)  # signed in with the token
    ]
    assert b"Sent with a token" in received[0].data
    assert problems == []
    context.close()


def test_deny_replay_and_another_sessions_state_save_nothing(
    site: Site, browser: Browser, oauth_server: OAuthServer, oauth_mail_user: MailUser
) -> None:
    oauth_server.consent_user = oauth_mail_user.email
    context = _context(browser, site)
    page = context.new_page()
    callbacks: list[str] = []
    page.on("request", lambda r: callbacks.append(r.url) if "/oauth/callback" in r.url else None)
    create_administrator(page, EMAIL, PASSWORD)

    # Deny at the consent page.
    page.goto("/settings/retrieval/new")
    page.get_by_role("button", name=BUTTON).click()
    page.get_by_role("button", name="Deny").click()
    _notice(page, f"Sign-in with {LABEL} was cancelled: nothing was saved.")
    expect(page.get_by_text("Waiting for sign-in", exact=True)).to_be_visible()

    # Allow, then the same callback again (back button, a shared link): refused.
    page.goto("/settings/smtp/new")
    page.get_by_role("button", name=BUTTON).click()
    page.get_by_role("button", name="Allow").click()
    _notice(page, f"Signed in as {oauth_mail_user.email}: the SMTP account is ready to send.")
    page.goto(callbacks[-1])
    _notice(page, STATE_INVALID)

    # A state started here, returned in another browser session: refused there, still good here.
    page.goto("/settings/retrieval/new")
    page.get_by_role("button", name=BUTTON).click()
    expect(page.get_by_role("button", name="Allow")).to_be_visible()
    callback = oauth_server.approve(page.url, oauth_mail_user.email)
    other = _context(browser, site)
    stranger = other.new_page()
    _sign_in(stranger)
    stranger.goto(callback)
    _notice(stranger, STATE_INVALID)
    anonymous = _context(browser, site).new_page()
    anonymous.goto(callback)
    expect(anonymous.get_by_role("heading", name="Sign-in not completed")).to_be_visible()
    expect(anonymous.get_by_role("status")).to_have_text(STATE_INVALID)
    page.goto(callback)
    _notice(page, f"Signed in as {oauth_mail_user.email}: the retrieval task is ready.")
    other.close()
    context.close()


def test_oauth_pages_fit_a_phone(site: Site, browser: Browser, oauth_server: OAuthServer) -> None:
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    create_administrator(page, EMAIL, PASSWORD)
    page.goto("/settings/retrieval/new")
    page.get_by_role("button", name=BUTTON).click()  # a task waiting for its sign-in
    page.goto("/settings/connectivity")
    expect(page.get_by_text("Waiting for sign-in", exact=True)).to_be_visible()
    for path in ("/settings/retrieval/new", "/settings/smtp/new", "/settings/connectivity", "/admin"):
        response = page.goto(path)
        assert response is not None
        assert response.headers["content-type"].startswith("text/html"), path
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate(
            "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 391)"
            ".map(e => e.tagName + '.' + e.className + '#' + e.id).slice(0, 8)"
        )
        assert width <= 390, (path, width, wide)
        page.screenshot(path=SCREENSHOTS.format("phone" + path.replace("/", "-")), full_page=True)
    context.close()
