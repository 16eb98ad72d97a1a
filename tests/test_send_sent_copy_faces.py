"""Choosing the Sent copy's retrieval task (issue 18) through every face: the SMTP account form, the
API ("sent_copy_task") and `tributary smtp add --sent-copy-task` / `smtp list --json`. Only the
user's own IMAP tasks are accepted; another user's task id is refused in the same words as a
missing one, and nothing is saved."""

from __future__ import annotations

import json

from sqlmodel import select

from service.config import Settings
from service.domain.outbox import OutboxStatus, SentCopyStatus
from service.domain.values import Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import OutboxEntry, SmtpAccount
from service.persistence.types import utcnow
from service.usecases import retrieval_tasks
from service.usecases.users import add_user, find_user
from tests.cli_runner import tributary
from tests.fixtures.smtp import StartSmtpServer
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, post_form, set_up_admin
from tests.settings_web import text_of
from tests.test_api import api, ok, smtp_body

REFUSED = "Choose one of your IMAP retrieval tasks for the copy in the remote Sent folder."


async def imap_task(db: Database, secret_box: SecretBox, user_id: int, host: str = "imap.example.test") -> int:
    new = retrieval_tasks.NewTask(
        protocol=Protocol.IMAP,
        host=host,
        port=993,
        security=Security.SSL,
        username="ada@home.test",
        password="remote password",
        name="Home",
    )
    return (await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=user_id, new=new)).id


async def accounts(db: Database) -> list[SmtpAccount]:
    async with db.read() as session:
        return list((await session.exec(select(SmtpAccount))).all())


