"""Settings, Connectivity, Email Retrieval card, through the web face against the real Dovecot:
New Retrieval Task with Test Connection before saving, Retrieve Messages Now, Edit with a
write-only password, Delete, the "needs your action" badge, and another user's tasks.
"""

from __future__ import annotations

import re

import pytest
from litestar import Litestar
from sqlmodel import select

from service.config import Settings
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Message, RetrievalTask
from service.usecases import retrieval_tasks
from service.usecases.users import find_user
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, post_form, set_up_admin
from tests.mail_samples import sample
from tests.settings_web import htmx_post, input_value, sign_in_as_other_user, task_fields, text_of
from web.app import create_app

BADGE = re.compile(r'<a id="attention-badge"[^>]*aria-label="([^"]+)"[^>]*>(\d+)</a>')


@pytest.fixture
def web_app(settings: Settings, dovecot: DovecotServer) -> Litestar:
    """The app, trusting the Dovecot fixture's self-signed certificate (as a company CA would be)."""
    return create_app(settings.model_copy(update={"extra_ca_file": dovecot.cert_pem_path}))


async def _only_task(db: Database) -> RetrievalTask:
    async with db.read() as session:
        [task] = (await session.exec(select(RetrievalTask))).all()
    return task


async def _create(client: WebClient, fields: dict[str, str]) -> int:
    response = await post_form(client, "/settings/retrieval/new", fields)
    assert response.status_code == 303, text_of(response.text)
    match = re.fullmatch(r"/settings/connectivity#task-(\d+)", response.headers["location"])
    assert match is not None
    return int(match.group(1))


