"""A new install in a real browser: the first visit leads to setup, the administrator
is created and signed in, signs out, and signs in again.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]

EMAIL = "ada@example.test"
PASSWORD = "correct horse battery staple"
SCREENSHOT = "/tmp/tributary-setup.png"


def _sign_in(page: Page, password: str) -> None:
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_first_administrator_sets_up_signs_out_and_in(live_server: str, browser: Browser) -> None:
    context = browser.new_context(base_url=live_server)
    page = context.new_page()
    problems: list[str] = []  # CSP violations and script errors show up here
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    page.goto("/")
    expect(page).to_have_url(f"{live_server}/setup")
    expect(page.get_by_role("heading", name="Create the first administrator")).to_be_visible()
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Display name").fill("Ada Lovelace")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Confirm password").fill(PASSWORD)
    page.screenshot(path=SCREENSHOT, full_page=True)
    page.get_by_role("button", name="Create administrator").click()

    expect(page).to_have_url(f"{live_server}/")
    expect(page.get_by_role("banner").get_by_text(EMAIL)).to_be_visible()
    expect(page.get_by_role("navigation", name="Folders").get_by_role("link", name="Inbox")).to_be_visible()
    assert page.evaluate("typeof htmx") == "object", "htmx did not load"

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_server}/login")
    page.goto("/")
    expect(page).to_have_url(f"{live_server}/login")

    _sign_in(page, "not the password")
    expect(page.get_by_role("alert")).to_have_text("The email address or password is not correct.")
    expect(page.get_by_label("Email address")).to_have_value(EMAIL)
    expect(page.get_by_label("Password")).to_have_value("")

    _sign_in(page, PASSWORD)
    expect(page).to_have_url(f"{live_server}/")
    expect(page.get_by_role("banner").get_by_text(EMAIL)).to_be_visible()

    # Only the failed sign-in's 401 may show: no CSP violation, script error or missing asset.
    assert failed == [f"401 {live_server}/login"]
    assert [p for p in problems if not re.search(r"status of 401", p)] == []
    context.close()
