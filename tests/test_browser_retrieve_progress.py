"""Retrieve Messages Now in a real browser on a long run: while it waits, the task's row polls
its progress (htmx attributes only, no inline script) and shows "Stored N messages so far…";
then the row says the result in one sentence."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Browser, expect

from service.config import Settings
from service.domain.values import Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import retrieval_tasks, users
from tests.fixtures.browser import script_errors, sign_in
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.faults import SlowProxy
from tests.mail_samples import sample

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("settings", ["sqlite"], indirect=True)]

EMAIL = "ada@example.test"
PASSWORD = "correct horse battery staple"
MESSAGES = 40


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One message per batch: the run commits, and counts, message by message."""
    return settings.model_copy(update={"retrieval_batch_messages": 1})


async def _seed(settings: Settings, mailbox: MailUser, port: int) -> None:
    db = Database(settings)
    try:
        user = await users.add_user(db=db, email=EMAIL, password=PASSWORD, is_admin=True)
        new = retrieval_tasks.NewTask(
            protocol=Protocol.IMAP,
            host="127.0.0.1",
            port=port,
            security=Security.NONE,
            username=mailbox.email,
            password=mailbox.password,
            name="Slow",
            timeout_seconds=30,
        )
        await retrieval_tasks.add_task(db=db, secret_box=SecretBox.from_settings(settings), user_id=user.id, new=new)
    finally:
        await db.dispose()


def test_the_row_shows_the_messages_stored_so_far_then_one_sentence(
    settings: Settings, live_server: str, browser: Browser, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    for n in range(MESSAGES):
        dovecot.deliver(mail_user.email, sample(f"slow {n}", body="x" * 3000 + "\r\n"))
    with SlowProxy(dovecot.host, dovecot.imap_port, delay=0.1) as proxy:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, _seed(settings, mail_user, proxy.port)).result()
        context = browser.new_context(base_url=live_server)
        page = context.new_page()
        problems = script_errors(page)
        sign_in(page, EMAIL, PASSWORD)
        page.goto("/settings/connectivity")
        row = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Slow"))
        row.get_by_role("button", name="Retrieve Messages Now").click()
        expect(row.get_by_text(re.compile(r"^Stored \d+ messages? so far…$"))).to_be_visible(timeout=20_000)
        expect(row.get_by_text(f"{MESSAGES} new messages in Slow/INBOX.")).to_be_visible(timeout=60_000)
        expect(row.get_by_text(re.compile("so far…"))).to_be_hidden()
        assert problems == []
        context.close()