async def test_a_task_is_tested_before_saving_saved_and_run_now(
    web_client: WebClient, db: Database, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    await set_up_admin(web_client)
    for n in range(3):
        dovecot.deliver(mail_user.email, sample(f"Greeting {n}"))
    cards = await web_client.get("/settings/connectivity")
    assert "Email Retrieval" in cards.text
    assert '<button type="submit" class="button button-primary">New Retrieval Task</button>' in cards.text

    form = await web_client.get("/settings/retrieval/new")
    assert form.status_code == 200
    for field_id, label in [
        ("task-host", "Server address"),
        ("task-port", "Port"),
        ("task-security", "Security"),
        ("task-username", "Username"),
        ("task-password", "Password"),
        ("task-apop", "Enable APOP authentication"),
        ("task-leave", "Leave messages on server"),
        ("task-delete-after", "Delete from the server after (days)"),
        ("task-destination", "Destination folder"),
        ("task-folder_transfer-subfolders", "Add as subfolders"),
        ("task-folder_transfer-root", "Add as root level folders"),
    ]:
        assert f'<label for="{field_id}">{label}</label>' in form.text
    assert input_value(form.text, "task-port") == "993"  # IMAP over SSL/TLS, the defaults

    fields = task_fields(dovecot, mail_user)
    tested = await htmx_post(web_client, "/settings/retrieval/test", fields)
    assert tested.status_code == 200
    shown = text_of(tested.text)
    assert "Test Connection succeeded" in shown
    for step in ["Look up the server: passed", "Connect: passed", "Sign in: passed", "Count messages: passed"]:
        assert step in shown
    assert await retrieval_tasks.list_tasks(db=db, user_id=(await find_user(db=db, email=ADMIN_EMAIL)).id) == []

    # Without htmx, the same test answers the whole form, steps included, and keeps what was typed.
    plain = await post_form(web_client, "/settings/retrieval/test", fields)
    assert plain.status_code == 200
    assert "Sign in: passed" in text_of(plain.text)
    assert input_value(plain.text, "task-host") == "127.0.0.1"
    assert input_value(plain.text, "task-password") == ""

    task_id = await _create(web_client, fields)
    listed = await web_client.get("/settings/connectivity")
    assert "Saved the retrieval task Remote." in text_of(listed.text)
    assert f'id="task-{task_id}"' in listed.text
    assert "Not run yet" in listed.text
    assert "Only when you click Retrieve Messages Now" in listed.text
    assert "Saved the retrieval task" not in (await web_client.get("/settings/connectivity")).text  # shown once

    ran = await htmx_post(web_client, f"/settings/retrieval/{task_id}/run")
    assert ran.status_code == 200
    row = text_of(ran.text)
    assert "3 new messages in " in row
    assert "Messages imported 3" in row
    assert "Working" in row
    assert 'hx-swap-oob="true"' in ran.text  # the header badge refreshed with the row
    async with db.read() as session:
        assert len((await session.exec(select(Message))).all()) == 3

    dovecot.deliver(mail_user.email, sample("One more"))
    again = await post_form(web_client, f"/settings/retrieval/{task_id}/run", {})  # no JavaScript
    assert again.status_code == 303
    assert again.headers["location"] == f"/settings/connectivity#task-{task_id}"
    shown = text_of((await web_client.get("/settings/connectivity")).text)
    assert "Remote: 1 new message in " in shown
    assert "Messages imported 4" in shown

    checked = await htmx_post(web_client, f"/settings/retrieval/{task_id}/test")
    assert "Sign in: passed" in text_of(checked.text)
    for response in (tested, plain, listed, ran, checked):
        assert mail_user.password not in response.text


async def test_edit_keeps_the_password_when_left_empty_and_never_shows_it(
    web_client: WebClient, db: Database, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    await set_up_admin(web_client)
    task_id = await _create(web_client, task_fields(dovecot, mail_user))
    stored = (await _only_task(db)).password_encrypted

    edit = await web_client.get(f"/settings/retrieval/{task_id}/edit")
    assert edit.status_code == 200
    assert input_value(edit.text, "task-host") == "127.0.0.1"
    assert input_value(edit.text, "task-username") == mail_user.email
    assert input_value(edit.text, "task-password") == ""
    assert mail_user.password not in edit.text
    assert "Leave empty to keep the stored password." in edit.text

    changes = task_fields(dovecot, mail_user, name="Renamed", password="", leave_on_server="")
    tested = await htmx_post(web_client, f"/settings/retrieval/{task_id}/edit/test", changes)
    assert "Sign in: passed" in text_of(tested.text)  # the stored password was used

    saved = await post_form(web_client, f"/settings/retrieval/{task_id}/edit", changes)
    assert saved.status_code == 303
    task = await _only_task(db)
    assert (task.name, task.leave_on_server, task.password_encrypted) == ("Renamed", False, stored)
    assert task.password_encrypted is not None
    assert secret_box.decrypt(task.password_encrypted) == mail_user.password

    dovecot.deliver(mail_user.email, sample("Kept password"))
    ran = await htmx_post(web_client, f"/settings/retrieval/{task_id}/run")
    assert "1 new message in " in text_of(ran.text)
    assert dovecot.message_count(mail_user.email) == 0  # "Leave messages on server" was turned off

    wrong = await post_form(web_client, f"/settings/retrieval/{task_id}/edit", {**changes, "password": "new-Secret-1"})
    assert wrong.status_code == 303
    changed = (await _only_task(db)).password_encrypted
    assert changed is not None
    assert secret_box.decrypt(changed) == "new-Secret-1"


async def test_mistakes_are_shown_next_to_their_fields_and_the_password_is_not_echoed(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    # Before any form was posted (afterwards, its password is kept for the next try).
    problems = await htmx_post(web_client, "/settings/retrieval/test", {"protocol": "imap", "host": "a b"})
    assert problems.status_code == 200  # htmx only swaps successful answers
    assert "Fix these before testing the connection" in problems.text
    assert "Enter the password for the remote mailbox." in problems.text

    typed = "typed-Secret-42"
    response = await post_form(
        web_client,
        "/settings/retrieval/new",
        {"protocol": "pop3", "host": "", "security": "ssl", "port": "99999", "username": "", "password": typed},
    )
    assert response.status_code == 400
    assert typed not in response.text
    for field_id, message in [
        ("task-host", "Enter the server&#39;s host name or address"),
        ("task-port", "The port must be a number from 1 to 65535."),
        ("task-username", "Enter the username for the remote mailbox."),
    ]:
        assert re.search(rf'<p class="field-error" id="{field_id}-error">{message}', response.text), field_id
        assert re.search(rf'<input id="{field_id}"[^>]*aria-invalid="true"', response.text), field_id
    assert 'role="alert"' in response.text
    assert input_value(response.text, "task-port") == "99999"


async def test_a_rejected_password_shows_the_badge_until_the_task_is_fixed(
    web_client: WebClient, db: Database, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    await set_up_admin(web_client)
    assert 'id="attention-badge" hidden' in (await web_client.get("/")).text
    task_id = await _create(web_client, task_fields(dovecot, mail_user, password="not-the-password"))

    ran = await htmx_post(web_client, f"/settings/retrieval/{task_id}/run")
    assert "rejected the username or password" in text_of(ran.text)
    assert BADGE.search(ran.text) is not None  # refreshed out of band
    home = await web_client.get("/")
    badge = BADGE.search(home.text)
    assert badge is not None
    assert badge.groups() == ("1 item needs your action in Settings", "1")
    assert 'href="/settings/connectivity"' in badge.group(0)
    row = text_of((await web_client.get("/settings/connectivity")).text)
    assert "Needs your action" in row
    assert "Last error" in row
    assert "Failing since" in row

    for _ in range(2):  # three rejected sign-ins pause the task
        await htmx_post(web_client, f"/settings/retrieval/{task_id}/run")
    paused = text_of((await web_client.get("/settings/connectivity")).text)
    assert "Paused: needs your action" in paused
    assert "Correct the password, then resume the task." in paused
    assert "Paused until you resume it" in paused
    assert "Resume Task" in paused

    resumed = await htmx_post(web_client, f"/settings/retrieval/{task_id}/resume")
    assert "Resumed" in text_of(resumed.text)
    assert 'id="attention-badge" hidden hx-swap-oob="true"' in resumed.text
    assert (await _only_task(db)).paused_reason is None

    await htmx_post(web_client, f"/settings/retrieval/{task_id}/run")
    assert BADGE.search((await web_client.get("/")).text) is not None
    fixed = task_fields(dovecot, mail_user)  # the right password: editing it resumes and clears the badge
    assert (await post_form(web_client, f"/settings/retrieval/{task_id}/edit", fixed)).status_code == 303
    assert BADGE.search((await web_client.get("/")).text) is None
    assert "No new messages." in text_of((await htmx_post(web_client, f"/settings/retrieval/{task_id}/run")).text)


async def test_delete_removes_the_task_and_keeps_its_messages(
    web_client: WebClient, db: Database, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    await set_up_admin(web_client)
    dovecot.deliver(mail_user.email, sample("Stays"))
    task_id = await _create(web_client, task_fields(dovecot, mail_user))
    await htmx_post(web_client, f"/settings/retrieval/{task_id}/run")

    deleted = await htmx_post(web_client, f"/settings/retrieval/{task_id}/delete")
    assert deleted.headers["HX-Redirect"] == "/settings/connectivity"
    page = text_of((await web_client.get("/settings/connectivity")).text)
    assert "Deleted the retrieval task Remote. The messages it brought in stay." in page
    assert "No retrieval tasks yet" in page
    async with db.read() as session:
        assert (await session.exec(select(RetrievalTask))).all() == []
        assert len((await session.exec(select(Message))).all()) == 1
    assert (await post_form(web_client, f"/settings/retrieval/{task_id}/delete", {})).status_code == 404


async def test_another_users_task_is_not_found(
    web_client: WebClient, db: Database, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    await set_up_admin(web_client)
    task_id = await _create(web_client, task_fields(dovecot, mail_user))
    await sign_in_as_other_user(web_client, db)

    assert (await web_client.get(f"/settings/retrieval/{task_id}/edit")).status_code == 404
    for action in ["run", "test", "resume", "delete", "edit", "edit/test"]:
        fields = task_fields(dovecot, mail_user, password="") if "edit" in action else {}
        plain = await post_form(web_client, f"/settings/retrieval/{task_id}/{action}", fields)
        assert plain.status_code == 404, action
        assert (await htmx_post(web_client, f"/settings/retrieval/{task_id}/{action}", fields)).status_code == 404
    page = await web_client.get("/settings/connectivity")
    assert f'id="task-{task_id}"' not in page.text
    assert "No retrieval tasks yet" in page.text
    task = await _only_task(db)
    assert (task.name, task.last_run_at) == ("Remote", None)  # untouched
