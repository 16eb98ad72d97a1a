"""The mail part of the JSON API: folders with counts, a folder's messages by keyset cursor, a message
(headers, text or sanitised HTML, attachments), its raw bytes and parts, and the actions on it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from tests.fixtures.webapp import WebClient
from tests.mail_samples import sample
from tests.test_api import api, ok, signed_in
from tests.test_reading_render import html_message, with_attachments


async def store(db: Database, user_id: int, raw: bytes, *, folder: str = "Inbox", minutes_ago: int = 0) -> int:
    async with db.write() as session:
        target = await folder_by_path(session, user_id, folder)
        assert target.id is not None
        when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        stored = await deliver(session, user_id=user_id, folder_id=target.id, raw=raw, seen=False, received_at=when)
    assert stored.id is not None
    return stored.id


def dated(subject: str, minutes_ago: int) -> bytes:
    when = format_datetime(datetime.now(UTC) - timedelta(minutes=minutes_ago))
    return re.sub(rb"Date: [^\r]*", f"Date: {when}".encode(), sample(subject), count=1)


async def test_folders_list_their_counts_and_messages_page_by_cursor(web_client: WebClient, db: Database) -> None:
    user_id = await signed_in(web_client, db)
    for n in range(5):
        await store(db, user_id, dated(f"Message {n}", minutes_ago=n), minutes_ago=n)

    folders = ok(await api(web_client, "GET", "/folders"))
    inbox = next(f for f in folders if f["special_use"] == "inbox")
    assert (inbox["total"], inbox["unread"]) == (5, 5)
    assert {"sent", "trash", "outbox"} <= {f["special_use"] for f in folders}

    first = ok(await api(web_client, "GET", f"/folders/{inbox['id']}/messages?limit=2"))
    assert [m["subject"] for m in first["messages"]] == ["Message 0", "Message 1"]
    assert first["newer"] is None
    assert first["older"]
    second = ok(await api(web_client, "GET", f"/folders/{inbox['id']}/messages?limit=2&before={first['older']}"))
    assert [m["subject"] for m in second["messages"]] == ["Message 2", "Message 3"]
    back = ok(await api(web_client, "GET", f"/folders/{inbox['id']}/messages?limit=2&after={second['newer']}"))
    assert back["messages"] == first["messages"]
    assert (await api(web_client, "GET", f"/folders/{inbox['id']}/messages?limit=0")).status_code == 400
    assert (await api(web_client, "GET", "/folders/999999/messages")).status_code == 404


async def test_a_message_is_read_downloaded_marked_moved_and_deleted(web_client: WebClient, db: Database) -> None:
    user_id = await signed_in(web_client, db)
    original = with_attachments(["report.pdf", "Übersicht.txt"])
    message_id = await store(db, user_id, original)

    message = ok(await api(web_client, "GET", f"/messages/{message_id}"))
    assert message["subject"] == "Files für dich"
    assert message["seen"] is False
    assert "See the attachments." in message["text"]
    assert [(a["filename"], a["size"]) for a in message["attachments"]] == [
        ("report.pdf", len(b"content of report.pdf")),
        ("Übersicht.txt", len("content of Übersicht.txt".encode())),
    ]
    part = message["attachments"][1]
    download = await web_client.get(part["url"])
    assert download.status_code == 200
    assert download.content == "content of Übersicht.txt".encode()
    assert download.headers["content-type"] == "application/octet-stream"
    assert "attachment;" in download.headers["content-disposition"]
    raw = await web_client.get(message["raw_url"])
    assert raw.content == original
    assert (await api(web_client, "GET", f"/messages/{message_id}/attachments/9")).status_code == 404

    opened = ok(await api(web_client, "GET", f"/messages/{message_id}?mark_read=true"))
    assert opened["seen"] is True
    assert ok(await api(web_client, "PUT", f"/messages/{message_id}/flags", {"seen": False})) == {"changed": 1}
    assert ok(await api(web_client, "GET", f"/messages/{message_id}"))["seen"] is False

    folders = {f["special_use"] or f["path"]: f["id"] for f in ok(await api(web_client, "GET", "/folders"))}
    moved = ok(await api(web_client, "POST", f"/messages/{message_id}/move", {"folder_id": folders["junk"]}))
    assert moved == {"changed": 1}
    assert ok(await api(web_client, "GET", f"/messages/{message_id}"))["folder"]["special_use"] == "junk"
    into_outbox = await api(web_client, "POST", f"/messages/{message_id}/move", {"folder_id": folders["outbox"]})
    assert into_outbox.status_code == 400

    assert ok(await api(web_client, "DELETE", f"/messages/{message_id}")) == {"trashed": 1, "deleted": 0}
    assert ok(await api(web_client, "DELETE", f"/messages/{message_id}")) == {"trashed": 0, "deleted": 1}
    assert (await api(web_client, "GET", f"/messages/{message_id}")).status_code == 404


async def test_html_is_sanitised_and_remote_images_are_blocked(web_client: WebClient, db: Database) -> None:
    user_id = await signed_in(web_client, db)
    message_id = await store(db, user_id, html_message())
    message = ok(await api(web_client, "GET", f"/messages/{message_id}"))
    assert message["html"]
    html = message["html"].lower()
    assert "hello <b>reader</b>" in html
    for hostile in ("<script", "alert(", "onerror", "onload", "<base", "<meta", "evil.example", "tracker.example"):
        assert hostile not in html, hostile
    assert message["remote_images"] >= 1