async def test_the_api_takes_the_users_own_imap_task_and_refuses_another_users(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    await set_up_admin(web_client)
    me = (await find_user(db=db, email=ADMIN_EMAIL)).id
    other = (await add_user(db=db, email="mallory@example.test", password="long enough")).id
    mine, theirs = await imap_task(db, secret_box, me), await imap_task(db, secret_box, other)

    refused = await api(web_client, "POST", "/smtp-accounts", smtp_body("127.0.0.1", 2525, sent_copy_task=theirs))
    assert refused.status_code == 400
    assert refused.json() == {"error": REFUSED}
    assert await accounts(db) == []

    created = ok(
        await api(web_client, "POST", "/smtp-accounts", smtp_body("127.0.0.1", 2525, sent_copy_task=mine)), 201
    )
    assert (created["sent_copy_task"], created["sent_copy_note"]) == (mine, None)
    [listed] = ok(await api(web_client, "GET", "/smtp-accounts"))
    assert listed["sent_copy_task"] == mine

    moved = await api(
        web_client, "PUT", f"/smtp-accounts/{created['id']}", smtp_body("127.0.0.1", 2525, sent_copy_task=theirs)
    )
    assert moved.status_code == 400
    [kept] = await accounts(db)
    assert kept.sent_copy_task_id == mine

    gmail = ok(
        await api(
            web_client,
            "POST",
            "/smtp-accounts",
            smtp_body("smtp.gmail.com", 587, email_address="ada@gmail.com", sent_copy_task=mine),
        ),
        201,
    )
    assert "Gmail (smtp.gmail.com) saves every message you send in its Sent folder itself" in gmail["sent_copy_note"]
    cleared = ok(await api(web_client, "PUT", f"/smtp-accounts/{created['id']}", smtp_body("127.0.0.1", 2525)))
    assert cleared["sent_copy_task"] is None


async def test_the_form_offers_the_users_imap_tasks_and_refuses_another_users(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    await set_up_admin(web_client)
    me = (await find_user(db=db, email=ADMIN_EMAIL)).id
    other = (await add_user(db=db, email="mallory@example.test", password="long enough")).id
    mine = await imap_task(db, secret_box, me, host="imap.gmail.com")
    theirs = await imap_task(db, secret_box, other, host="imap.mallory.test")

    form = await web_client.get("/settings/smtp/new")
    assert '<label for="smtp-sent-copy">Also save in the Sent folder of</label>' in form.text
    assert f'<option value="{mine}">Home (ada@home.test on imap.gmail.com)</option>' in form.text
    assert "imap.mallory.test" not in form.text

    fields = {
        "display_name": "Ada",
        "email_address": "ada@home.test",
        "host": "127.0.0.1",
        "security": "none",
        "port": "2525",
        "timeout_seconds": "10",
        "save_copy_in_sent": "on",
        "is_active": "on",
    }
    refused = await post_form(web_client, "/settings/smtp/new", fields | {"sent_copy_task": str(theirs)})
    assert refused.status_code == 400
    assert REFUSED in text_of(refused.text)
    assert 'aria-invalid="true"' in refused.text
    assert await accounts(db) == []
    without_local = await post_form(
        web_client, "/settings/smtp/new", fields | {"sent_copy_task": str(mine)} | {"save_copy_in_sent": ""}
    )
    assert without_local.status_code == 400
    assert "needs “Save a copy in Sent” on" in text_of(without_local.text)

    saved = await post_form(web_client, "/settings/smtp/new", fields | {"sent_copy_task": str(mine)})
    assert saved.status_code == 303, saved.text
    [account] = await accounts(db)
    assert account.sent_copy_task_id == mine
    edit = await web_client.get(f"/settings/smtp/{account.id}/edit")
    assert f'<option value="{mine}" selected>' in edit.text
    assert "Gmail (imap.gmail.com) saves every message you send in its Sent folder itself" in text_of(edit.text)
    card = await web_client.get("/settings/connectivity")
    assert "Sent copy" in text_of(card.text)


async def test_the_cli_takes_sent_copy_task_and_lists_it(
    settings: Settings, db: Database, secret_box: SecretBox, smtp_server: StartSmtpServer
) -> None:
    server = smtp_server(mode="plain", require_auth=False, require_starttls=False)
    user = "alice@example.test"
    assert tributary(settings, "user", "add", user, "--password-stdin", stdin="long enough\n").returncode == 0
    other = (await add_user(db=db, email="mallory@example.test", password="long enough")).id
    me = (await find_user(db=db, email=user)).id
    mine, theirs = await imap_task(db, secret_box, me, host="imap.gmail.com"), await imap_task(db, secret_box, other)
    base = ["smtp", "add", "--user", user, "--email", user, "--server", server.host, "--security", "none"]
    base += ["--port", str(server.port)]

    refused = tributary(settings, *base, "--sent-copy-task", str(theirs))
    assert refused.returncode == 1
    assert refused.stderr.strip() == REFUSED
    assert await accounts(db) == []

    added = tributary(settings, *base, "--sent-copy-task", str(mine), "--json")
    assert added.returncode == 0, added.stderr
    listed = tributary(settings, "smtp", "list", "--user", user, "--json")
    [account] = json.loads(listed.stdout)
    assert (account["sent_copy_task"], account["sent_copy_note"]) == (mine, None)
    text = tributary(settings, "smtp", "list", "--user", user)
    assert f"[Sent copy: task {mine}]" in text.stdout

    sent = tributary(settings, "send", "--user", user, "--from", "1", "--to", "bob@example.test", "--subject", "Hi")
    assert sent.returncode == 0, sent.stderr
    assert len(server.received) == 1
    outbox = tributary(settings, "outbox", "--user", user, "--all")
    assert (
        "Sent copy: skipped: Gmail (imap.gmail.com) saves every message you send in its Sent folder itself"
        in outbox.stdout
    )
    [entry] = json.loads(tributary(settings, "outbox", "--user", user, "--all", "--json").stdout)
    assert entry["sent_copy"] == "skipped"


async def test_the_outbox_page_and_api_show_the_sent_copys_state(web_client: WebClient, db: Database) -> None:
    """A sent message whose copy for the remote Sent folder is pending or failed stays on the Outbox
    page and in GET /outbox, saying so; one whose copy is done leaves them (it is only in ?all)."""
    await set_up_admin(web_client)
    me = (await find_user(db=db, email=ADMIN_EMAIL)).id
    states = {
        "pending": (SentCopyStatus.PENDING, "imap.home.test is not answering."),
        "failed": (SentCopyStatus.FAILED, "Tributary gave up saving a copy."),
        "done": (SentCopyStatus.DONE, None),
    }
    async with db.write() as session:
        for name, (status, detail) in states.items():
            session.add(
                OutboxEntry(
                    user_id=me,
                    envelope_from=f"{name}@home.test",
                    status=OutboxStatus.SENT,
                    give_up_at=utcnow(),
                    sent_copy_status=status,
                    sent_copy_error=detail,
                )
            )

    page = text_of((await web_client.get("/outbox")).text)
    assert "Copy in remote Sent: pending (imap.home.test is not answering.)" in page
    assert "Copy in remote Sent: failed (Tributary gave up saving a copy.)" in page
    assert "done@home.test" not in page
    listed = {entry["from_address"]: entry for entry in ok(await api(web_client, "GET", "/outbox"))}
    assert sorted(listed) == ["failed@home.test", "pending@home.test"]
    pending = listed["pending@home.test"]
    assert (pending["sent_copy"], pending["sent_copy_detail"]) == ("pending", "imap.home.test is not answering.")
    every = ok(await api(web_client, "GET", "/outbox?all=true"))
    assert {entry["from_address"]: entry["sent_copy"] for entry in every}["done@home.test"] == "done"
