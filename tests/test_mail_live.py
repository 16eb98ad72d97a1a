"""The open mail page's pulse over HTTP: GET /mail/pulse answers 204 while the signed-in user's
folders are as the page saw them, and their new fingerprint and unread count once mail is
delivered (by any process: here straight through the mailstore), read or moved; another
user's mail never moves it. The pages carry what static/js/live.js needs, and the title the count.
"""

from __future__ import annotations

import re

import httpx
from sqlalchemy import update

from service.domain.users import UserView
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.persistence.tables import User
from service.usecases.users import add_user, find_user
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, set_up_admin
from tests.mail_samples import sample

OTHER = "otto@example.test"
OTHER_PASSWORD = "otto's rather long password"


async def _signed_in(client: WebClient, db: Database) -> UserView:
    await set_up_admin(client)
    return await find_user(db=db, email=ADMIN_EMAIL)


async def _deliver(db: Database, user_id: int, subject: str, *, folder: str = "Inbox", seen: bool = False) -> int:
    async with db.write() as session:
        target = await folder_by_path(session, user_id, folder)
        assert target.id is not None
        stored = await deliver(session, user_id=user_id, folder_id=target.id, raw=sample(subject), seen=seen)
    assert stored.id is not None
    return stored.id


def _live(html: str) -> dict[str, str]:
    """The #mail-layout's data-pulse, data-unread and data-live-url, and the page's title."""
    layout = re.search(r'<div id="mail-layout"[^>]*>', html)
    assert layout is not None, "the page has no mail layout"
    found = dict(re.findall(r'data-(pulse|unread|live-url)="([^"]*)"', layout.group(0)))
    title = re.search(r"<title>(.*?)</title>", html, re.S)
    assert title is not None
    found["title"] = title.group(1).strip()
    return found


async def _pulse(client: WebClient, since: str) -> httpx.Response:
    return await client.get("/mail/pulse", params={"since": since})


async def test_pulse_is_204_until_mail_arrives_then_names_the_new_fingerprint_and_count(
    web_client: WebClient, db: Database
) -> None:
    user = await _signed_in(web_client, db)
    page = _live((await web_client.get("/")).text)
    assert page["pulse"]
    assert page["unread"] == "0"
    assert page["live-url"] == "/"
    assert page["title"] == "Inbox · Tributary"

    quiet = await _pulse(web_client, page["pulse"])
    assert quiet.status_code == 204
    assert quiet.content == b""
    assert quiet.headers["cache-control"] == "no-store"

    await _deliver(db, user.id, "Fresh from the worker")
    changed = await _pulse(web_client, page["pulse"])
    assert changed.status_code == 200
    body = changed.json()
    assert body["unread"] == 1
    assert body["fingerprint"] != page["pulse"]
    assert (await _pulse(web_client, body["fingerprint"])).status_code == 204

    # The page built now carries that same fingerprint, and the count in its title.
    again = _live((await web_client.get("/")).text)
    assert again["pulse"] == body["fingerprint"]
    assert again["unread"] == "1"
    assert again["title"] == "(1) Inbox · Tributary"


async def test_a_new_message_in_any_folder_and_reading_it_change_the_pulse(web_client: WebClient, db: Database) -> None:
    user = await _signed_in(web_client, db)
    start = _live((await web_client.get("/")).text)["pulse"]
    message_id = await _deliver(db, user.id, "Into a subfolder", folder="Lists/Python")
    arrived = (await _pulse(web_client, start)).json()
    assert arrived["unread"] == 1

    # Opening it marks it read: the message page already carries the fingerprint after that.
    opened = _live((await web_client.get(f"/mail/messages/{message_id}")).text)
    assert opened["unread"] == "0"
    assert not opened["title"].startswith("(")
    assert re.fullmatch(r"/mail/folders/\d+", opened["live-url"])  # a message page refreshes its tree from there
    assert (await _pulse(web_client, opened["pulse"])).status_code == 204
    assert opened["pulse"] not in (start, arrived["fingerprint"])


async def test_junk_and_trash_are_not_counted_in_the_title(web_client: WebClient, db: Database) -> None:
    user = await _signed_in(web_client, db)
    start = _live((await web_client.get("/")).text)["pulse"]
    await _deliver(db, user.id, "Cheap watches", folder="Junk")
    changed = (await _pulse(web_client, start)).json()
    assert changed["unread"] == 0  # the tree shows Junk's count; the title does not
    await _deliver(db, user.id, "A real one")
    assert (await _pulse(web_client, changed["fingerprint"])).json()["unread"] == 1


async def test_another_users_mail_does_not_change_my_pulse(web_client: WebClient, db: Database) -> None:
    await _signed_in(web_client, db)
    other = await add_user(db=db, email=OTHER, password=OTHER_PASSWORD, display_name="Otto")
    mine = _live((await web_client.get("/")).text)["pulse"]
    await _deliver(db, other.id, "For Otto only")
    await _deliver(db, other.id, "Also for Otto", folder="Projects")
    assert (await _pulse(web_client, mine)).status_code == 204
    # An unknown or missing fingerprint is simply "changed": the answer is still only mine.
    answer = await _pulse(web_client, "")
    assert answer.status_code == 200
    assert answer.json() == {"fingerprint": mine, "unread": 0}


async def test_the_pulse_needs_a_signed_in_active_user(web_client: WebClient, db: Database) -> None:
    anonymous = await web_client.get("/mail/pulse", params={"since": "x"})
    assert anonymous.status_code == 401
    user = await _signed_in(web_client, db)
    assert (await _pulse(web_client, "x")).status_code == 200
    async with db.write() as session:
        await session.exec(update(User).where(User.id == user.id).values(is_active=False))  # type: ignore[arg-type]
    assert (await _pulse(web_client, "x")).status_code == 401


async def test_a_list_page_refreshes_itself_at_its_own_folder_and_page(web_client: WebClient, db: Database) -> None:
    user = await _signed_in(web_client, db)
    await _deliver(db, user.id, "Archived", folder="Archive", seen=True)
    archive = re.search(
        r'href="(/mail/folders/\d+)"[^>]*>\s*<span class="folder-name">Archive<', (await web_client.get("/")).text
    )
    assert archive is not None
    url = archive.group(1)
    assert _live((await web_client.get(url)).text)["live-url"] == url
    # The query stays: the same page (cursor) and the notice the reader is looking at.
    with_query = await web_client.get(url, params={"notice": "read", "n": "1"})
    assert _live(with_query.text)["live-url"] == f"{url}?notice=read&amp;n=1"


async def test_the_live_script_is_served_from_static_and_no_page_runs_inline_script(
    web_client: WebClient, db: Database
) -> None:
    await _signed_in(web_client, db)
    page = await web_client.get("/")
    assert '<script src="/static/js/live.js" defer></script>' in page.text
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) is None
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    script = await web_client.get("/static/js/live.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "/mail/pulse?since=" in script.text


async def test_the_pulse_neither_renews_nor_rewrites_the_session(web_client: WebClient, db: Database) -> None:
    """An open tab asks every few seconds: that must not keep an idle session alive."""
    await _signed_in(web_client, db)
    page = await web_client.get("/")
    assert "set-cookie" in page.headers  # a page the reader asked for renews the idle timeout
    pulse = await _pulse(web_client, _live(page.text)["pulse"])
    assert pulse.status_code == 204
    assert "set-cookie" not in pulse.headers
    assert (await _pulse(web_client, "")).headers.get("set-cookie") is None
