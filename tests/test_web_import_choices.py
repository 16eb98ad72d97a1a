"""What to import on the retrieval task form, through the web face (issue 18): the initial import
radios with their date, and the folder ticks Test Connection lists turned into the saved patterns."""

from __future__ import annotations

import json

import httpx
from sqlmodel import select

from service.persistence.database import Database
from service.persistence.tables import RetrievalTask
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.webapp import WebClient, csrf_token, set_up_admin
from tests.settings_web import task_fields


async def _post(client: WebClient, fields: dict[str, str | list[str]]) -> httpx.Response:
    return await client.post("/settings/retrieval/new", data={"_csrf_token": await csrf_token(client), **fields})


async def test_the_initial_import_and_ticked_folders_are_saved(
    web_client: WebClient, db: Database, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    await set_up_admin(web_client)
    imap = task_fields(dovecot, mail_user, protocol="imap", port=str(dovecot.imaps_port))

    for since in ("", "2024-02-30", "01.03.2024", "2024-03-01\r\nnew"):
        refused = await _post(web_client, {**imap, "initial": "since", "initial_since": since})
        assert refused.status_code == 400, since
        assert "Enter the date to import messages since, as YYYY-MM-DD" in refused.text
    nothing = await _post(
        web_client, {**imap, "folder_listed": ["INBOX", "Спам"], "folder_ticked": [], "only_these": "on"}
    )
    assert nothing.status_code == 400
    assert "Tick at least one folder to import" in nothing.text

    saved = await _post(
        web_client,
        {
            **imap,
            "initial": "since",
            "initial_since": "2024-03-01",
            "include_folders": "ignored once the list is shown",
            "folder_listed": ["INBOX", "Спам", "Архив/2024"],
            "folder_ticked": ["INBOX", "Архив/2024"],
            "only_these": "on",
        },
    )
    assert saved.status_code == 303, saved.text
    async with db.read() as session:
        [task] = (await session.exec(select(RetrievalTask))).all()
    assert task.initial == "since:2024-03-01"
    assert json.loads(task.include_folders) == ["INBOX", "Архив/2024"]
    assert json.loads(task.exclude_folders) == []

    card = await web_client.get("/settings/connectivity")
    assert "What to import" in card.text
    assert "Messages since 2024-03-01 · Folders: INBOX, Архив/2024" in card.text

    edit = await web_client.get(f"/settings/retrieval/{task.id}/edit")
    assert 'value="2024-03-01"' in edit.text
    archive = "Архив/2024"
    assert f"INBOX\n{archive}</textarea>" in edit.text
