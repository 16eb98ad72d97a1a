"""What to import on the retrieval task form, in Chromium (issue 18): after Test Connection the form
lists the remote folders of the Dovecot mailbox with their message counts (non-ASCII names too),
the user unticks one and picks "Only messages from now on", and the saved task says so on Edit."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from service.config import Settings
from tests.fixtures.browser import create_administrator
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.mail_samples import sample
from tests.test_browser_oauth import BUTTON, EMAIL, PASSWORD, Site, site  # noqa: F401 (the app with provider "local")

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]


@pytest.fixture
def settings(settings: Settings, dovecot: DovecotServer) -> Settings:
    """The test's settings, trusting the Dovecot fixture's self-signed certificate."""
    return settings.model_copy(update={"extra_ca_file": dovecot.cert_pem_path})


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, {"width": 390, "height": 844}])
def test_test_connection_lists_the_folders_to_tick(
    settings: Settings,
    live_server: str,
    browser: Browser,
    dovecot: DovecotServer,
    mail_user: MailUser,
    viewport: dict[str, int],
) -> None:
    for folder, count in (("INBOX", 2), ("Entwürfe", 1), ("Спам", 3)):
        for n in range(count):
            dovecot.deliver(mail_user.email, sample(f"{folder} {n}"), folder=folder)
    context = browser.new_context(base_url=live_server, viewport=viewport)  # type: ignore[arg-type]
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    create_administrator(page, EMAIL, PASSWORD)
    page.goto("/settings/retrieval/new")

    expect(page.get_by_label("All messages")).to_be_checked()
    page.get_by_label("Only messages from now on").check()
    page.get_by_label("Name", exact=True).fill("Far away")
    page.get_by_label("Server address").fill("127.0.0.1")
    page.get_by_label("Port", exact=True).fill(str(dovecot.imaps_port))
    page.get_by_label("Username").fill(mail_user.email)
    page.get_by_label("Password", exact=True).fill(mail_user.password)
    page.get_by_label("Manual", exact=True).check()
    page.get_by_role("button", name="Test Connection").click()

    folders = page.get_by_role("group", name="Folders to import")
    expect(folders).to_be_visible()
    expect(folders.get_by_label(re.compile(r"^Entwürfe \(1 message\)$"))).to_be_checked()
    expect(folders.get_by_label(re.compile(r"^INBOX \(2 messages\)$"))).to_be_checked()
    spam = folders.get_by_label(re.compile(r"^Спам \(3 messages\)$"))
    expect(spam).to_be_checked()
    expect(folders.get_by_label("Only these folders")).not_to_be_checked()
    spam.uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/settings/connectivity#task-\d+$"))

    row = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Far away"))
    row.get_by_role("button", name="Edit").click()
    expect(page.get_by_label("Only messages from now on")).to_be_checked()
    expect(page.get_by_label("Exclude folders")).to_have_value("Спам")
    expect(page.get_by_label("Include folders")).to_have_value("")
    assert problems == []
    context.close()


def test_provider_sign_in_keeps_what_to_import(site: Site, browser: Browser) -> None:  # noqa: F811 (the fixture)
    """The provider buttons are a form of their own: their submit carries the task form's choices."""
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    create_administrator(page, EMAIL, PASSWORD)
    page.goto("/settings/retrieval/new")
    page.get_by_label("Only messages from now on").check()
    page.get_by_label("Exclude folders").fill("Spam*\nTrash")
    page.get_by_role("button", name=BUTTON).first.click()
    page.wait_for_url(re.compile(r".*/authorize\?.*"))

    page.goto("/settings/connectivity")
    row = page.locator(".fact").filter(has_text="What to import")
    expect(row).to_contain_text("Only messages from now on · Not: Spam*, Trash")
    assert problems == []
    context.close()
