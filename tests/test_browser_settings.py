"""Settings in a real browser: a POP3 retrieval task is added against the Dovecot fixture through
the New Retrieval Task form (its POP3 fields appear, SSL/TLS suggests port 995), Test Connection
shows its steps before saving, and Retrieve Messages Now brings the messages in."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from service.config import Settings
from tests.fixtures.browser import create_administrator, page_errors
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.mail_samples import sample

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]

EMAIL = "ada@example.test"
PASSWORD = "correct horse battery staple"
SCREENSHOTS = "/tmp/tributary-settings-{}.png"


@pytest.fixture
def settings(settings: Settings, dovecot: DovecotServer) -> Settings:
    """The test's settings, trusting the Dovecot fixture's self-signed certificate."""
    return settings.model_copy(update={"extra_ca_file": dovecot.cert_pem_path})


def test_a_pop3_task_is_added_tested_and_run_from_settings(
    settings: Settings, live_server: str, browser: Browser, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    dovecot.deliver(mail_user.email, sample("First from afar"))
    dovecot.deliver(mail_user.email, sample("Second from afar"))
    context = browser.new_context(base_url=live_server, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    problems = page_errors(page)
    create_administrator(page, EMAIL, PASSWORD)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="SMTP Accounts")).to_be_visible()
    expect(page.get_by_role("button", name="New SMTP Account")).to_be_visible()
    expect(page.get_by_role("heading", name="Email Retrieval")).to_be_visible()
    page.get_by_role("button", name="New Retrieval Task").click()
    expect(page.get_by_role("heading", name="New Retrieval Task")).to_be_visible()

    # IMAP first: its folder options show, the POP3 ones do not.
    expect(page.get_by_label("Add as subfolders")).to_be_visible()
    expect(page.get_by_label("Add as root level folders")).to_be_visible()
    expect(page.get_by_label("Enable APOP authentication")).to_be_hidden()
    port = page.get_by_label("Port", exact=True)
    expect(port).to_have_value("993")

    page.get_by_label("POP3", exact=True).check()
    for label in ["Enable APOP authentication", "Leave messages on server", "Delete from the server after (days)"]:
        expect(page.get_by_label(label)).to_be_visible()
    expect(page.get_by_label("Destination folder")).to_be_visible()
    expect(page.get_by_label("Add as subfolders")).to_be_hidden()
    expect(port).to_have_value("995")  # POP3 keeps SSL/TLS: its port
    page.get_by_label("Security").select_option(label="STARTTLS")
    expect(port).to_have_value("110")
    page.get_by_label("Security").select_option(label="SSL/TLS")
    expect(port).to_have_value("995")
    page.get_by_label("Leave messages on server").uncheck()
    expect(page.get_by_label("Delete from the server after (days)")).to_be_hidden()
    page.get_by_label("Leave messages on server").check()

    page.get_by_label("Name", exact=True).fill("Far away")
    page.get_by_label("Server address").fill("127.0.0.1")
    port.fill(str(dovecot.pop3s_port))
    page.get_by_label("Username").fill(mail_user.email)
    page.get_by_label("Password", exact=True).fill(mail_user.password)
    page.get_by_label("Manual", exact=True).check()

    page.get_by_role("button", name="Test Connection").click()
    steps = page.get_by_role("list", name="Test Connection steps")
    expect(page.get_by_text("Test Connection succeeded: every step passed.")).to_be_visible()
    expect(steps.get_by_role("listitem").filter(has_text="Sign in")).to_contain_text("passed")
    expect(steps.get_by_role("listitem").filter(has_text="Count messages")).to_contain_text("2 messages")
    expect(page.get_by_label("Password", exact=True)).to_have_value(mail_user.password)  # the form stayed
    page.screenshot(path=SCREENSHOTS.format("form"), full_page=True)

    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/settings/connectivity#task-\d+$"))
    expect(page.get_by_role("status").filter(has_text="Saved the retrieval task Far away.")).to_be_visible()
    row = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Far away"))
    expect(row.get_by_text("Not run yet")).to_be_visible()

    row.get_by_role("button", name="Retrieve Messages Now").click()
    row = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Far away"))
    expect(row.get_by_text(re.compile(r"^2 new messages in "))).to_be_visible()
    expect(row.get_by_text("Retrieving messages…")).to_be_hidden()
    expect(row.locator(".fact").filter(has_text="Messages imported")).to_contain_text("2")
    expect(row.get_by_text("Working", exact=True)).to_be_visible()
    page.screenshot(path=SCREENSHOTS.format("connectivity"), full_page=True)

    page.get_by_role("link", name="Logs").click()
    expect(page.get_by_role("cell", name=re.compile(r"^Imported 2 messages"))).to_be_visible()
    page.screenshot(path=SCREENSHOTS.format("logs"), full_page=True)
    page.get_by_label("Level").select_option("Error")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No log entries match these filters.")).to_be_visible()

    page.goto("/")
    expect(page.get_by_role("link", name="Inbox")).to_be_visible()
    assert problems == []
    context.close()
