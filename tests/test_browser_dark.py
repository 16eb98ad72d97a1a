"""Dark mode in a real browser: with the system set to dark (prefers-color-scheme), the Inbox and a
settings page have a dark background and light text, with a readable contrast; set to light, the
same pages stay light. Screenshots: /tmp/tributary-dark-<page>.png.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import pytest
from playwright.sync_api import Browser, Page, expect

from service.config import Settings
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.usecases.users import add_user
from tests.mail_samples import sample

pytestmark = [pytest.mark.browser]

EMAIL = "night@example.test"
PASSWORD = "correct horse battery staple"
PAGES = {"inbox": "/", "settings": "/settings/connectivity", "filters": "/settings/filters"}

_COLOURS = """() => {
    const parse = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
    const luminance = ([r, g, b]) => {
        const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
    };
    const style = getComputedStyle(document.body);
    const main = getComputedStyle(document.querySelector('main h1'));
    const bg = luminance(parse(style.backgroundColor));
    const text = luminance(parse(main.color));
    return {bg, text, contrast: (Math.max(bg, text) + 0.05) / (Math.min(bg, text) + 0.05)};
}"""


async def _seed(settings: Settings) -> None:
    db = Database(settings)
    try:
        user = await add_user(db=db, email=EMAIL, password=PASSWORD, display_name="Nadia Night")
        async with db.write() as session:
            inbox = await folder_by_path(session, user.id, "Inbox")
            assert inbox.id is not None
            await deliver(session, user_id=user.id, folder_id=inbox.id, raw=sample("Moonlight report"), seen=False)
    finally:
        await db.dispose()


def _sign_in(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_pages_follow_the_systems_colour_scheme(
    scheme: Literal["dark", "light"], settings: Settings, live_server: str, browser: Browser
) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:  # Playwright's sync API owns this thread's loop
        pool.submit(asyncio.run, _seed(settings)).result()
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800}, color_scheme=scheme)
    try:
        page = context.new_page()
        _sign_in(page)
        for name, path in PAGES.items():
            page.goto(path)
            expect(page.locator("main h1").first).to_be_visible()
            colours = page.evaluate(_COLOURS)
            if scheme == "dark":
                assert colours["bg"] < 0.02, f"{name}: the background is not dark ({colours})"
                assert colours["text"] > 0.6, f"{name}: the heading is not light ({colours})"
                page.screenshot(path=f"/tmp/tributary-dark-{name}.png", full_page=True)
            else:
                assert colours["bg"] > 0.85, f"{name}: the background is not light ({colours})"
            assert colours["contrast"] >= 7, f"{name}: heading on background contrast {colours['contrast']:.1f}"
        if scheme == "dark":  # the message list itself is dark too, not a white table on a dark page
            page.goto("/")
            row_bg = page.locator(".messages").evaluate("e => getComputedStyle(e).backgroundColor")
            assert row_bg != "rgb(255, 255, 255)"
    finally:
        context.close()
