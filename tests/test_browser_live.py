"""The open mail page in Chromium follows new mail without a reload (issue 16).

Mail is delivered from the test through the mailstore, on its own database
connection, the way a worker process stores what IMAP IDLE announced; the page
learns of it only by asking /mail/pulse (static/js/live.js). Within a generous
wait the new subject appears in the list, the folder tree's unread counts and
the tab title's count go up, the reader's ticked box stays ticked, and the page
was never reloaded. On an open message only the tree and the title change.
Wide and phone-sized (390x844) viewports; screenshots /tmp/tributary-live-*.png.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from service.config import Settings
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.usecases.users import add_user
from tests.fixtures.browser import run_aside, store_message
from tests.mail_samples import sample

pytestmark = pytest.mark.browser

EMAIL = "lena@example.test"
PASSWORD = "a long and live password"
WAIT_MS = 15_000  # the page polls every 3 s; anything within 15 s is "by itself"


async def _seed(settings: Settings) -> int:
    db = Database(settings)
    try:
        user = await add_user(db=db, email=EMAIL, password=PASSWORD, display_name="Lena Live")
        async with db.write() as session:
            inbox = await folder_by_path(session, user.id, "Inbox")
            await folder_by_path(session, user.id, "Lists")
            assert inbox.id is not None
            await deliver(session, user_id=user.id, folder_id=inbox.id, raw=sample("Yesterday's news"), seen=True)
            await deliver(session, user_id=user.id, folder_id=inbox.id, raw=sample("Still unread"))
        return user.id
    finally:
        await db.dispose()


def _folder_link(page: Page, name: str) -> Any:
    return page.get_by_role("navigation", name="Folders").get_by_role("link", name=name)


@pytest.mark.parametrize("viewport", [(1280, 860), (390, 844)], ids=["wide", "phone"])
def test_the_mail_page_shows_new_mail_and_the_new_unread_count_without_a_reload(
    live_server: str, browser: Browser, settings: Settings, viewport: tuple[int, int]
) -> None:
    user_id = run_aside(_seed(settings))
    width, height = viewport
    context = browser.new_context(base_url=live_server, viewport={"width": width, "height": height})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    pulses: list[int] = []
    page.on("response", lambda r: pulses.append(r.status) if "/mail/pulse" in r.url else None)

    page.goto("/login")
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    if width < 768:  # a phone folds the folder tree away behind the "Folders" button (issue 17)
        page.get_by_role("button", name="Folders").click()
    expect(page).to_have_title("(1) Inbox · Tributary")
    expect(_folder_link(page, "Inbox")).to_contain_text("1")
    expect(page.locator("tr.message-row")).to_have_count(2)
    page.evaluate("window.notReloaded = true")
    page.get_by_label("Select “Still unread”").check()
    # The page asks, and hears "nothing changed" (204) while nothing has.
    page.wait_for_event("response", lambda r: "/mail/pulse" in r.url and r.status == 204, timeout=WAIT_MS)

    # A message into the Inbox: the list, the tree and the title follow.
    run_aside(store_message(settings, user_id, "Pushed within seconds"))
    expect(page.get_by_role("link", name="Pushed within seconds")).to_be_visible(timeout=WAIT_MS)
    expect(_folder_link(page, "Inbox")).to_contain_text("2", timeout=WAIT_MS)
    expect(page).to_have_title("(2) Inbox · Tributary", timeout=WAIT_MS)
    expect(page.locator("tr.message-row")).to_have_count(3)
    expect(page.get_by_role("heading", name="Inbox")).to_contain_text("Inbox")
    expect(page.locator(".list-counts")).to_have_text("3 messages, 2 unread")
    expect(page.get_by_label("Select “Still unread”")).to_be_checked()  # the reader's selection stays
    expect(page.get_by_label("Select “Pushed within seconds”")).not_to_be_checked()
    page.screenshot(path=f"/tmp/tributary-live-list-{width}.png", full_page=True)

    # A message into another folder: its count appears in the tree, the title counts it too.
    expect(_folder_link(page, "Lists").locator(".count")).to_have_count(0)
    page.evaluate("document.querySelector('.message-list').untouched = true")
    run_aside(store_message(settings, user_id, "Weekly digest", folder="Lists"))
    expect(_folder_link(page, "Lists").locator(".count")).to_have_text("1 unread", timeout=WAIT_MS)
    expect(page).to_have_title("(3) Inbox · Tributary", timeout=WAIT_MS)
    expect(page.get_by_role("link", name="Weekly digest")).to_have_count(0)  # not this folder's list
    assert page.evaluate("document.querySelector('.message-list').untouched === true"), "an unchanged list was replaced"

    # Reading a message: new mail updates the tree and the title, and the message stays open.
    page.get_by_role("link", name="Pushed within seconds").click()
    expect(page.get_by_role("heading", name="Pushed within seconds")).to_be_visible()
    expect(page).to_have_title("(2) Pushed within seconds · Tributary")
    message_url = page.url
    run_aside(store_message(settings, user_id, "While you were reading"))
    expect(_folder_link(page, "Inbox")).to_contain_text("2", timeout=WAIT_MS)
    expect(page).to_have_title("(3) Pushed within seconds · Tributary", timeout=WAIT_MS)
    expect(page.get_by_role("heading", name="Pushed within seconds")).to_be_visible()
    assert page.url == message_url
    page.screenshot(path=f"/tmp/tributary-live-message-{width}.png", full_page=True)

    # The refreshed tree's links still swap the layout in place (htmx processed them).
    _folder_link(page, "Inbox").click()
    expect(page.get_by_role("link", name="While you were reading")).to_be_visible()
    assert page.evaluate("window.notReloaded === true"), "the page was reloaded instead of updated"
    assert pulses.count(200) >= 3  # told of each change by the pulse, not by a reload
    assert problems == []
    context.close()
