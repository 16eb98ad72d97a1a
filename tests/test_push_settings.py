"""Push new mail (IMAP IDLE), issue 16, as a user sets and sees it: the task form's checkbox, "push"
and the read-only "push_state"/"push_detail" in the API, `retrieval add --push/--no-push` and
`retrieval list`, the rule that saving new connection settings forgets the push lease and state,
and the Connectivity card's push line for each state (the state columns set directly, as the push
supervisor would).

The app runs with TRIBUTARY_PUSH_CONNECTIONS=0 so no push supervisor touches the state columns the
tests set, and tasks are created manual (or automatic but not due) so no run starts.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from service.config import Settings
from service.domain.values import Protocol, PushState, RetrievalMethod, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import RetrievalTask
from service.persistence.types import utcnow
from service.usecases import retrieval_tasks
from service.usecases.retrieval_tasks import NewTask
from service.usecases.users import add_user, find_user
from tests.cli_runner import tributary
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, post_form, set_up_admin
from tests.settings_web import text_of
from tests.test_api import api, signed_in

LABEL = '<label for="task-push">Push new mail (IMAP IDLE)</label>'
CHECKBOX = re.compile(r'<input id="task-push" name="push" type="checkbox" value="on"( checked)?')


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"push_connections": 0})


def _form(**changes: str) -> dict[str, str]:
    """The New Retrieval Task form for an IMAP mailbox, run manually (nothing connects on save)."""
    return {
        "name": "Remote",
        "protocol": "imap",
        "host": "imap.example.test",
        "security": "ssl",
        "port": "993",
        "username": "ada@example.test",
        "password": "remote secret",
        "verify_certificate": "on",
        "timeout_seconds": "10",
        "method": "manual",
        "folder_transfer": "subfolders",
        "destination_folder": "",
        "apply_filters": "on",
        **changes,
    }


def _new(**changes: Any) -> NewTask:
    fields: dict[str, Any] = {
        "protocol": Protocol.IMAP,
        "host": "imap.example.test",
        "username": "ada@example.test",
        "password": "remote secret",
        "security": Security.SSL,
        **changes,
    }
    return NewTask(**fields)


async def _row(db: Database, task_id: int) -> RetrievalTask:
    async with db.read() as session:
        task = await session.get(RetrievalTask, task_id)
    assert task is not None
    return task


async def _set_push(db: Database, task_id: int, state: PushState | None, detail: str | None = None) -> None:
    """What the push supervisor writes while it holds the task's push connection."""
    async with db.write() as session:
        task = await session.get(RetrievalTask, task_id)
        assert task is not None
        task.push_owner = "worker-1"
        task.push_expires_at = utcnow() + timedelta(minutes=5)
        task.push_state = state
        task.push_detail = detail
        task.push_retry_at = utcnow() + timedelta(minutes=1) if state is PushState.FAILED else None
        task.next_run_at = utcnow() + timedelta(hours=1)  # not due: the dispatcher leaves it alone
        session.add(task)


def _forgotten(task: RetrievalTask) -> bool:
    push = (task.push_owner, task.push_expires_at, task.push_state, task.push_detail, task.push_retry_at)
    return push == (None, None, None, None, None)


async def _only_task_id(db: Database) -> int:
    async with db.read() as session:
        [task] = (await session.exec(select(RetrievalTask))).all()
    assert task.id is not None
    return task.id


