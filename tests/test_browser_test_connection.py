"""Test Connection on the New and Edit forms (retrieval task and SMTP account) brings its result into
view and announces it (issue 17, "rough edges"): in Chromium at 1280x800 and 390x844, with the
button at the bottom edge of the window (so a result below it would be off-screen), the answer is
scrolled into the window, inside a polite live region (role status) that is in the page before the
answer arrives. The server is a loopback port that refuses connections, so every test fails fast
at "Connect"."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from service.config import Settings
from tests.fixtures.browser import create_administrator

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]

EMAIL = "ada@example.test"
PASSWORD = "correct horse battery staple"
VIEWPORTS: dict[str, ViewportSize] = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
SCREENSHOTS = "/tmp/tributary-test-connection-{}.png"
IN_VIEW = """(selector) => {
  const box = document.querySelector(selector).getBoundingClientRect();
  return box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight;
}"""


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port bound but never listening: a connection to it is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def _fill_task(page: Page, port: int) -> None:
    page.get_by_label("Name", exact=True).fill("Refusing server")
    page.get_by_label("Server address").fill("127.0.0.1")
    page.get_by_label("Port", exact=True).fill(str(port))
    page.get_by_label("Username").fill("someone")
    page.get_by_label("Password", exact=True).fill("remote-Secret-1")
    page.get_by_label("Manual", exact=True).check()


def _fill_smtp(page: Page, port: int) -> None:
    page.get_by_label("Display name").fill("Ada")
    page.get_by_label("Email address").fill("ada@elsewhere.example")
    page.get_by_label("Server address").fill("127.0.0.1")
    page.get_by_label("Port", exact=True).fill(str(port))
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password", exact=True).fill("smtp-Secret-1")


def _test_connection_shows_its_result(page: Page, name: str) -> None:
    """Click Test Connection with the button at the window's bottom edge; the result must come into view."""
    result = page.locator("#test-result")
    live = page.locator("[aria-live]").filter(has=result)  # the region around it, present before the answer
    expect(live).to_have_attribute("aria-live", "polite")
    expect(live).to_have_attribute("role", "status")
    button = page.get_by_role("button", name="Test Connection")
    button.evaluate("button => button.scrollIntoView({block: 'end'})")
    edge = button.evaluate("button => window.innerHeight - button.getBoundingClientRect().bottom")
    assert abs(edge) < 2, f"{name}: the button should be at the window's bottom edge ({edge}px above it)"
    button.click()
    expect(result.get_by_text("Test Connection failed.")).to_be_visible()
    expect(result.get_by_role("listitem").filter(has_text="Connect")).to_contain_text("failed")
    expect(live).to_contain_text("Test Connection failed.")
    page.wait_for_function(IN_VIEW, arg="#test-result", timeout=10_000)
    page.screenshot(path=SCREENSHOTS.format(name))


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_test_connection_results_come_into_view(
    settings: Settings, live_server: str, browser: Browser, refused_port: int, viewport: str
) -> None:
    context = browser.new_context(base_url=live_server, viewport=VIEWPORTS[viewport])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    create_administrator(page, EMAIL, PASSWORD)

    page.goto("/settings/retrieval/new")
    _fill_task(page, refused_port)
    _test_connection_shows_its_result(page, f"task-new-{viewport}")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/settings/connectivity#task-\d+$"))
    page.get_by_role("button", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit Retrieval Task")).to_be_visible()
    _test_connection_shows_its_result(page, f"task-edit-{viewport}")

    page.goto("/settings/smtp/new")
    _fill_smtp(page, refused_port)
    _test_connection_shows_its_result(page, f"smtp-new-{viewport}")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/settings/connectivity#smtp-\d+$"))
    page.locator("li[id^='smtp-']").get_by_role("button", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit SMTP Account")).to_be_visible()
    _test_connection_shows_its_result(page, f"smtp-edit-{viewport}")
    assert not errors, errors
    context.close()
