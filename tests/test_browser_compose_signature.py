"""The compose page shows, read-only under the body, the signature the chosen Send From address
adds, and follows Send From in a real browser (no inline script: static/js/compose-draft.js);
sent, the message carries that signature after a single "-- " line."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from service.config import Settings
from tests.fixtures.browser import add_sender, run_aside, script_errors, sign_in
from tests.fixtures.smtp import start_smtp_server

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]

EMAIL = "ada@example.test"
PASSWORD = "correct horse battery staple"
ACCOUNTS = [  # address, name, default, signature (the work one written with its own separator)
    ("ada@work.test", "Ada at Work", True, "--\nAda Lovelace\nAnalytical Engines Ltd"),
    ("ada@home.test", "Ada Home", False, "Ada"),
    ("ada@plain.test", "Ada Plain", False, ""),
]


def test_the_signature_preview_follows_send_from_and_the_sent_message_has_one_separator(
    live_server: str, browser: Browser, settings: Settings, tmp_path: Path
) -> None:
    server = start_smtp_server(tmp_path / "smtp", "plain", require_auth=False)
    try:
        run_aside(add_sender(settings, server, EMAIL, PASSWORD, ACCOUNTS))
        context = browser.new_context(base_url=live_server)
        page = context.new_page()
        problems = script_errors(page)

        sign_in(page, EMAIL, PASSWORD)
        page.goto("/compose")

        preview = page.locator("#compose-signature-field pre:visible")
        expect(preview).to_be_visible()
        expect(preview).to_have_text("-- \nAda Lovelace\nAnalytical Engines Ltd")
        send_from = page.get_by_label("Send From")
        send_from.select_option(label="Ada Home <ada@home.test>")
        expect(preview).to_have_text("-- \nAda")
        send_from.select_option(label="Ada Plain <ada@plain.test>")
        expect(page.locator("#compose-signature-field")).to_be_hidden()
        send_from.select_option(label="Ada at Work <ada@work.test>")
        expect(preview).to_have_text("-- \nAda Lovelace\nAnalytical Engines Ltd")

        page.get_by_label("To", exact=True).fill("bob@example.test")
        page.get_by_label("Subject").fill("Signed")
        page.get_by_label("Message body").fill("Hello Bob")
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("heading", name="Message sent")).to_be_visible()
        (received,) = server.received
        message = message_from_bytes(received.data, policy=policy.default)
        body = message.get_body(("plain",))
        assert body is not None
        assert body.get_content().replace("\r\n", "\n") == "Hello Bob\n\n-- \nAda Lovelace\nAnalytical Engines Ltd\n"
        assert problems == []
        context.close()
    finally:
        server.stop()
