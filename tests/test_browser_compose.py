"""Composing in a real browser: sign in, choose an address in "Send From", write, attach a file,
send through an aiosmtpd server, read the result; then the Outbox and Administration pages."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from service.config import Settings
from tests.fixtures.browser import add_sender, page_errors, run_aside, sign_in
from tests.fixtures.smtp import start_smtp_server

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]

EMAIL = "ada@example.test"
PASSWORD = "correct horse battery staple"
SCREENSHOTS = Path("/tmp")


# two SMTP accounts on the test server (address, name, default, signature); the second is the default
ACCOUNTS = [("ada@work.test", "Ada at Work", False, ""), ("ada@home.test", "Ada Home", True, "")]


def test_compose_and_send_choosing_the_account_in_send_from(
    live_server: str, browser: Browser, settings: Settings, tmp_path: Path
) -> None:
    server = start_smtp_server(tmp_path / "smtp", "plain", require_auth=False)
    try:
        run_aside(add_sender(settings, server, EMAIL, PASSWORD, ACCOUNTS))
        attachment = tmp_path / "Übersicht März.txt"
        attachment.write_text("Zahlen und Fakten\n", encoding="utf-8")
        context = browser.new_context(base_url=live_server, viewport={"width": 1100, "height": 900})
        page = context.new_page()
        problems = page_errors(page)  # CSP violations, script errors and failed requests show up here

        sign_in(page, EMAIL, PASSWORD)
        expect(page).to_have_url(f"{live_server}/")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Compose").click()
        expect(page).to_have_url(f"{live_server}/compose")

        send_from = page.get_by_label("Send From")
        expect(send_from).to_have_value(re.compile(r"\d+"))
        assert send_from.locator("option:checked").inner_text() == "Ada Home <ada@home.test>"
        send_from.select_option(label="Ada at Work <ada@work.test>")
        page.get_by_label("To", exact=True).fill("Bob <bob@example.test>")
        page.get_by_label("Bcc", exact=True).fill("sam@example.test")
        page.get_by_label("Subject").fill("Grüße aus dem Browser")
        page.get_by_label("Message body").fill("Hallo Bob,\n\nanbei die Übersicht.\n")
        page.get_by_label("Attachments").set_input_files(str(attachment))
        page.screenshot(path=str(SCREENSHOTS / "tributary-compose.png"), full_page=True)

        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("heading", name="Message sent")).to_be_visible()
        expect(page.get_by_role("status")).to_contain_text("Sent to bob@example.test, sam@example.test.")
        expect(page).to_have_url(f"{live_server}/compose")  # htmx swapped the result in place
        page.screenshot(path=str(SCREENSHOTS / "tributary-compose-sent.png"), full_page=True)

        (received,) = server.received
        message = message_from_bytes(received.data, policy=policy.default)
        assert message["From"] == "Ada at Work <ada@work.test>"
        assert received.rcpt_tos == ["bob@example.test", "sam@example.test"]
        assert b"sam@example.test" not in received.data
        [attached] = list(message.iter_attachments())
        assert attached.get_filename() == "Übersicht März.txt"

        page.get_by_role("link", name="Outbox").first.click()
        expect(page.get_by_text("Nothing is waiting in the Outbox.")).to_be_visible()
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Administration").click()
        expect(page.get_by_role("switch", name="SMTP Accounts")).to_be_checked()
        expect(page.get_by_label("IMAP/POP Retrieval")).to_be_checked()
        # Screenshots leave empty style attributes behind, which htmx's settling would copy (a CSP
        # violation): so the page is taken after the swap.
        page.get_by_label("SMTP Accounts").uncheck()
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_have_text("Saved the settings of example.test.")
        expect(page.get_by_role("switch", name="SMTP Accounts")).not_to_be_checked()
        page.screenshot(path=str(SCREENSHOTS / "tributary-admin.png"), full_page=True)
        page.goto("/compose")
        expect(page.get_by_role("note")).to_contain_text("Your administrator turned off SMTP accounts for example.test")
        page.screenshot(path=str(SCREENSHOTS / "tributary-compose-disabled.png"), full_page=True)

        assert problems == []
        context.close()
    finally:
        server.stop()
