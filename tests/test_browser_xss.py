"""The XSS corpus (tests/xss_corpus/) opened in the real mail page in Chromium: no dialog, no script
error or marker, and no request to any host but Tributary's.

One browser, one signed-in page: every corpus message is delivered to the reader's Inbox,
then opened in turn. Every request is intercepted; one for another host is recorded and
aborted. Patterns call alert() (a dialog is recorded and dismissed) or set window.name to
a marker (checked on the page and on every frame Playwright can reach).
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Dialog, Error, Route, expect

from service.config import Settings
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.usecases.users import add_user
from tests.test_xss_corpus import CASES, corpus_message

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]

EMAIL = "reader@example.test"
PASSWORD = "correct horse battery staple"
MARKER = "xss-marker"


async def _seed(settings: Settings) -> dict[str, int]:
    """The reader, with every corpus message in the Inbox; message id by corpus file name."""
    db = Database(settings)
    try:
        user = await add_user(db=db, email=EMAIL, password=PASSWORD, display_name="Rita Reader")
        ids: dict[str, int] = {}
        async with db.write() as session:
            inbox = await folder_by_path(session, user.id, "Inbox")
            assert inbox.id is not None
            for path in CASES:
                stored = await deliver(session, user_id=user.id, folder_id=inbox.id, raw=corpus_message(path))
                assert stored.id is not None
                ids[path.name] = stored.id
        return ids
    finally:
        await db.dispose()


def test_the_corpus_runs_nothing_and_reaches_no_other_host(
    live_server: str, browser: Browser, settings: Settings
) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        message_ids = pool.submit(asyncio.run, _seed(settings)).result()
    context = browser.new_context(base_url=live_server)
    remote: list[str] = []
    current = ["(sign-in)"]

    def intercept(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            remote.append(f"{current[0]}: {route.request.url}")
            route.abort()

    context.route("**/*", intercept)
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(f"{current[0]}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(f"{current[0]}: {error}"))
    markers: list[str] = []

    page.goto("/login")
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/")

    for name, message_id in message_ids.items():
        current[0] = name
        page.goto(f"/mail/messages/{message_id}", wait_until="load")
        expect(page.locator("iframe.message-frame")).to_have_count(1)
        page.wait_for_timeout(50)  # let a meta refresh or a late load show itself
        for frame in page.frames:
            try:
                if frame.evaluate("window.name") == MARKER:
                    markers.append(f"{name}: {frame.url}")
            except Error:
                pass  # a sandboxed frame with no script at all: nothing there can set the marker either
        assert page.url == f"{live_server}/mail/messages/{message_id}", f"{name} navigated the page away"

    assert dialogs == []
    assert markers == []
    assert script_errors == []
    assert remote == []

    # The control: the same watch does see a request once the reader asks for remote images.
    current[0] = "27-tracking-pixel-img.html, images shown"
    page.goto(f"/mail/messages/{message_ids['27-tracking-pixel-img.html']}", wait_until="load")
    page.get_by_role("link", name="Show images").click()
    expect(page.locator("iframe.message-frame")).to_have_attribute("src", re.compile(r"images=1"))
    page.wait_for_timeout(300)
    assert any("tracker.example/open.gif" in url for url in remote), remote
    assert dialogs == []
    context.close()