async def test_the_form_offers_push_checked_saves_it_and_shows_it_again_on_edit(
    web_client: WebClient, db: Database
) -> None:
    await set_up_admin(web_client)
    blank = await web_client.get("/settings/retrieval/new")
    assert LABEL in blank.text
    box = CHECKBOX.search(blank.text)
    assert box is not None
    assert box.group(1) == " checked"  # on by default for a new task
    assert 'class="check imap-only"' in blank.text.split('id="task-push"')[0].rsplit("<div", 1)[1]
    assert "The Connectivity card shows whether the server offers it." in text_of(blank.text)

    created = await post_form(web_client, "/settings/retrieval/new", _form(push="on"))
    assert created.status_code == 303, text_of(created.text)
    task_id = await _only_task_id(db)
    assert (await _row(db, task_id)).push is True
    edit = await web_client.get(f"/settings/retrieval/{task_id}/edit")
    box = CHECKBOX.search(edit.text)
    assert box is not None
    assert box.group(1) == " checked"

    unticked = await post_form(web_client, f"/settings/retrieval/{task_id}/edit", _form())  # no "push": unticked
    assert unticked.status_code == 303, text_of(unticked.text)
    assert (await _row(db, task_id)).push is False
    edit = await web_client.get(f"/settings/retrieval/{task_id}/edit")
    box = CHECKBOX.search(edit.text)
    assert box is not None
    assert box.group(1) is None

    # POP3 has no IDLE: the (hidden) box is ignored and the task stores push off.
    pop = await post_form(web_client, f"/settings/retrieval/{task_id}/edit", _form(protocol="pop3", push="on"))
    assert pop.status_code == 303, text_of(pop.text)
    assert (await _row(db, task_id)).push is False


async def test_the_api_takes_push_default_true_and_returns_it_with_the_read_only_state(
    web_client: WebClient, db: Database
) -> None:
    await signed_in(web_client, db)
    body = {"protocol": "imap", "host": "imap.example.test", "username": "ada", "password": "pw", "method": "manual"}

    created = await api(web_client, "POST", "/retrieval-tasks", body)
    assert created.status_code == 201, created.text
    task = created.json()
    assert (task["push"], task["push_state"], task["push_detail"]) == (True, None, None)
    task_id = task["id"]

    off = await api(web_client, "POST", "/retrieval-tasks", {**body, "push": False})
    assert off.status_code == 201, off.text
    assert off.json()["push"] is False
    assert (await _row(db, off.json()["id"])).push is False

    await _set_push(db, task_id, PushState.FAILED, "The server refused the sign-in.")
    read = (await api(web_client, "GET", f"/retrieval-tasks/{task_id}")).json()
    assert (read["push"], read["push_state"], read["push_detail"]) == (
        True,
        "failed",
        "The server refused the sign-in.",
    )
    listed = {t["id"]: t for t in (await api(web_client, "GET", "/retrieval-tasks")).json()}
    assert listed[task_id]["push_state"] == "failed"

    updated = await api(web_client, "PUT", f"/retrieval-tasks/{task_id}", {**body, "push": False})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["push"], updated.json()["push_state"], updated.json()["push_detail"]) == (False, None, None)
    assert _forgotten(await _row(db, task_id))

    again = await api(web_client, "PUT", f"/retrieval-tasks/{task_id}", body)  # without "push": the default, on
    assert again.status_code == 200, again.text
    assert again.json()["push"] is True

    pop = await api(web_client, "PUT", f"/retrieval-tasks/{task_id}", {**body, "protocol": "pop3", "push": True})
    assert pop.status_code == 200, pop.text
    assert pop.json()["push"] is False  # POP3 stores push off

    read_only = await api(web_client, "PUT", f"/retrieval-tasks/{task_id}", {**body, "push_state": "listening"})
    assert read_only.status_code in (200, 400)  # an unknown field is refused or ignored, never stored
    assert (await _row(db, task_id)).push_state is None


def test_cli_add_no_push_and_list(settings: Settings) -> None:
    assert (
        tributary(settings, "user", "add", "me@example.test", "--password-stdin", stdin="long enough\n").returncode == 0
    )
    common = ("retrieval", "add", "--user", "me@example.test", "--protocol", "imap", "--server", "imap.example.test")
    ids = []
    for extra in (("--no-push",), ()):
        added = tributary(
            settings, *common, "--username", "ada", "--password-stdin", "--json", *extra, stdin="secret\n"
        )
        assert added.returncode == 0, added.stderr
        ids.append(json.loads(added.stdout)["id"])
    manual = tributary(
        settings, *common, "--username", "bob", "--password-stdin", "--manual", "--push", "--json", stdin="secret\n"
    )
    assert manual.returncode == 0, manual.stderr

    listed = json.loads(tributary(settings, "retrieval", "list", "--user", "me@example.test", "--json").stdout)
    assert [(t["id"], t["push"], t["push_state"]) for t in listed[:2]] == [(ids[0], False, None), (ids[1], True, None)]

    plain = tributary(settings, "retrieval", "list", "--user", "me@example.test").stdout.splitlines()
    assert "push: off" in plain[0]
    assert "push: on" in plain[1]
    assert "push" not in plain[2]  # a manual task never pushes: nothing to say


