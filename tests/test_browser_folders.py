"""Settings, Folders in Chromium at 1280x800: a folder is created inside another, filled, renamed,
moved to the top and deleted (its mail goes to Trash, after the browser's confirm dialog), and
Empty Trash in the Trash's toolbar deletes that mail for good, asking first."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Browser, Dialog, expect

from service.config import Settings
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.usecases.users import find_user
from tests.fixtures.browser import create_administrator, script_errors
from tests.mail_samples import sample

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]

EMAIL = "folders@example.test"
PASSWORD = "correct horse battery staple"
SCREENSHOT = "/tmp/tributary-folders-{}.png"


async def _deliver(settings: Settings, path: str, *subjects: str) -> None:
    db = Database(settings)
    try:
        user = await find_user(db=db, email=EMAIL)
        async with db.write() as session:
            folder = await folder_by_path(session, user.id, path)
            assert folder.id is not None
            for subject in subjects:
                await deliver(session, user_id=user.id, folder_id=folder.id, raw=sample(subject))
    finally:
        await db.dispose()


def _deliver_now(settings: Settings, path: str, *subjects: str) -> None:
    # Playwright's sync API runs an event loop in this thread: store from another one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _deliver(settings, path, *subjects)).result()


def _accept(questions: list[str]) -> Callable[[Dialog], None]:
    def answer(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    return answer


def test_folders_are_managed_from_settings_and_the_trash_is_emptied(
    settings: Settings, live_server: str, browser: Browser
) -> None:
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems = script_errors(page)
    create_administrator(page, EMAIL, PASSWORD)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Folders").click()
    expect(page.get_by_role("heading", name="Folders", exact=True)).to_be_visible()
    expect(page.locator(".folder-name")).to_have_text(["Inbox", "Sent", "Drafts", "Trash", "Junk", "Outbox"])

    page.get_by_label("Name", exact=True).fill("Projects")
    page.get_by_role("button", name="Create folder").click()
    expect(page.get_by_role("status")).to_have_text("Created the folder Projects.")
    page.get_by_label("Name", exact=True).fill("Alpha")
    page.get_by_label("Inside").select_option(label="Projects")
    page.get_by_role("button", name="Create folder").click()
    expect(page.get_by_role("status")).to_have_text("Created the folder Projects/Alpha.")

    _deliver_now(settings, "Projects/Alpha", "Kick-off notes", "Budget draft")
    page.reload()
    alpha = page.locator("li", has=page.locator(".folder-name", has_text=re.compile("^Alpha$"))).last
    expect(alpha.locator(".folder-counts").first).to_have_text("2 messages, 2 unread")

    projects = page.locator("li", has=page.locator(".folder-name", has_text=re.compile("^Projects$"))).first
    projects.get_by_text("Change").first.click()
    projects.get_by_label("New name").first.fill("Clients")
    projects.get_by_role("button", name="Rename").first.click()
    expect(page.get_by_role("status")).to_have_text("Renamed the folder to Clients.")
    expect(page.locator(".folder-name")).to_have_text(
        ["Inbox", "Sent", "Drafts", "Trash", "Junk", "Outbox", "Clients", "Alpha"]
    )

    page.get_by_label("Folder", exact=True).select_option(label="Clients/Alpha")
    page.get_by_label("Into").select_option(label="Top level")
    page.get_by_role("button", name="Move", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Moved the folder Alpha to the top level.")
    page.screenshot(path=SCREENSHOT.format("tree"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    questions: list[str] = []
    page.on("dialog", _accept(questions))
    alpha = page.locator("li", has=page.locator(".folder-name", has_text=re.compile("^Alpha$"))).last
    alpha.get_by_text("Change").click()
    alpha.get_by_role("button", name="Delete folder").click()
    expect(page.get_by_role("status")).to_have_text("Deleted the folder Alpha; 2 messages moved to Trash.")
    assert questions == ["Delete the folder Alpha? Its messages go to Trash."]
    trash = page.locator("li", has=page.locator(".folder-name", has_text=re.compile("^Trash$"))).first
    expect(trash.locator(".folder-counts")).to_have_text("2 messages, 2 unread")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mail").click()
    page.get_by_role("link", name=re.compile("^Trash")).first.click()
    expect(page.get_by_role("heading", name="Trash")).to_be_visible()
    expect(page.get_by_role("link", name="Kick-off notes")).to_be_visible()
    page.get_by_role("button", name="Empty Trash").click()
    expect(page.get_by_text("2 messages deleted for good.")).to_be_visible()
    expect(page.get_by_text("This folder is empty.")).to_be_visible()
    assert questions[-1] == "Delete all 2 messages in Trash for good? This cannot be undone."
    page.screenshot(path=SCREENSHOT.format("trash"), full_page=True)
    assert problems == []
    context.close()
