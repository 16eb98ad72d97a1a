"""The folder tree on a phone (390x844) folds away behind a "Folders" button (issue 17).

On the list and the message view the tree is hidden at first, so the page's own heading and
the subjects get the screen; the button (aria-expanded, aria-controls) unfolds it in place and
folds it again. It stays open while the live updates (static/js/live.js) replace the tree with
new counts and while the reader opens a message; choosing a folder folds it away. Open or not,
nothing scrolls sideways. On a laptop (1280x800) the tree is always shown and the button is
not. Screenshots: /tmp/tributary-phone-folders-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from service.config import Settings
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.usecases.users import add_user
from tests.fixtures.browser import run_aside, script_errors, sign_in, store_message
from tests.mail_samples import sample

pytestmark = [pytest.mark.browser]

EMAIL = "pia@example.test"
PASSWORD = "phone in one hand"
WAIT_MS = 15_000  # live updates poll every 3 s


async def _seed(settings: Settings) -> int:
    db = Database(settings)
    try:
        user = await add_user(db=db, email=EMAIL, password=PASSWORD, display_name="Pia Phone")
        async with db.write() as session:
            inbox = await folder_by_path(session, user.id, "Inbox")
            await folder_by_path(session, user.id, "Receipts/2026")
            assert inbox.id is not None
            await deliver(session, user_id=user.id, folder_id=inbox.id, raw=sample("Ferry times for Saturday"))
            await deliver(session, user_id=user.id, folder_id=inbox.id, raw=sample("Your parcel is on its way"))
        return user.id
    finally:
        await db.dispose()


def _open(browser: Browser, live_server: str, width: int, height: int) -> tuple[Page, list[str]]:
    context = browser.new_context(base_url=live_server, viewport={"width": width, "height": height})
    page = context.new_page()
    problems = script_errors(page)
    sign_in(page, EMAIL, PASSWORD)
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    page.wait_for_load_state()  # the deferred scripts have run
    return page, problems


def _fits(page: Page) -> None:
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"the page is {scroll} px wide in a {inner} px window"


@pytest.fixture
def user_id(settings: Settings) -> int:
    return run_aside(_seed(settings))


@pytest.fixture
def phone(browser: Browser, live_server: str, user_id: int) -> Iterator[tuple[Page, list[str]]]:
    page, problems = _open(browser, live_server, 390, 844)
    try:
        yield page, problems
    finally:
        page.context.close()


def test_the_tree_unfolds_in_place_stays_open_through_live_updates_and_folds_when_a_folder_is_chosen(
    phone: tuple[Page, list[str]], settings: Settings, user_id: int
) -> None:
    page, problems = phone
    tree = page.get_by_role("navigation", name="Folders")
    button = page.get_by_role("button", name="Folders")
    expect(tree).to_be_hidden()
    expect(button).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "false")
    controlled = button.get_attribute("aria-controls")
    assert controlled
    assert page.locator(f"#{controlled}").locator("nav.folders").count() == 1, "aria-controls names the tree"
    expect(page.get_by_role("link", name="Ferry times for Saturday")).to_be_in_viewport()
    _fits(page)

    button.click()
    expect(tree).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "true")
    expect(tree.get_by_role("link", name="2026")).to_be_visible()
    _fits(page)
    page.screenshot(path="/tmp/tributary-phone-folders-open.png", full_page=True)

    # New mail elsewhere: live.js swaps in a fresh tree with the count; it stays unfolded.
    page.evaluate("window.notReloaded = true")
    run_aside(store_message(settings, user_id, "Receipt for your ferry ticket", "Receipts/2026"))
    expect(tree.get_by_role("link", name="2026").locator(".count")).to_have_text("1 unread", timeout=WAIT_MS)
    expect(tree).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "true")

    # Reading a message keeps it unfolded; the message's heading is still on the first screen.
    page.get_by_role("link", name="Your parcel is on its way").click()
    expect(page.get_by_role("heading", name="Your parcel is on its way", level=1)).to_be_visible()
    expect(tree).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "true")
    _fits(page)

    # Folding it again, then choosing a folder from it: that folder's list, the tree folded away.
    button.click()
    expect(tree).to_be_hidden()
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_role("heading", name="Your parcel is on its way", level=1)).to_be_in_viewport()
    button.click()
    tree.get_by_role("link", name="2026").click()
    expect(page.get_by_role("heading", name="2026")).to_be_in_viewport()
    expect(tree).to_be_hidden()
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_role("link", name="Receipt for your ferry ticket")).to_be_visible()
    assert page.evaluate("window.notReloaded === true"), "the page was reloaded instead of updated"
    page.screenshot(path="/tmp/tributary-phone-folders-folded.png", full_page=True)
    assert problems == []


def test_the_message_view_opens_with_the_tree_folded(phone: tuple[Page, list[str]]) -> None:
    page, problems = phone
    page.get_by_role("link", name="Ferry times for Saturday").click()
    expect(page.get_by_role("heading", name="Ferry times for Saturday", level=1)).to_be_in_viewport()
    page.reload()  # a message opened directly (a bookmark, a link from elsewhere)
    expect(page.get_by_role("heading", name="Ferry times for Saturday", level=1)).to_be_in_viewport()
    expect(page.get_by_role("navigation", name="Folders")).to_be_hidden()
    expect(page.get_by_role("button", name="Folders")).to_be_visible()
    _fits(page)
    assert problems == []


def test_a_laptop_always_shows_the_tree_and_no_button(browser: Browser, live_server: str, user_id: int) -> None:
    page, problems = _open(browser, live_server, 1280, 800)
    try:
        expect(page.get_by_role("navigation", name="Folders")).to_be_visible()
        expect(page.get_by_role("button", name="Folders")).to_have_count(0)  # hidden: not in the page's roles
        page.get_by_role("link", name="Ferry times for Saturday").click()
        expect(page.get_by_role("navigation", name="Folders")).to_be_visible()
        assert problems == []
    finally:
        page.context.close()
