"""Keyboard shortcuts on the mail pages in Chromium (issue 17; static/js/keys.js).

j/k move a visible selection through the list, Enter opens the selected message,
u goes back to the list (the same message selected again), c opens compose, /
focuses the search box (and nothing happens while typing in it), ? shows the
list of shortcuts and Escape closes it, r/a/f open a reply, reply all or forward
to the open message, e archives (into "Archive", made on first use), # moves to
Trash and, in the Trash, deletes for good. A list swapped in by the live updates
keeps the selection. No script error and no CSP violation anywhere.
Screenshots: /tmp/tributary-keys-*.png.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from service.config import Settings
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.usecases.users import add_user
from tests.fixtures.browser import script_errors, sign_in

pytestmark = [pytest.mark.browser]

EMAIL = "kim@example.test"
PASSWORD = "keys all the way down"
SUBJECTS = ["Lunch on Friday", "Budget review", "Trip photos", "Server upgrade", "Book club"]  # newest first
WAIT_MS = 15_000  # live updates poll every 3 s
SELECTED = re.compile(r"\bis-cursor\b")
T = TypeVar("T")


@dataclass(frozen=True)
class Seeded:
    user_id: int
    message_ids: dict[str, int]


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Database work from another thread: Playwright's sync API owns this thread's event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _message(subject: str, hours_ago: int) -> bytes:
    when = format_datetime(datetime.now(UTC) - timedelta(hours=hours_ago))
    return (
        f"From: Pat Sender <pat@example.test>\r\nTo: {EMAIL}\r\nSubject: {subject}\r\nDate: {when}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}.{hours_ago}@example.test>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\nabout it.\r\n"
    ).encode()


async def _seed(settings: Settings) -> Seeded:
    db = Database(settings)
    try:
        user = await add_user(db=db, email=EMAIL, password=PASSWORD, display_name="Kim Keys")
        ids: dict[str, int] = {}
        async with db.write() as session:
            inbox = await folder_by_path(session, user.id, "Inbox")
            assert inbox.id is not None
            for n, subject in enumerate(SUBJECTS):
                stored = await deliver(session, user_id=user.id, folder_id=inbox.id, raw=_message(subject, n + 1))
                assert stored.id is not None
                ids[subject] = stored.id
        return Seeded(user_id=user.id, message_ids=ids)
    finally:
        await db.dispose()


async def _deliver(settings: Settings, user_id: int, subject: str) -> None:
    db = Database(settings)
    try:
        async with db.write() as session:
            inbox = await folder_by_path(session, user_id, "Inbox")
            assert inbox.id is not None
            await deliver(session, user_id=user_id, folder_id=inbox.id, raw=_message(subject, 0))
    finally:
        await db.dispose()


@pytest.fixture
def seeded(settings: Settings) -> Seeded:
    return _run(_seed(settings))


@pytest.fixture
def page(browser: Browser, live_server: str, seeded: Seeded) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems = script_errors(page)
    sign_in(page, EMAIL, PASSWORD)
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    page.wait_for_load_state()  # the deferred scripts have run: keys are listened to
    try:
        yield page
    finally:
        context.close()
    assert problems == [], "script errors or CSP violations"


def _rows(page: Page) -> Locator:
    return page.locator("tr.message-row")


def _row(page: Page, subject: str) -> Locator:
    return _rows(page).filter(has=page.get_by_role("link", name=subject, exact=True))


def _background(row: Locator) -> str:
    return str(row.locator("td.col-from").evaluate("cell => getComputedStyle(cell).backgroundColor"))


def test_j_and_k_move_a_visible_selection_enter_opens_and_u_goes_back(page: Page, seeded: Seeded) -> None:
    rows = _rows(page)
    expect(rows).to_have_count(len(SUBJECTS))
    plain = _background(rows.nth(0))
    page.keyboard.press("j")
    expect(rows.nth(0)).to_have_class(SELECTED)
    expect(rows.nth(0).get_by_role("link", name=SUBJECTS[0])).to_be_focused()
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    expect(rows.nth(1)).to_have_class(SELECTED)
    expect(rows.nth(1).get_by_role("link", name=SUBJECTS[1])).to_be_focused()
    expect(page.locator("tr.message-row.is-cursor")).to_have_count(1)
    assert _background(rows.nth(1)) != plain, "the selected row looks like the others"
    assert _background(rows.nth(0)) == plain
    page.screenshot(path="/tmp/tributary-keys-selection.png")

    page.keyboard.press("k")
    page.keyboard.press("k")  # stays on the first
    expect(rows.nth(0)).to_have_class(SELECTED)
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=SUBJECTS[1], level=1)).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/mail/messages/{seeded.message_ids[SUBJECTS[1]]}$"))

    page.keyboard.press("u")
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    # The message just read is selected again (generous wait: a loaded machine delays the swap's scripts).
    expect(_row(page, SUBJECTS[1])).to_have_class(SELECTED, timeout=WAIT_MS)
    page.keyboard.press("j")
    expect(_row(page, SUBJECTS[2])).to_have_class(SELECTED)


def test_slash_focuses_search_and_typing_there_is_not_a_shortcut(page: Page) -> None:
    search = page.get_by_role("search").get_by_role("searchbox", name="Search mail")
    expect(search).not_to_be_focused()
    page.keyboard.press("/")
    expect(search).to_be_focused()
    expect(search).to_have_value("")  # the "/" was not typed
    page.keyboard.type("jkc?#Trip")
    expect(search).to_have_value("jkc?#Trip")
    expect(page.locator("tr.message-row.is-cursor")).to_have_count(0)
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/$"))
    search.fill("Trip")
    search.press("Enter")
    expect(page).to_have_url(re.compile(r"/mail/search\?q=Trip$"))
    expect(page.get_by_role("link", name="Trip photos")).to_be_visible()
    expect(page.get_by_role("link", name="Lunch on Friday")).to_have_count(0)


def test_question_mark_lists_the_shortcuts_and_escape_closes_them(page: Page) -> None:
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_hidden()
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    for words in ("Compose", "Search mail", "Reply all", "Forward", "Archive", "Delete", "Back to the list"):
        expect(dialog).to_contain_text(words)
    page.screenshot(path="/tmp/tributary-keys-dialog.png")
    page.keyboard.press("j")  # the list behind the dialog does not move
    expect(page.locator("tr.message-row.is-cursor")).to_have_count(0)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Keyboard shortcuts").click()  # the bar's button shows it too
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


def test_c_composes_and_r_a_f_answer_the_open_message(page: Page, seeded: Seeded) -> None:
    page.keyboard.press("c")
    expect(page).to_have_url(re.compile(r"/compose$"))
    expect(page.get_by_label("Subject")).to_have_value("")

    message_id = seeded.message_ids["Budget review"]
    for key, query, subject in (
        ("r", "reply", "Re: Budget review"),
        ("a", "reply_all", "Re: Budget review"),
        ("f", "forward", "Fwd: Budget review"),
    ):
        page.goto(f"/mail/messages/{message_id}")  # waits for the load event: the scripts have run
        page.keyboard.press(key)
        expect(page).to_have_url(re.compile(rf"/compose\?{query}={message_id}$"))
        expect(page.get_by_label("Subject")).to_have_value(subject)


def test_hash_deletes_to_trash_then_for_good_and_e_archives(page: Page, seeded: Seeded) -> None:
    rows = _rows(page)
    page.keyboard.press("j")
    page.keyboard.press("#")
    expect(page.get_by_role("status")).to_have_text("1 message moved to Trash.")
    expect(page.get_by_role("link", name=SUBJECTS[0])).to_have_count(0)
    expect(rows).to_have_count(len(SUBJECTS) - 1)
    expect(_row(page, SUBJECTS[1])).to_have_class(SELECTED)  # the selection moved on to the next one

    page.keyboard.press("e")
    expect(page.get_by_role("status")).to_have_text("1 message moved to Archive.")
    expect(page.get_by_role("link", name=SUBJECTS[1])).to_have_count(0)
    expect(_row(page, SUBJECTS[2])).to_have_class(SELECTED)
    folders = page.get_by_role("navigation", name="Folders")
    folders.get_by_role("link", name="Archive").click()  # made by the first archiving
    expect(page.get_by_role("heading", name="Archive")).to_be_visible()
    expect(page.get_by_role("link", name=SUBJECTS[1])).to_be_visible()
    expect(page.get_by_role("button", name="Archive")).to_have_count(0)  # nothing to archive into itself

    # On an open message: # moves it to Trash and goes back to its list.
    folders.get_by_role("link", name="Inbox").click()
    page.get_by_role("link", name=SUBJECTS[3]).click()
    expect(page.get_by_role("heading", name=SUBJECTS[3], level=1)).to_be_visible()
    page.keyboard.press("#")
    expect(page.get_by_role("status")).to_have_text("1 message moved to Trash.")
    expect(page.get_by_role("link", name=SUBJECTS[3])).to_have_count(0)

    # In the Trash, # deletes for good.
    folders.get_by_role("link", name="Trash").click()
    expect(page.get_by_role("heading", name="Trash")).to_be_visible()
    expect(rows).to_have_count(2)
    page.keyboard.press("j")
    page.keyboard.press("#")
    expect(page.get_by_role("status")).to_have_text("1 message deleted for good.")
    expect(rows).to_have_count(1)


def test_ticked_messages_go_before_the_selection(page: Page) -> None:
    page.keyboard.press("j")
    page.get_by_label(f"Select “{SUBJECTS[3]}”").check()
    page.get_by_label(f"Select “{SUBJECTS[4]}”").check()
    page.keyboard.press("#")
    expect(page.get_by_role("status")).to_have_text("2 messages moved to Trash.")
    expect(page.get_by_role("link", name=SUBJECTS[0])).to_be_visible()


def test_the_selection_survives_a_live_update_of_the_list(page: Page, settings: Settings, seeded: Seeded) -> None:
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(_row(page, SUBJECTS[1])).to_have_class(SELECTED)
    page.evaluate("window.notReloaded = true")
    _run(_deliver(settings, seeded.user_id, "Arrived while you looked"))
    expect(page.get_by_role("link", name="Arrived while you looked")).to_be_visible(timeout=WAIT_MS)
    expect(_rows(page)).to_have_count(len(SUBJECTS) + 1)
    expect(_row(page, SUBJECTS[1])).to_have_class(SELECTED)
    expect(page.locator("tr.message-row.is-cursor")).to_have_count(1)
    page.keyboard.press("j")
    expect(_row(page, SUBJECTS[2])).to_have_class(SELECTED)
    assert page.evaluate("window.notReloaded === true")
