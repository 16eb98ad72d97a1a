"""The search page while the user's mail still waits for the index, in a real browser.

Bulk retrieval stores messages first and queues them for the full-text index
(service.persistence.search_backlog); a search indexes at most CATCH_UP of its searcher's
queue before it runs (service.usecases.search) and the page says how many still wait:
"Still indexing N of your messages for search: ..." (web/templates/mail/search.html). Here
CATCH_UP is 2 and twelve messages wait, so each search leaves some behind; the scheduler's
own indexing job is held off for the test (its first tick would otherwise drain the queue
within seconds). The line must show at a laptop's size and at a phone's (390x844) without
making the page wider than the phone; once the queue is drained, a new search finds all
twelve and says nothing about indexing. SQLite and PostgreSQL.
Screenshots: /tmp/tributary-search-indexing-<width>.png.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from service import scheduler
from service.config import Settings
from service.persistence import search_backlog
from service.persistence.database import Database
from tests.fixtures.browser import page_errors, run_aside, sign_in
from tests.stored_bodies import user_with_inbox
from tests.test_search import make
from tests.test_search_backlog import queue

pytestmark = [pytest.mark.browser]

EMAIL = "reader@example.test"
PASSWORD = "long enough"  # user_with_inbox's
QUEUED = 12
CATCH_UP = 2
PHONE = ViewportSize(width=390, height=844)
LAPTOP = ViewportSize(width=1280, height=800)
SCREENSHOT = "/tmp/tributary-search-indexing-{width}.png"


@pytest.fixture(autouse=True)
def small_catch_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A search catches up CATCH_UP messages; the background job does not tick during the test.
    Autouse, so it is in place before `live_server` starts the app (and its scheduler)."""
    monkeypatch.setattr(search_backlog, "CATCH_UP", CATCH_UP)
    monkeypatch.setattr(scheduler, "SEARCH_INDEX_INTERVAL_SECONDS", 3600)


async def _seed(settings: Settings) -> int:
    """The reader, with QUEUED messages about kayaks stored and queued as bulk retrieval does."""
    db = Database(settings)
    try:
        user_id, inbox_id = await user_with_inbox(db, EMAIL)
        raws = [
            make(f"Kayak trip {n}", date=f"Tue, 05 Mar 2024 10:{n:02}:00 +0000", body="paddle") for n in range(QUEUED)
        ]
        await queue(db, user_id, inbox_id, *raws)
        return user_id
    finally:
        await db.dispose()


async def _pending(settings: Settings, user_id: int) -> int:
    db = Database(settings)
    try:
        return await search_backlog.pending(db, user_id=user_id)
    finally:
        await db.dispose()


async def _drain(settings: Settings) -> int:
    db = Database(settings)
    try:
        return await search_backlog.drain(db)
    finally:
        await db.dispose()


def _signed_in(browser: Browser, live_server: str, viewport: ViewportSize) -> tuple[BrowserContext, Page, list[str]]:
    """A new browser window of `viewport`'s size with the reader signed in; its page errors."""
    context = browser.new_context(base_url=live_server, viewport=viewport)
    page = context.new_page()
    errors = page_errors(page)
    sign_in(page, EMAIL, PASSWORD)
    expect(page).to_have_url(f"{live_server}/")
    return context, page, errors


def _search(page: Page, live_server: str, query: str) -> None:
    page.get_by_role("searchbox", name="Search mail").fill(query)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(f"{live_server}/mail/search?q={query}")))


def test_search_says_how_many_messages_still_wait_for_the_index(
    live_server: str, browser: Browser, settings: Settings
) -> None:
    user_id = run_aside(_seed(settings))
    assert run_aside(_pending(settings, user_id)) == QUEUED
    problems: list[str] = []
    waiting = QUEUED
    for viewport in (LAPTOP, PHONE):
        context, page, errors = _signed_in(browser, live_server, viewport)
        page.goto("/mail/search")
        _search(page, live_server, "paddle")
        waiting -= CATCH_UP
        indexed = QUEUED - waiting
        status = page.get_by_role("status").filter(has_text="Still indexing")
        expect(status).to_have_text(
            f"Still indexing {waiting} of your messages for search: search again in a moment to find them all."
        )
        expect(status).to_be_visible()
        status.scroll_into_view_if_needed()
        expect(status).to_be_in_viewport()
        expect(page.locator("tr.message-row")).to_have_count(indexed)
        expect(page.get_by_role("status").filter(has_text="found")).to_have_text(f"{indexed} messages found")
        page.screenshot(path=SCREENSHOT.format(width=viewport["width"]), full_page=True)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if scroll > inner:
            problems.append(f"{viewport['width']} wide: the page is {scroll} px wide")
        box = status.bounding_box()
        assert box is not None
        if box["x"] < 0 or box["x"] + box["width"] > viewport["width"]:
            problems.append(f"{viewport['width']} wide: the status line spans {box['x']}..{box['x'] + box['width']}")
        problems += errors
        context.close()
    assert problems == []
    assert run_aside(_pending(settings, user_id)) == waiting

    assert run_aside(_drain(settings)) == waiting
    context, page, errors = _signed_in(browser, live_server, PHONE)
    page.goto("/mail/search?q=paddle")
    expect(page.get_by_role("status").filter(has_text="found")).to_have_text(f"{QUEUED} messages found")
    expect(page.locator("tr.message-row")).to_have_count(QUEUED)
    for n in range(QUEUED):
        expect(page.get_by_role("link", name=f"Kayak trip {n}", exact=True)).to_be_visible()
    expect(page.get_by_text("Still indexing")).to_have_count(0)
    assert errors == []
    context.close()
