"""Drafts as a user meets them: "Save draft" keeps the message in Drafts (flagged \\Draft, Bcc and files
kept, one draft however often it is saved), "Edit draft" opens it again in compose, sending it removes it,
and a draft is checked like a message being sent."""

from __future__ import annotations

import asyncio
import html
import re
from email import message_from_bytes, policy

import httpx
import pytest
from sqlmodel import col, select

from service.domain.compose import Attachment, Draft
from service.domain.values import SpecialUse
from service.errors import InvalidInput, NotFound
from service.persistence import mailstore
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Folder, Message
from service.usecases import sending
from service.usecases.sending import DraftRef
from tests.fixtures.webapp import WebClient, csrf_token, log_in
from tests.test_sending_outbox import folder_raws
from tests.test_smtp_fakes import make_user, scripted_aiosmtpd
from tests.test_web_compose import HTMX, Files, add_account, signed_in_user, text_of

JSON = {"Accept": "application/json"}


async def drafts_of(db: Database, user_id: int) -> list[Message]:
    async with db.read() as session:
        rows = await session.exec(
            select(Message)
            .join(Folder, col(Folder.id) == Message.folder_id)
            .where(Message.user_id == user_id, Folder.special_use == SpecialUse.DRAFTS)
            .order_by(col(Message.id))
        )
        return list(rows.all())


async def post_draft(
    client: WebClient, fields: dict[str, str], *, headers: dict[str, str] | None = None, files: Files | None = None
) -> httpx.Response:
    data = {"_csrf_token": await csrf_token(client), "to": "", "subject": "", "cc": "", "bcc": "", "body": "", **fields}
    return await client.post("/compose/draft", data=data, headers=headers, files=files or None)


def hidden(page: str, name: str) -> str:
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', page)
    assert found is not None, f"no hidden {name}"
    return html.unescape(found.group(1))


async def test_save_draft_keeps_one_flagged_draft_with_bcc_and_files(db: Database) -> None:
    user_id = await make_user(db)
    draft = Draft(
        to=("Bob <bob@example.test>",),
        bcc=("boss@example.test",),
        subject="Plans",
        text="First thoughts",
        attachments=(Attachment("notes.txt", b"one\ntwo\n", "text/plain"),),
    )
    first = await sending.save_draft(db=db, user_id=user_id, from_account_id=None, draft=draft)
    [stored] = await drafts_of(db, user_id)
    assert stored.id == first.message_id
    assert (stored.draft, stored.seen, stored.subject) == (True, True, "Plans")
    [raw] = await folder_raws(db, user_id, SpecialUse.DRAFTS)
    assert raw.startswith(b"Bcc: boss@example.test\r\n")
    assert b"Message-ID: " + first.key.encode() in raw

    # Saved again (the key from the form): the old version goes, one draft stays, with the same Message-ID.
    second = await sending.save_draft(
        db=db,
        user_id=user_id,
        from_account_id=None,
        draft=Draft(to=draft.to, bcc=draft.bcc, subject="Plans v2", text="Second thoughts"),
        replaces=DraftRef(first.message_id, first.key),
    )
    [stored] = await drafts_of(db, user_id)
    assert (stored.id, stored.subject, second.key) == (second.message_id, "Plans v2", first.key)

    opened = await sending.open_draft(db=db, user_id=user_id, message_id=second.message_id)
    assert (opened.to, opened.bcc, opened.subject) == ("Bob <bob@example.test>", "boss@example.test", "Plans v2")
    assert opened.text.strip() == "Second thoughts"
    assert opened.from_address == "alice@example.test"
    assert opened.key == first.key


