"""What to import with "Sign in with <provider>" on New Retrieval Task (issue 18): the pending task
keeps the task form's initial import choice and folder patterns (task-oauth.js copies them into
the provider button's form), and a bad choice is refused in one sentence with nothing saved.
The provider is the local authorization server of tests/test_oauth_web.py."""

from __future__ import annotations

import json

from sqlmodel import select

from service.persistence.database import Database
from service.persistence.tables import RetrievalTask
from tests.fixtures.webapp import WebClient, post_form, set_up_admin
from tests.test_api import api
from tests.test_oauth_web import _provider, settings, web_app  # noqa: F401 (fixtures: provider "local")


async def _tasks(db: Database) -> list[RetrievalTask]:
    async with db.read() as session:
        return list((await session.exec(select(RetrievalTask))).all())


async def test_the_provider_button_keeps_what_to_import(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    for bad in ({"initial": "since", "initial_since": "2024-02-30"}, {"exclude_folders": "Spam\x00"}):
        refused = await post_form(
            web_client, "/settings/retrieval/oauth", {"provider": "local", "protocol": "imap", **bad}
        )
        assert refused.status_code == 400, refused.text
        assert await _tasks(db) == []
    assert "is not a date" in refused.text or "control characters" in refused.text

    started = await post_form(
        web_client,
        "/settings/retrieval/oauth",
        {
            "provider": "local",
            "protocol": "imap",
            "initial": "since",
            "initial_since": "2024-03-01",
            "include_folders": "INBOX\r\nEntwürfe/*",
            "exclude_folders": "*Spam*",
        },
    )
    assert started.status_code == 303, started.text
    [task] = await _tasks(db)
    assert task.initial == "since:2024-03-01"
    assert json.loads(task.include_folders) == ["INBOX", "Entwürfe/*"]
    assert json.loads(task.exclude_folders) == ["*Spam*"]
    page = await web_client.get("/settings/retrieval/new")
    assert '<script src="/static/js/task-oauth.js" defer></script>' in page.text
    assert (await web_client.get("/static/js/task-oauth.js")).status_code == 200


async def test_pop3_and_defaults(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    plain = await post_form(web_client, "/settings/retrieval/oauth", {"provider": "local", "protocol": "imap"})
    assert plain.status_code == 303
    pop = await post_form(
        web_client,
        "/settings/retrieval/oauth",
        {"provider": "local", "protocol": "pop3", "initial": "new", "include_folders": "INBOX"},
    )
    assert pop.status_code == 303
    first, second = sorted(await _tasks(db), key=lambda t: t.id or 0)
    assert (first.initial, json.loads(first.include_folders)) == ("all", [])
    assert (second.initial, json.loads(second.include_folders)) == ("new", [])  # POP3 has one folder


async def test_the_api_start_takes_what_to_import(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    body = {"provider": "local", "kind": "retrieval", "initial": "since:2024-03-01", "exclude_folders": ["Spam*"]}
    refused = await api(web_client, "POST", "/oauth/start", {**body, "include_folders": ["Inbox\r\nBcc"]})
    assert refused.status_code == 400
    assert "line breaks" in refused.text
    assert await _tasks(db) == []
    started = await api(web_client, "POST", "/oauth/start", body)
    assert started.status_code == 201, started.text
    [task] = await _tasks(db)
    assert (task.initial, json.loads(task.exclude_folders)) == ("since:2024-03-01", ["Spam*"])
