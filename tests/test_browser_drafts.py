"""Drafts in a real browser: a half-written message survives following the Settings link from compose
(compose-draft.js saves it as the page is left), is found in Drafts and opened again with "Edit draft";
"Save draft" says "Draft saved" and keeps one draft. No script error or CSP violation on the way."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, FilePayload, Page, expect

from service.config import Settings
from service.domain.smtp_accounts import SmtpAccountInput
from service.domain.values import Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import smtp_accounts, users
from tests.fixtures.browser import page_errors
from tests.fixtures.smtp import start_smtp_server
from tests.test_browser_compose import EMAIL, PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]

WAIT_MS = 10_000  # a background save that completes after the page is gone (generous: real async work)


async def _seed(settings: Settings, port: int = 2) -> None:
    """A user with one SMTP account (on `port`: by default nothing listens, nothing is sent)."""
    db = Database(settings)
    try:
        user = await users.add_user(db=db, email=EMAIL, password=PASSWORD, display_name="Ada Lovelace")
        account = SmtpAccountInput(
            email_address="ada@home.test",
            host="127.0.0.1",
            port=port,
            security=Security.NONE,
            auth_required=False,
            display_name="Ada Home",
        )
        await smtp_accounts.add_smtp_account(
            db=db, secret_box=SecretBox.from_settings(settings), user_id=user.id, account=account
        )
    finally:
        await db.dispose()


def _sign_in(page: Page, live_server: str) -> None:
    page.goto("/login")
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/")


def _open_drafts(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mail").click()
    page.get_by_role("navigation", name="Folders").get_by_role("link", name=re.compile(r"^Drafts")).click()
    expect(page).to_have_title(re.compile(r"\bDrafts\b"))


def test_a_half_written_message_survives_a_trip_to_settings(
    live_server: str, browser: Browser, settings: Settings
) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _seed(settings)).result()
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems = page_errors(page)
    _sign_in(page, live_server)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Compose").click()
    page.get_by_label("To", exact=True).fill("bob@example.test")
    page.get_by_label("Subject").fill("Half written")
    page.get_by_label("Message body").fill("Dear Bob,\n\nthe numbers for March are")
    # Straight away, before any pause in typing: the save happens as the page is left.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page).to_have_url(re.compile(r"/settings/"))

    _open_drafts(page)
    row = page.get_by_role("link", name=re.compile("Half written"))
    expect(row).to_have_count(1, timeout=WAIT_MS)
    row.click()
    page.get_by_role("link", name="Edit draft").click()
    expect(page.get_by_role("heading", name="Edit draft")).to_be_visible()
    expect(page.get_by_label("Message body")).to_have_value(re.compile(r"the numbers for March are\s*$"))
    expect(page.get_by_label("To", exact=True)).to_have_value("bob@example.test")
    expect(page.get_by_label("Subject")).to_have_value("Half written")
    expect(page.get_by_label("Send From")).to_have_value(re.compile(r"\d+"))

    # Continued and saved with the button: "Draft saved", and still one draft, the newest text.
    page.get_by_label("Message body").fill("Dear Bob,\n\nthe numbers for March are good.")
    march: FilePayload = {"name": "march.csv", "mimeType": "text/csv", "buffer": b"month,total\nMarch,42\n"}
    page.get_by_label("Attachments", exact=True).set_input_files(files=[march])
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status")).to_have_text("Draft saved")
    expect(page.get_by_role("checkbox", name=re.compile("march.csv"))).to_be_checked()  # kept with the draft
    page.get_by_label("Message body").press("Control+End")
    page.get_by_label("Message body").press_sequentially(" More soon.")
    expect(page.get_by_role("status")).to_have_text("Draft saved", timeout=WAIT_MS)  # the pause autosave
    _open_drafts(page)
    expect(page.get_by_role("link", name=re.compile("Half written"))).to_have_count(1)
    page.get_by_role("link", name=re.compile("Half written")).click()
    page.get_by_role("link", name="Edit draft").click()
    expect(page.get_by_label("Message body")).to_have_value(re.compile(r"are good\. More soon\.\s*$"))
    expect(page.get_by_role("checkbox", name=re.compile("march.csv"))).to_be_checked()

    assert problems == []
    context.close()


def test_sending_an_autosaved_message_leaves_no_draft_behind(
    live_server: str, browser: Browser, settings: Settings, tmp_path: Path
) -> None:
    server = start_smtp_server(tmp_path / "smtp", "plain", require_auth=False)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, _seed(settings, server.port)).result()
        context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800})
        page = context.new_page()
        problems = page_errors(page)
        _sign_in(page, live_server)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Compose").click()
        page.get_by_label("To", exact=True).fill("bob@example.test")
        page.get_by_label("Subject").fill("Short note")
        page.get_by_label("Message body").fill("See you at noon.")
        expect(page.get_by_role("status")).to_have_text("Draft saved", timeout=WAIT_MS)  # the pause autosave
        page.get_by_label("Message body").press("Control+End")
        page.get_by_label("Message body").press_sequentially(" Bring the slides.")
        page.get_by_role("button", name="Send", exact=True).click()
        expect(page.get_by_role("heading", name="Message sent")).to_be_visible()
        [received] = server.received
        assert b"Bring the slides." in received.data

        _open_drafts(page)  # leaving the result page saves nothing
        expect(page.get_by_text("Short note")).to_have_count(0)
        page.reload()
        expect(page.get_by_text("Short note")).to_have_count(0)
        assert problems == []
        context.close()
    finally:
        server.stop()
