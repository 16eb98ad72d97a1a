"""Set-up from the address (issue 18) in Chromium: on New Retrieval Task the user types the email
address first and protocol, server, port, security and username are filled in, with where they were
found; a provider that needs OAuth2 says so and offers its sign-in; New SMTP Account looks up its own
Email address field; a DNS server that never answers does not hang the form. No script errors and no
CSP violations (static/js/discover.js, no inline script)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from service.config import Settings
from tests.fixtures.browser import create_administrator, page_errors
from tests.fixtures.discovery import Zone

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]

EMAIL = "ada@example.test"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def settings(settings: Settings, dns_zone: Zone, silent_dns: str, request: pytest.FixtureRequest) -> Settings:
    """The local DNS server (a silent one for the test about it), Google sign-in configured."""
    silent = "never_answers" in request.node.name
    return settings.model_copy(
        update={
            "discovery_nameservers": silent_dns if silent else dns_zone.nameservers,
            "discovery_timeout_seconds": 1 if silent else 4,
            "oauth_google_client_id": "test-client.apps.example",
            "public_url": "http://127.0.0.1:9",  # only the redirect URI's text: Google's page is stubbed
        }
    )


def _look_up(page: Page, email: str, key: str) -> Locator:
    """Type `email` in the Email address field and leave it with `key` (Tab or Enter): the look-up starts."""
    address = page.get_by_label("Email address")
    address.fill(email)
    address.press(key)
    return address


def _open(browser: Browser, live_server: str, path: str) -> tuple[Page, list[str]]:
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = page_errors(page)
    create_administrator(page, EMAIL, PASSWORD)
    page.goto(path)
    return page, problems


def test_typing_the_address_fills_the_retrieval_task_form(
    settings: Settings, live_server: str, browser: Browser, dns_zone: Zone
) -> None:
    dns_zone.add("_pop3s._tcp.example.test", "SRV", "0 1 1995 pop.example.test.")
    dns_zone.add("pop.example.test", "A", "127.0.0.1")
    page, problems = _open(browser, live_server, "/settings/retrieval/new")
    expect(page.get_by_role("heading", name="Set up from your address")).to_be_visible()
    page.get_by_label("POP3", exact=True).check()
    address = _look_up(page, "jo@example.test", "Tab")
    expect(page.locator("#discover-result")).to_have_text(
        "Found in the domain's DNS SRV records. Check the settings, then test and save them."
    )
    expect(page.get_by_label("Server address")).to_have_value("pop.example.test")
    expect(page.get_by_label("Port", exact=True)).to_have_value("1995")
    expect(page.get_by_label("Security")).to_have_value("ssl")
    expect(page.get_by_label("Username")).to_have_value("jo@example.test")
    expect(page.get_by_label("POP3", exact=True)).to_be_checked()
    expect(page.locator("#discover-found")).to_contain_text("POP3: pop.example.test, port 1995, SSL/TLS")
    expect(page.locator("#discover-oauth")).to_be_hidden()
    # Another address: IMAP found by the MX guess, and the protocol follows what was found.
    dns_zone.add("elsewhere.test", "MX", "10 mx.elsewhere.test.")
    dns_zone.add("mx.elsewhere.test", "A", "127.0.0.1")
    address.fill("jo@elsewhere.test")
    page.get_by_role("button", name="Find the servers").click()
    expect(page.locator("#discover-result")).to_contain_text("A guess from elsewhere.test's MX records")
    expect(page.get_by_label("Server address")).to_have_value("mx.elsewhere.test")
    expect(page.get_by_label("Port", exact=True)).to_have_value("995")
    expect(page.get_by_label("Username")).to_have_value("jo@elsewhere.test")
    assert problems == []


def test_a_provider_that_needs_oauth2_offers_its_sign_in(
    settings: Settings, live_server: str, browser: Browser
) -> None:
    page, problems = _open(browser, live_server, "/settings/retrieval/new")
    _look_up(page, "someone@gmail.com", "Enter")
    expect(page.get_by_label("Server address")).to_have_value("imap.gmail.com")
    expect(page.get_by_label("Port", exact=True)).to_have_value("993")
    expect(page.locator("#discover-result")).to_contain_text("Found in Tributary's list of large providers (Gmail).")
    sign_in = page.locator("#discover-oauth")
    expect(sign_in).to_contain_text("Gmail needs sign-in with Google: no password is stored.")
    expect(sign_in.get_by_role("button", name="Sign in with Google")).to_be_visible()
    expect(sign_in.locator("input[name='provider']")).to_have_value("google")
    assert problems == []
    # The button starts the same sign-in as "Sign in with Google" above: Google's consent page, stubbed here.
    page.route(
        "https://accounts.google.com/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<h1>Google consent</h1>"),
    )
    sign_in.get_by_role("button", name="Sign in with Google").click()
    expect(page.get_by_role("heading", name="Google consent")).to_be_visible()
    assert page.url.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    assert "client_id=test-client.apps.example" in page.url


def test_the_smtp_form_looks_up_its_own_address_field(
    settings: Settings, live_server: str, browser: Browser, dns_zone: Zone
) -> None:
    dns_zone.add("_submissions._tcp.example.test", "SRV", "0 1 465 smtp.example.test.")
    dns_zone.add("_submission._tcp.example.test", "SRV", "0 1 587 smtp.example.test.")
    dns_zone.add("smtp.example.test", "A", "127.0.0.1")
    page, problems = _open(browser, live_server, "/settings/smtp/new")
    _look_up(page, "jo@example.test", "Tab")
    expect(page.get_by_label("Server address")).to_have_value("smtp.example.test")
    expect(page.get_by_label("Port", exact=True)).to_have_value("465")
    expect(page.get_by_label("Security")).to_have_value("ssl")
    expect(page.locator("#discover-found")).to_contain_text("SMTP: smtp.example.test, port 465, SSL/TLS")
    assert problems == []


def test_a_dns_server_that_never_answers_does_not_hang_the_form(
    settings: Settings, live_server: str, browser: Browser
) -> None:
    page, problems = _open(browser, live_server, "/settings/retrieval/new")
    _look_up(page, "jo@example.test", "Tab")
    expect(page.locator("#discover-result")).to_have_text(
        "No mail servers were found for example.test: enter them yourself.", timeout=15_000
    )
    expect(page.locator("#discover-progress")).to_be_hidden()
    expect(page.get_by_label("Server address")).to_have_value("")
    assert problems == []
