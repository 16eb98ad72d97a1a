"""The Mail pages over HTTP: the folder tree, the message list and its pages, reading a
message, the actions (mark read/unread, move, delete), and one user never reaching another's mail.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx

from service.domain.users import UserView
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.usecases import reading
from service.usecases.users import add_user, find_user
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, csrf_token, log_in, post_form, set_up_admin
from tests.mail_samples import sample
from tests.test_reading_render import html_message, with_attachments

MALLORY = "mallory@example.test"
MALLORY_PASSWORD = "mallory's long password"


async def _signed_in(client: WebClient, db: Database) -> UserView:
    await set_up_admin(client)
    return await find_user(db=db, email=ADMIN_EMAIL)


async def _deliver(
    db: Database, user_id: int, raw: bytes, *, folder: str = "Inbox", seen: bool = False, minutes_ago: int = 0
) -> int:
    async with db.write() as session:
        target = await folder_by_path(session, user_id, folder)
        assert target.id is not None
        when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        stored = await deliver(session, user_id=user_id, folder_id=target.id, raw=raw, seen=seen, received_at=when)
    assert stored.id is not None
    return stored.id


async def _folder_id(db: Database, user_id: int, path: str) -> int:
    return next(f.id for f in await reading.list_folders(db=db, user_id=user_id) if f.path == path)


def _dated(subject: str, *, minutes_ago: int) -> bytes:
    """A sample message whose Date header (what the list sorts by) is `minutes_ago` before now."""
    when = format_datetime(datetime.now(UTC) - timedelta(minutes=minutes_ago))
    return re.sub(rb"Date: [^\r]*", f"Date: {when}".encode(), sample(subject), count=1)


def _row_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'name="ids" value="(\d+)" id="select-', html)]


async def _act(client: WebClient, action: str, ids: list[int], **fields: str) -> httpx.Response:
    data: dict[str, str | list[str]] = {"_csrf_token": await csrf_token(client), "action": action, **fields}
    data["ids"] = [str(i) for i in ids]
    return await client.post("/mail/messages/action", data=data)


async def test_home_shows_the_inbox_with_folders_and_message_rows(web_client: WebClient, db: Database) -> None:
    user = await _signed_in(web_client, db)
    async with db.write() as session:
        await folder_by_path(session, user.id, "Archive/2024")
    await _deliver(db, user.id, with_attachments(), minutes_ago=5)
    await _deliver(db, user.id, sample("Read already <b>", sender="old@example.test"), seen=True, minutes_ago=10)

    page = await web_client.get("/")
    assert page.status_code == 200
    html = page.text
    assert '<nav class="folders" aria-label="Folders">' in html
    assert re.search(r'aria-current="page">\s*<span class="folder-name">Inbox</span> <span class="count">1<', html)
    assert html.index(">Inbox<") < html.index(">Sent<") < html.index(">Archive<") < html.index(">2024<")
    assert "2 messages, 1 unread" in html
    assert html.count('class="message-row unread"') == 1
    assert html.count('class="message-row"') == 1
    assert "Jörg" in html
    assert "Files für dich" in html
    assert "Read already &lt;b&gt;" in html
    assert "Has attachments" in html
    assert re.search(r'<td class="col-size">\d+(\.\d)? KB</td>', html)
    assert " style=" not in html
    assert "<script>" not in html
    assert '<link rel="stylesheet" href="/static/css/mail.css">' in html
    assert (await web_client.get("/static/css/mail.css")).status_code == 200


async def test_the_list_pages_older_and_newer_by_cursor(web_client: WebClient, db: Database) -> None:
    user = await _signed_in(web_client, db)
    ids = [await _deliver(db, user.id, _dated(f"Number {n}", minutes_ago=n)) for n in range(120)]
    inbox = await _folder_id(db, user.id, "Inbox")

    first = await web_client.get(f"/mail/folders/{inbox}")
    assert _row_ids(first.text) == ids[:50]
    assert re.search(r'aria-disabled="true">\W*Newer</span>', first.text)  # no newer page: shown disabled
    older = re.search(r'href="(/mail/folders/\d+\?before=[0-9_-]+)">Older', first.text)
    assert older is not None
    second = await web_client.get(older.group(1))
    assert _row_ids(second.text) == ids[50:100]
    third_link = re.search(r'href="(/mail/folders/\d+\?before=[0-9_-]+)">Older', second.text)
    assert third_link is not None
    third = await web_client.get(third_link.group(1))
    assert _row_ids(third.text) == ids[100:]
    assert re.search(r'aria-disabled="true">Older\W*</span>', third.text)
    newer = re.search(r'href="(/mail/folders/\d+\?after=[0-9_-]+)">\W*Newer', third.text)
    assert newer is not None
    assert _row_ids((await web_client.get(newer.group(1))).text) == ids[50:100]

    bad = await web_client.get(f"/mail/folders/{inbox}?before=not-a-cursor")
    assert bad.status_code == 400
    assert "no longer exists" in bad.text


async def test_opening_a_plain_message_shows_escaped_text_and_marks_it_read(
    web_client: WebClient, db: Database
) -> None:
    user = await _signed_in(web_client, db)
    message_id = await _deliver(db, user.id, with_attachments())

    page = await web_client.get(f"/mail/messages/{message_id}")
    assert page.status_code == 200
    html = page.text
    assert '<h1 id="message-subject">Files für dich</h1>' in html
    assert "<dt>From</dt><dd>Jörg &lt;joerg@example.test&gt;</dd>" in html
    assert "<dt>To</dt><dd>reader@example.test</dd>" in html
    assert "Wed, 6 Mar 2024 07:00 UTC" in html
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html
    assert "<iframe" not in html
    for link in (f"/compose?reply={message_id}", f"/compose?reply_all={message_id}", f"/compose?forward={message_id}"):
        assert f'href="{link}"' in html
    assert f'href="/mail/messages/{message_id}/attachments/3"' in html
    assert "報告書.txt" in html
    inbox = await _folder_id(db, user.id, "Inbox")
    listing = await web_client.get(f"/mail/folders/{inbox}")
    assert 'class="message-row unread"' not in listing.text


async def test_an_html_message_is_framed_and_remote_images_wait(web_client: WebClient, db: Database) -> None:
    user = await _signed_in(web_client, db)
    message_id = await _deliver(db, user.id, html_message())

    html = (await web_client.get(f"/mail/messages/{message_id}")).text
    assert re.search(
        rf'<iframe class="message-frame" sandbox="" referrerpolicy="no-referrer" title="Message body"\s+'
        rf'src="/mail/messages/{message_id}/body"></iframe>',
        html,
    )
    assert "Remote images are hidden." in html
    assert f'href="/mail/messages/{message_id}?images=1"' in html
    assert "alert(" not in html  # the message's HTML lives only in the frame
    assert "Hello" not in html

    shown = (await web_client.get(f"/mail/messages/{message_id}?images=1")).text
    assert f'src="/mail/messages/{message_id}/body?images=1"' in shown
    assert "Remote images are hidden." not in shown


async def test_actions_mark_move_and_delete(web_client: WebClient, db: Database) -> None:
    user = await _signed_in(web_client, db)
    first = await _deliver(db, user.id, sample("First"), minutes_ago=1)
    second = await _deliver(db, user.id, sample("Second"), minutes_ago=2)
    async with db.write() as session:
        await folder_by_path(session, user.id, "Archive")
    inbox, archive, trash = [await _folder_id(db, user.id, p) for p in ("Inbox", "Archive", "Trash")]

    read = await _act(web_client, "read", [first, second], folder=str(inbox))
    assert read.status_code == 303
    assert read.headers["location"] == f"/mail/folders/{inbox}?notice=read&n=2"
    assert "2 messages marked as read." in (await web_client.get(read.headers["location"])).text
    unread = await _act(web_client, "unread", [first], folder=str(inbox))
    assert "1 message marked as unread." in (await web_client.get(unread.headers["location"])).text
    assert (await _folder_id(db, user.id, "Inbox")) == inbox
    assert [f.unread for f in await reading.list_folders(db=db, user_id=user.id) if f.id == inbox] == [1]

    moved = await _act(web_client, "move", [first], folder=str(inbox), target=str(archive))
    assert moved.headers["location"] == f"/mail/folders/{inbox}?notice=moved&n=1&to={archive}"
    assert "1 message moved to Archive." in (await web_client.get(moved.headers["location"])).text
    no_target = await _act(web_client, "move", [second], folder=str(inbox))
    assert "Choose the folder to move the messages to." in (await web_client.get(no_target.headers["location"])).text
    assert _row_ids((await web_client.get(f"/mail/folders/{archive}")).text) == [first]

    trashed = await _act(web_client, "delete", [second], folder=str(inbox), before="1_1")
    assert trashed.headers["location"] == f"/mail/folders/{inbox}?before=1_1&notice=trashed&n=1"
    trash_page = (await web_client.get(f"/mail/folders/{trash}")).text
    assert _row_ids(trash_page) == [second]
    assert "Delete for good" in trash_page
    gone = await _act(web_client, "delete", [second], folder=str(trash))
    assert "1 message deleted for good." in (await web_client.get(gone.headers["location"])).text
    assert (await web_client.get(f"/mail/messages/{second}")).status_code == 404

    nothing = await _act(web_client, "read", [], folder=str(inbox))
    assert nothing.headers["location"] == f"/mail/folders/{inbox}?notice=none&n=0"
    assert "Choose at least one message first." in (await web_client.get(nothing.headers["location"])).text
    outbox = await _folder_id(db, user.id, "Outbox")
    assert (await _act(web_client, "move", [first], target=str(outbox))).status_code == 400


async def test_actions_need_the_csrf_token(web_client: WebClient, db: Database) -> None:
    user = await _signed_in(web_client, db)
    message_id = await _deliver(db, user.id, sample("x"))
    refused = await web_client.post("/mail/messages/action", data={"action": "delete", "ids": str(message_id)})
    assert refused.status_code == 403
    assert (await web_client.get(f"/mail/messages/{message_id}")).status_code == 200


async def test_mail_pages_need_a_signed_in_user(web_client: WebClient, db: Database) -> None:
    await _signed_in(web_client, db)
    await post_form(web_client, "/logout", {})
    for path in ("/mail/folders/1", "/mail/messages/1", "/mail/messages/1/body", "/mail/messages/1/attachments/2"):
        response = await web_client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/login"


async def test_another_users_folders_messages_and_parts_answer_404(web_client: WebClient, db: Database) -> None:
    alice = await _signed_in(web_client, db)
    message_id = await _deliver(db, alice.id, with_attachments())
    html_id = await _deliver(db, alice.id, html_message())
    inbox = await _folder_id(db, alice.id, "Inbox")
    inline_link = re.search(
        r'src="(/mail/inline/[^"]+)"', (await web_client.get(f"/mail/messages/{html_id}/body")).text
    )
    assert inline_link is not None
    mallory = await add_user(db=db, email=MALLORY, password=MALLORY_PASSWORD)
    mallory_trash = await _folder_id(db, mallory.id, "Trash")

    await post_form(web_client, "/logout", {})
    assert (await log_in(web_client, email=MALLORY, password=MALLORY_PASSWORD)).status_code == 303
    assert "Files für dich" not in (await web_client.get("/")).text
    for path in (
        f"/mail/folders/{inbox}",
        f"/mail/messages/{message_id}",
        f"/mail/messages/{message_id}/body",
        f"/mail/messages/{message_id}/attachments/2",
        f"/mail/messages/{message_id}/raw",
        f"/mail/messages/{html_id}/body?images=1",
    ):
        response = await web_client.get(path)
        assert response.status_code == 404, path
        assert "Files für dich" not in response.text
    # Rewriting the signed inline link for Mallory's own id breaks its signature.
    forged = re.sub(r"\bu=\d+", f"u={mallory.id}", inline_link.group(1).replace("&amp;", "&"))
    assert (await web_client.get(forged)).status_code == 404
    for action, extra in (("read", {}), ("delete", {}), ("move", {"target": str(mallory_trash)})):
        assert (await _act(web_client, action, [message_id], **extra)).status_code == 404, action

    await post_form(web_client, "/logout", {})
    await log_in(web_client)
    opened = await web_client.get(f"/mail/messages/{message_id}")
    assert opened.status_code == 200
    assert "Files für dich" in opened.text
