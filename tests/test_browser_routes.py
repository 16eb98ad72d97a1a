"""Every page of the app in a real browser, at a phone's size (390x844) and a laptop's (1280x800).

The pages are taken from the app's routes (as the tenant isolation walk does), so a new page is
walked too: every GET route is either walked or named in NOT_PAGES with the reason. The viewer is
the administrator, with data: an SMTP account, a retrieval task, a filter, messages (one with a
long subject and an attachment) and an outbox entry. Each page must answer 200 with text/html,
show its <main> with a heading and no template or Python error text, log no script error, show
message dates in full (an unread, bold "28 Dec 2024" too), and
not be wider than the window (document.documentElement.scrollWidth <= window.innerWidth), so
nothing scrolls sideways on a phone. Screenshots: /tmp/tributary-routes-<width>-<page>.png.

What a phone still lacks because a template owned elsewhere must change is a strict xfail per
page, naming the page and the problem (it fails as soon as the fix lands, so the mark goes with
it): FOLDER_TREE_NOT_FOLDED.

Also here, without a browser: no handler of a page route is left with the JSON media type that
Litestar gives a handler annotated `-> Any` (how Settings, Filters came to be served as JSON).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from litestar import Litestar
from litestar.enums import MediaType
from litestar.routes import HTTPRoute
from playwright.sync_api import Browser, BrowserContext, Page, expect

from service.config import Settings
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.persistence.secrets import SecretBox
from service.usecases.users import add_user
from tests.mail_samples import sample
from tests.test_tenant_isolation import Tenant, _populate
from web.app import create_app

pytestmark = [pytest.mark.browser]

EMAIL = "walker@example.test"
PASSWORD = "correct horse battery staple"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}
LONG_SUBJECT = (
    "Quarterly planning notes for the Northern region distribution centres, with the revised budget "
    "spreadsheet attached and a very long unbroken reference NRDC-2026-Q3-BUDGET-REVISION-FINAL-FINAL-v7"
)

SCREENSHOTS = "/tmp/tributary-routes-{width}-{page}.png"

SKIPPED_PREFIXES = {
    "/api/": "the JSON API and its OpenAPI schema (test_api*.py, test_openapi_contract.py)",
    "/static/": "stylesheets, scripts and images",
}
NOT_PAGES = {
    "/mail/messages/{message_id:int}/body": "the message's own HTML, shown inside the sandboxed frame of its page",
    "/mail/inline/{message_id:int}/{part_id:str}": "an inline image of a message",
    "/mail/messages/{message_id:int}/attachments/{part_id:str}": "an attachment download",
    "/mail/messages/{message_id:int}/raw": "a download of the message as received",
    "/mail/folders/{folder_id:int}/mbox": "a download of the folder as an mbox file",
    "/settings/port": "an htmx fragment: the port input that the chosen type and security suggest",
    "/settings/retrieval/transfer-example": "an htmx fragment: where a retrieval task's folders land, as typed",
    "/settings/retrieval/{task_id:int}/progress": "an htmx fragment: what a running Retrieve Now stored",
    "/oauth/callback": "a provider's redirect back to Settings; with no state, only an error (test_oauth_web.py)",
    "/health": "a JSON probe for load balancers",
    "/metrics": "Prometheus text for a scraper",
    "/mail/pulse": "the mail pages' JSON check for new mail (static/js/live.js)",
}
"""GET routes that are not pages a person opens, and why."""
SIGNED_OUT = ("/setup", "/login")
"""Pages for a visitor: /setup before the first administrator exists, /login after."""

_NOT_FOLDED = (
    "{page} at 390x844: the folder tree is not folded away behind a button, it fills the first screen "
    "above the page's own heading (needs a change in web/templates/mail/_layout.html or _folders.html)"
)
FOLDER_TREE_NOT_FOLDED = {
    "/": _NOT_FOLDED.format(page="Inbox"),
    "/mail/folders/{folder_id:int}": _NOT_FOLDED.format(page="A folder's message list"),
    "/mail/messages/{message_id:int}": _NOT_FOLDED.format(page="The message view"),
}
"""Issue 17: "the folder tree folds away behind a button on the list and the message view"."""

ERROR_TEXT = re.compile(r"Traceback|jinja2|Undefined|Internal Server Error|\{\{|\{%")
PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class Walker:
    tenant: Tenant
    inbox_id: int
    long_message_id: int

    def params(self) -> dict[str, str]:
        return {**self.tenant.params(), "folder_id": str(self.inbox_id), "message_id": str(self.long_message_id)}


async def _seed(settings: Settings) -> Walker:
    """The administrator with data (tenant isolation's set: SMTP account, task, filter, folder,
    message with an attachment, outbox entry, logs), plus Inbox mail with a long subject."""
    db = Database(settings)
    try:
        user = await add_user(db=db, email=EMAIL, password=PASSWORD, is_admin=True, display_name="Wally Walker")
        tenant = await _populate(db, SecretBox.from_settings(settings), settings, user.id, "Walker")
        await add_user(db=db, email="second.user.with.a.long.address@a-long-domain-name.example", password=PASSWORD)
        async with db.write() as session:
            inbox = await folder_by_path(session, user.id, "Inbox")
            assert inbox.id is not None
            long_sender = "someone.with.a.remarkably.long.address.for.testing@subdomain.long-domain-name.example"
            stored = await deliver(
                session, user_id=user.id, folder_id=inbox.id, raw=sample(LONG_SUBJECT, sender=long_sender), seen=False
            )
            year_end = sample("Year-end wrap-up").replace(b"Tue, 05 Mar 2024", b"Sat, 28 Dec 2024")
            await deliver(session, user_id=user.id, folder_id=inbox.id, raw=year_end, seen=False)
            for n in range(4):
                await deliver(session, user_id=user.id, folder_id=inbox.id, raw=sample(f"Note {n}"), seen=n % 2 == 0)
            assert stored.id is not None
        return Walker(tenant=tenant, inbox_id=inbox.id, long_message_id=stored.id)
    finally:
        await db.dispose()


def _seeded(settings: Settings) -> Walker:
    # Playwright's sync API runs an event loop in this thread: seed from another one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _seed(settings)).result()


def _page_routes(app: Litestar) -> list[str]:
    """Every GET route that is a page for a signed-in person (route paths, with their parameters)."""
    return [
        route.path
        for route in app.routes
        if isinstance(route, HTTPRoute)
        and "GET" in route.methods
        and not route.path.startswith(tuple(SKIPPED_PREFIXES))
        and route.path not in NOT_PAGES
        and route.path not in SIGNED_OUT
    ]


def _filled(route: str, walker: Walker) -> str:
    """The route's path with each {name:type} replaced by the walker's object of that name."""
    values = walker.params()

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"{route}: say which object {name!r} names (Walker.params) or add it to NOT_PAGES"
        return values[name]

    return PARAM.sub(value, route)


def _watched(context: BrowserContext) -> tuple[Page, list[str]]:
    """A new page, and the script errors and CSP violations it logs, collected as they happen."""
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return page, errors


def _visit(page: Page, errors: list[str], path: str) -> list[str]:
    """Open one page; what is wrong with it, in words (nothing when all is well)."""
    width = page.viewport_size["width"] if page.viewport_size else 0
    where = f"{path} at {width} px"
    errors.clear()
    response = page.goto(path)
    assert response is not None
    problems = []
    content_type = response.headers.get("content-type", "")
    if response.status != 200 or not content_type.startswith("text/html"):
        return [f"{where}: {response.status} {content_type} (if it is not a page, say why in NOT_PAGES)"]
    main = page.locator("main")
    if not main.is_visible() or not main.locator("h1, h2").first.is_visible():
        problems.append(f"{where}: no visible <main> with a heading (if it is not a page, say why in NOT_PAGES)")
    text = main.inner_text() if main.count() else page.inner_text("body")
    if found := ERROR_TEXT.search(text):
        problems.append(f"{where}: shows {found.group(0)!r}")
    shot = SCREENSHOTS.format(width=width, page=re.sub(r"\W+", "-", path).strip("-") or "inbox")
    page.screenshot(path=shot, full_page=True)
    dates = page.locator(".messages td.col-date")
    cut = dates.evaluate_all("cells => cells.filter(c => c.scrollWidth > c.clientWidth).length")
    if cut:
        problems.append(f"{where}: {cut} dates in the message list are cut short")
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if scroll > inner:
        problems.append(f"{where}: {scroll} px wide, wider than the window ({inner} px){_widest(page)}")
    return problems + [f"{where}: {error}" for error in errors]


def _widest(page: Page) -> str:
    """The elements that stick out on the right, to say what makes a page too wide."""
    culprits: list[str] = page.evaluate(
        """() => {
            const limit = window.innerWidth;
            const out = [];
            for (const el of document.querySelectorAll('main *, header *')) {
                const box = el.getBoundingClientRect();
                if (box.right > limit + 0.5 && box.width > 0) {
                    const cls = el.className ? '.' + String(el.className).split(' ').join('.') : '';
                    const name = el.tagName.toLowerCase() + cls;
                    const text = (el.textContent || '').trim().slice(0, 40);
                    const span = `${Math.round(box.left)}..${Math.round(box.right)}`;
                    if (!out.includes(name)) out.push(`${name} "${text}" ${span}`);
                }
            }
            return out.slice(0, 6);
        }"""
    )
    return f" ({', '.join(culprits)})" if culprits else ""


def _sign_in(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


@pytest.fixture
def contexts(browser: Browser, live_server: str) -> Iterator[dict[str, BrowserContext]]:
    opened = {
        name: browser.new_context(base_url=live_server, viewport=size)  # type: ignore[arg-type]
        for name, size in (("phone", PHONE), ("laptop", LAPTOP))
    }
    try:
        yield opened
    finally:
        for context in opened.values():
            context.close()


def test_every_page_answers_html_renders_and_fits_the_window(
    settings: Settings, contexts: dict[str, BrowserContext]
) -> None:
    app = create_app(settings)
    problems: list[str] = []
    pages = {name: _watched(context) for name, context in contexts.items()}
    for page, errors in pages.values():
        problems += _visit(page, errors, "/setup")  # no administrator yet
    walker = _seeded(settings)
    routes = _page_routes(app)
    assert {"/", "/compose", "/settings/connectivity", "/settings/filters", "/admin"} <= set(routes)
    for page, errors in pages.values():
        problems += _visit(page, errors, "/login")
        _sign_in(page)
        administration = page.get_by_role("navigation", name="Main").get_by_role("link", name="Administration")
        expect(administration).to_be_in_viewport()
        for route in routes:
            problems += _visit(page, errors, _filled(route, walker))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "route",
    [pytest.param(route, id=route) for route in FOLDER_TREE_NOT_FOLDED],
)
def test_the_folder_tree_folds_away_on_a_phone(
    route: str, settings: Settings, contexts: dict[str, BrowserContext]
) -> None:
    walker = _seeded(settings)
    page, _ = _watched(contexts["phone"])
    _sign_in(page)
    page.goto(_filled(route, walker))
    expect(page.locator("main h1").first).to_be_attached()
    assert not page.get_by_role("navigation", name="Folders").is_visible()
    expect(page.locator("main h1").first).to_be_in_viewport()


def test_no_page_route_answers_json(settings: Settings) -> None:
    """A handler that returns a page but is annotated `-> Any` gets Litestar's default media type,
    application/json; no handler of a page route (GET or the POST that answers a form) may have it."""
    app = create_app(settings)
    json_pages = [
        f"{sorted(handler.http_methods)} {route.path} ({handler.handler_name})"
        for route in app.routes
        if isinstance(route, HTTPRoute)
        and not route.path.startswith(tuple(SKIPPED_PREFIXES))
        and route.path not in NOT_PAGES
        for handler in route.route_handlers
        if handler.media_type == MediaType.JSON
    ]
    assert json_pages == []