async def test_a_draft_may_lack_recipients_but_not_hold_a_header_injection(db: Database) -> None:
    user_id = await make_user(db)
    saved = await sending.save_draft(db=db, user_id=user_id, from_account_id=None, draft=Draft(text="Just an idea"))
    assert [m.id for m in await drafts_of(db, user_id)] == [saved.message_id]
    for bad in (Draft(subject="Hi\r\nBcc: x@evil.test"), Draft(subject="=?utf-8?q?a=0D=0ABcc:_x@evil.test?=")):
        with pytest.raises(InvalidInput):
            await sending.save_draft(db=db, user_id=user_id, from_account_id=None, draft=bad)
    with pytest.raises(InvalidInput):
        await sending.save_draft(db=db, user_id=user_id, from_account_id=None, draft=Draft(to=("not an address",)))
    assert len(await drafts_of(db, user_id)) == 1


async def test_two_saves_of_one_draft_at_once_leave_one(db: Database) -> None:
    user_id = await make_user(db)
    first = await sending.save_draft(db=db, user_id=user_id, from_account_id=None, draft=Draft(text="v1"))
    ref = DraftRef(first.message_id, first.key)
    saves = [
        sending.save_draft(db=db, user_id=user_id, from_account_id=None, draft=Draft(text=f"v{n}"), replaces=ref)
        for n in range(2, 6)
    ]
    await asyncio.gather(*saves)
    assert len(await drafts_of(db, user_id)) == 1


async def test_a_draft_of_someone_else_or_outside_drafts_does_not_open(db: Database) -> None:
    owner = await make_user(db)
    other = await make_user(db, "mallory@example.test")
    saved = await sending.save_draft(db=db, user_id=owner, from_account_id=None, draft=Draft(text="secret"))
    with pytest.raises(NotFound):
        await sending.open_draft(db=db, user_id=other, message_id=saved.message_id)
    # Another user's key or row removes nothing of the owner's.
    await sending.save_draft(
        db=db, user_id=other, from_account_id=None, draft=Draft(), replaces=DraftRef(saved.message_id, saved.key)
    )
    assert [m.id for m in await drafts_of(db, owner)] == [saved.message_id]