async def test_saving_new_connection_settings_forgets_the_push_lease_and_state(
    db: Database, secret_box: SecretBox
) -> None:
    owner = await add_user(db=db, email="me@example.test", password="long enough password")
    task = await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=owner.id, new=_new())
    assert task.push is True

    async def save(new: NewTask) -> RetrievalTask:
        await retrieval_tasks.update_task(db=db, secret_box=secret_box, user_id=owner.id, task_id=task.id, new=new)
        return await _row(db, task.id)

    await _set_push(db, task.id, PushState.LISTENING)
    # Nothing about the connection (an empty password keeps the stored one, as on the Edit form).
    kept = await save(_new(name="Renamed", apply_filters=False, password=""))
    assert (kept.push_owner, kept.push_state) == ("worker-1", PushState.LISTENING)

    changes: list[dict[str, Any]] = [
        {"host": "mail.example.test"},
        {"port": 10993},
        {"security": Security.STARTTLS},
        {"username": "ada2@example.test"},
        {"password": "a new secret"},
        {"verify_certificate": False},
        {"method": RetrievalMethod.MANUAL},
        {"push": False},
    ]
    for change in changes:
        await save(_new())  # back to the original settings (push on)
        await _set_push(db, task.id, PushState.FAILED, "The server refused the sign-in.")
        assert _forgotten(await save(_new(**change))), change

    await save(_new())
    await _set_push(db, task.id, PushState.FAILED, "The server refused the sign-in.")
    await retrieval_tasks.resume_task(db=db, task_id=task.id, user_id=owner.id)
    assert _forgotten(await _row(db, task.id))  # resumed: push is tried again at once

    pop = await retrieval_tasks.add_task(
        db=db, secret_box=secret_box, user_id=owner.id, new=_new(protocol=Protocol.POP3, push=True)
    )
    assert pop.push is False


def _push_lines(page: str) -> dict[int, str]:
    return {
        int(task_id): text_of(line)
        for task_id, line in re.findall(r'<p class="[^"]*conn-push[^"]*" id="task-(\d+)-push">(.*?)</p>', page)
    }


async def test_the_connectivity_card_says_what_push_is_doing_for_each_task(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    await set_up_admin(web_client)
    owner = await find_user(db=db, email=ADMIN_EMAIL)
    ids: dict[str, int] = {}
    for key, new in {
        "listening": _new(name="listening"),
        "unsupported": _new(name="unsupported"),
        "connecting": _new(name="connecting"),
        "failed": _new(name="failed"),
        "waiting": _new(name="waiting"),
        "off": _new(name="off", push=False),
        "paused": _new(name="paused"),
        "manual": _new(name="manual", method=RetrievalMethod.MANUAL),
        "pop": _new(name="pop", protocol=Protocol.POP3),
    }.items():
        ids[key] = (await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=owner.id, new=new)).id
    await _set_push(db, ids["listening"], PushState.LISTENING)
    await _set_push(db, ids["unsupported"], PushState.UNSUPPORTED)
    await _set_push(db, ids["connecting"], PushState.CONNECTING)
    await _set_push(db, ids["failed"], PushState.FAILED, "The server refused the sign-in.")
    for key in ("waiting", "off", "pop", "paused"):
        await _set_push(db, ids[key], None)
    async with db.write() as session:  # paused after sign-in failures: the supervisor let go of it
        paused = await session.get(RetrievalTask, ids["paused"])
        assert paused is not None
        paused.paused_reason = "The server refused the username or password three times."
        session.add(paused)

    page = await web_client.get("/settings/connectivity")
    assert page.status_code == 200
    lines = _push_lines(page.text)
    assert lines == {
        ids["listening"]: "Push: listening",
        ids["unsupported"]: "Push: not offered by the server",
        ids["connecting"]: "Push: connecting",
        ids["failed"]: "Push: stopped — The server refused the sign-in.",
        ids["waiting"]: "Push: on, not connected yet",
        ids["off"]: "Push: off",
        ids["paused"]: "Push: paused with the task",
    }  # nothing for the manual and the POP3 task
