"""Retrieve Messages Now on a long run: while the request waits, the row's progress endpoint
says how many messages are stored so far; the answer is one sentence, not a log line."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import cast

import httpx
import pytest

from service.config import Settings
from service.domain.retrieval import FolderResult, RunResult
from service.domain.values import Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import retrieval_tasks
from service.usecases.users import find_user
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.faults import SlowProxy
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, set_up_admin
from tests.mail_samples import sample
from tests.settings_web import htmx_post, text_of

MESSAGES = 12
STORED = re.compile(r"Stored (\d+) messages? so far…")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One message per batch: the run commits, and counts, message by message."""
    return settings.model_copy(update={"retrieval_batch_messages": 1})


@pytest.fixture
async def web_client(live_server: str) -> AsyncIterator[WebClient]:
    """A client of the app served by uvicorn (in its own thread and loop), so that the progress
    requests are answered while the Retrieve Messages Now request is still waiting."""
    async with httpx.AsyncClient(base_url=live_server, follow_redirects=False, timeout=60) as client:
        yield cast(WebClient, client)  # the same interface: the helpers take either


async def test_progress_counts_the_stored_messages_and_the_answer_is_a_sentence(
    web_client: WebClient, db: Database, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    await set_up_admin(web_client)
    user = await find_user(db=db, email=ADMIN_EMAIL)
    assert user is not None
    for n in range(MESSAGES):
        dovecot.deliver(mail_user.email, sample(f"slow {n}", body="x" * 3000 + "\r\n"))
    with SlowProxy(dovecot.host, dovecot.imap_port, delay=0.1) as proxy:
        new = retrieval_tasks.NewTask(
            protocol=Protocol.IMAP,
            host="127.0.0.1",
            port=proxy.port,
            security=Security.NONE,
            username=mail_user.email,
            password=mail_user.password,
            name="Remote",
            timeout_seconds=30,
        )
        task = await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=user.id, new=new)
        idle = await web_client.get(f"/settings/retrieval/{task.id}/progress")
        assert idle.status_code == 200
        assert "Retrieving messages…" in idle.text
        assert "hx-get" not in idle.text  # nothing runs: no more polling

        run = asyncio.create_task(htmx_post(web_client, f"/settings/retrieval/{task.id}/run"))
        seen: list[int] = []
        async with asyncio.timeout(60):
            while not run.done():
                answer = await web_client.get(f"/settings/retrieval/{task.id}/progress")
                if match := STORED.search(answer.text):
                    seen.append(int(match.group(1)))
                    assert 'hx-trigger="load delay:2s"' in answer.text  # polls on while the run goes on
                await asyncio.sleep(0.1)
            response = await run
    assert seen, "the progress endpoint never reported a count during the run"
    assert 0 < min(seen) < MESSAGES
    assert seen == sorted(seen)
    result = text_of(response.text)
    assert f"{MESSAGES} new messages in Remote/INBOX." in result
    assert "->" not in result


def test_the_sentence_for_one_many_and_no_folders() -> None:
    assert RunResult().sentence() == "No new messages."
    one = RunResult(imported=1, folders=[FolderResult("INBOX", "INBOX", imported=1)])
    assert one.sentence() == "1 new message in Inbox."
    many = RunResult(
        imported=412,
        skipped=2,
        folders=[FolderResult(f"F{n}", f"Remote/F{n}", imported=100 if n < 4 else 6) for n in range(6)]
        + [FolderResult("Empty", "Remote/Empty")],
    )
    assert many.sentence() == "412 new messages in 6 folders; 2 skipped (too large, or already here)."