async def test_save_draft_in_compose_then_edit_and_send_it(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    user_id = await signed_in_user(web_client, db)
    with scripted_aiosmtpd() as server:
        account = await add_account(
            db, secret_box, user_id, server.host, server.port, "ada@home.test", "Ada", signature_text="Ada, at home"
        )
        page = (await web_client.get("/compose")).text
        assert ">Save draft</button>" in page
        key = hidden(page, "draft_key")
        saved = await post_draft(
            web_client,
            {"send_from": str(account), "to": "bob@example.test", "bcc": "eve@example.test", "subject": "Budget",
             "body": "Numbers follow.", "draft_key": key},
            files=[("attachments", ("budget.csv", b"a,b\n1,2\n", "text/csv"))],
        )  # fmt: skip
        assert saved.status_code == 200, saved.text
        assert "Draft saved" in text_of(saved)
        [draft] = await drafts_of(db, user_id)
        assert hidden(saved.text, "draft_id") == str(draft.id)
        assert hidden(saved.text, "draft_key") == key
        assert "Attachments of the draft" in saved.text
        assert "budget.csv" in saved.text
        [raw] = await folder_raws(db, user_id, SpecialUse.DRAFTS)
        assert b"Ada, at home" not in raw  # the signature is added when it is sent

        # The message view of a draft offers "Edit draft"; a message elsewhere does not.
        view = await web_client.get(f"/mail/messages/{draft.id}")
        assert f'href="/compose?draft={draft.id}">Edit draft</a>' in view.text
        edit = await web_client.get(f"/compose?draft={draft.id}")
        assert '<h1 id="compose-title">Edit draft</h1>' in edit.text
        assert re.search(rf'<option value="{account}" selected>', edit.text)
        for shown in ('value="bob@example.test"', 'value="eve@example.test"', 'value="Budget"', "Numbers follow."):
            assert shown in edit.text
        file_key = re.search(r'name="keep_draft_attachment" value="(\w+)" checked', edit.text)
        assert file_key is not None

        sent = await web_client.post(
            "/compose",
            data={"_csrf_token": await csrf_token(web_client), "send_from": str(account), "to": "bob@example.test",
                  "cc": "", "bcc": "eve@example.test", "subject": "Budget", "body": "Numbers follow.",
                  "draft_id": str(draft.id), "draft_key": key, "keep_draft_attachment": file_key.group(1)},
        )  # fmt: skip
        assert "Message sent" in text_of(sent)
        [(recipients, data)] = server.handler.received
    assert sorted(recipients) == ["bob@example.test", "eve@example.test"]
    message = message_from_bytes(data, policy=policy.default)
    assert [part.get_filename() for part in message.iter_attachments()] == ["budget.csv"]
    assert data.count(b"Ada, at home") == 1
    assert await drafts_of(db, user_id) == []
    assert (await web_client.get(f"/compose?draft={draft.id}")).status_code == 404


async def test_autosave_answers_json_and_a_later_save_replaces_it(web_client: WebClient, db: Database) -> None:
    user_id = await signed_in_user(web_client, db)
    key = hidden((await web_client.get("/compose")).text, "draft_key")
    first = await post_draft(web_client, {"body": "Half a thought", "draft_key": key}, headers=JSON)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert (answer["message"], answer["draft_key"]) == ("Draft saved", key)
    # The page's next save comes with a stale draft_id (a pagehide before the answer came): the key still holds.
    await post_draft(web_client, {"body": "A whole thought", "draft_key": key}, headers=JSON)
    [draft] = await drafts_of(db, user_id)
    assert draft.preview.startswith("A whole thought")
    bad = await post_draft(web_client, {"subject": "x\r\nBcc: y@evil.test", "draft_key": key}, headers=JSON)
    assert bad.status_code == 400
    assert "subject" in bad.json()["error"]
    htmx = await post_draft(web_client, {"body": "Third", "draft_key": key}, headers=HTMX)
    assert "<html" not in htmx.text
    assert "Draft saved" in htmx.text
    assert len(await drafts_of(db, user_id)) == 1


async def test_autosave_needs_the_csrf_token(web_client: WebClient, db: Database) -> None:
    user_id = await signed_in_user(web_client, db)
    response = await web_client.post("/compose/draft", data={"body": "x"}, headers=JSON)
    assert response.status_code == 403
    assert await drafts_of(db, user_id) == []


async def test_nobody_edits_someone_elses_draft(web_client: WebClient, db: Database) -> None:
    owner = await signed_in_user(web_client, db)
    saved = await sending.save_draft(db=db, user_id=owner, from_account_id=None, draft=Draft(subject="Mine"))
    await make_user(db, "mallory@example.test")
    web_client.cookies.clear()
    await log_in(web_client, email="mallory@example.test", password="long enough")
    response = await web_client.get(f"/compose?draft={saved.message_id}")
    assert response.status_code == 404
    assert "Mine" not in response.text


async def test_a_draft_of_a_reply_keeps_its_thread(db: Database) -> None:
    user_id = await make_user(db)
    original = (
        b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: Lunch?\r\n"
        b"Message-ID: <lunch@example.test>\r\n\r\nNoon?\r\n"
    )
    async with db.write() as session:
        inbox = (await mailstore.ensure_special_folders(session, user_id))[SpecialUse.INBOX]
        stored = await mailstore.deliver(session, user_id=user_id, folder_id=inbox.id or 0, raw=original)
    saved = await sending.save_draft(
        db=db,
        user_id=user_id,
        from_account_id=None,
        draft=Draft(to=("bob@example.test",), subject="Re: Lunch?", text="Yes"),
        reply_to_message_id=stored.id,
    )
    [raw] = await folder_raws(db, user_id, SpecialUse.DRAFTS)
    assert b"In-Reply-To: <lunch@example.test>" in raw
    opened = await sending.open_draft(db=db, user_id=user_id, message_id=saved.message_id)
    assert opened.reply_to == stored.id
