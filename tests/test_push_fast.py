"""Push's fast path (service/usecases/retrieval/push_fetch.py), against Dovecot: new mail in INBOX is
fetched over the push connection itself and stored exactly once, leaving the next poll where it
was; a changed UIDVALIDITY or a message over the domain's limit falls back to the full run; the
Inbox filters apply; a message arriving while the fast path holds the lease is stored once too.
A disabled user's tasks are neither pushed nor dispatched."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from service.config import Settings
from service.domain.filters import Action, ActionKind, Condition, FilterField, FilterOp, FilterRule
from service.domain.retrieval import RunResult
from service.domain.values import FolderTransfer
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, Folder, ImapCursor, LogEntry, Message, RetrievalTask, User
from service.persistence.types import utcnow
from service.protocols.imap import FetchedMessage, ImapAccount
from service.protocols.imap.push import PushConnection
from service.usecases import filters
from service.usecases.retrieval import run as run_module
from service.usecases.retrieval.lease import claim_due
from service.usecases.retrieval.push import PushSupervisor
from service.usecases.retrieval.push_leases import push_eligible
from service.usecases.retrieval.runner import Runner
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.retrieval_env import Env, make_env
from tests.test_push import HOUR, copies, eventually, listening, message, polled_task, pushing, stored, task_row


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    made = await make_env(db, settings, secret_box, dovecot, mail_user)
    made.settings = made.settings.model_copy(
        update={"retrieval_interval": HOUR, "push_lease_seconds": 3, "push_connections": 500}
    )
    return made


async def next_run(env: Env, task_id: int) -> datetime | None:
    return (await task_row(env, task_id)).next_run_at


async def inbox_cursor(env: Env, task_id: int) -> ImapCursor:
    async with env.db.read() as session:
        return (
            await session.exec(
                select(ImapCursor).where(ImapCursor.task_id == task_id, ImapCursor.remote_folder == "INBOX")
            )
        ).one()


async def warnings(env: Env, task_id: int) -> list[str]:
    async with env.db.read() as session:
        rows = (await session.exec(select(LogEntry.text).where(LogEntry.retrieval_task_id == task_id))).all()
    return list(rows)


async def test_inbox_news_is_stored_over_the_push_connection_keeping_the_next_poll(env: Env) -> None:
    task_id = await polled_task(env)
    poll_at = await next_run(env, task_id)
    async with pushing(env):
        await listening(env, task_id)
        raw, message_id = message("fast")
        env.dovecot.deliver(env.mailbox.email, raw)
        await stored(env, message_id)

        async def released() -> bool:
            return (await task_row(env, task_id)).lease_owner is None

        await eventually(released, within=10, what="the run lease released")
    task = await task_row(env, task_id)
    assert task.next_run_at == poll_at  # the fast path, not a full run (which moves the next poll)
    assert task.messages_imported == 1
    assert task.last_error is None
    assert (await inbox_cursor(env, task_id)).last_uid == 1
    assert "Imported 1 message (INBOX -> Remote/INBOX: 1 new)." in await warnings(env, task_id)
    # A later poll finds nothing more: stored once, by Message-ID.
    assert (await env.run(task_id)).imported == 0
    assert await copies(env, message_id) == 1


async def test_a_changed_uidvalidity_falls_back_to_the_full_run(env: Env) -> None:
    first, first_id = message("before the reset")
    env.dovecot.deliver(env.mailbox.email, first)
    task_id = await polled_task(env)
    async with env.db.write() as session:  # as if the server had reset INBOX since the last run
        await session.exec(update(ImapCursor).where(col(ImapCursor.task_id) == task_id).values(uidvalidity=1))
    poll_at = await next_run(env, task_id)
    async with pushing(env):
        await listening(env, task_id)
        raw, message_id = message("after the reset")
        env.dovecot.deliver(env.mailbox.email, raw)
        await stored(env, message_id)
    assert await next_run(env, task_id) != poll_at  # a full run
    assert await copies(env, first_id) == 1  # matched again by content, not stored twice
    assert await copies(env, message_id) == 1


async def test_a_message_over_the_domains_limit_falls_back_to_the_full_run(env: Env) -> None:
    task_id = await polled_task(env)
    async with env.db.write() as session:
        await session.exec(update(Domain).values(max_message_bytes=200))
    poll_at = await next_run(env, task_id)
    async with pushing(env):
        await listening(env, task_id)
        raw, message_id = message("too large for this domain")
        assert len(raw) > 200
        env.dovecot.deliver(env.mailbox.email, raw)

        async def skipped() -> bool:
            return any("larger than" in text for text in await warnings(env, task_id))

        await eventually(skipped, within=20, what="the message skipped by a full run")
    assert await next_run(env, task_id) != poll_at
    assert await copies(env, message_id) == 0
    assert (await inbox_cursor(env, task_id)).last_uid == 1  # covered: never fetched again


async def test_an_excluded_inbox_is_left_to_the_full_run_which_skips_it(env: Env) -> None:
    """What to import (issue 18) rules the fast path too: INBOX excluded, its news runs the task in
    full, which applies the folder selection, so nothing of INBOX is stored."""
    task_id = await polled_task(env)
    async with env.db.write() as session:
        await session.exec(
            update(RetrievalTask).where(col(RetrievalTask.id) == task_id).values(exclude_folders='["INBOX"]')
        )
    poll_at = await next_run(env, task_id)
    async with pushing(env):
        await listening(env, task_id)
        raw, message_id = message("in an excluded INBOX")
        env.dovecot.deliver(env.mailbox.email, raw)

        async def ran_in_full() -> bool:
            return await next_run(env, task_id) != poll_at

        await eventually(ran_in_full, within=20, what="a full run after INBOX news")
    assert await copies(env, message_id) == 0


async def test_filter_rules_apply_on_the_fast_path(env: Env) -> None:
    rule = FilterRule(
        name="Lists",
        conditions=(Condition(FilterField.SUBJECT, FilterOp.CONTAINS, "newsletter"),),
        actions=(Action(ActionKind.MOVE, "Lists"),),
    )
    await filters.create_rule(db=env.db, user_id=env.user_id, rule=rule)
    task_id = await polled_task(env, apply_filters=True, folder_transfer=FolderTransfer.ROOT)  # INBOX -> Inbox
    poll_at = await next_run(env, task_id)
    async with pushing(env):
        await listening(env, task_id)
        raw, message_id = message("newsletter #7")
        env.dovecot.deliver(env.mailbox.email, raw)
        await stored(env, message_id)
    async with env.db.read() as session:
        path = (
            await session.exec(
                select(Folder.path)
                .join(Message, col(Message.folder_id) == Folder.id)
                .where(col(Message.message_id_header).contains(message_id))
            )
        ).one()
    assert path == "Lists"
    assert await next_run(env, task_id) == poll_at


class AppendingConnection(PushConnection):
    """A push connection that, the first time it fetches bodies, has another message delivered
    first: it arrives while the fast path holds the run lease."""

    def __init__(self, account: ImapAccount, deliver: asyncio.Event, delivered: asyncio.Event) -> None:
        super().__init__(account)
        self._deliver, self._delivered = deliver, delivered

    async def fetch_new(self, after_uid: int, uids: Sequence[int] | None = None) -> list[FetchedMessage]:
        if not self._delivered.is_set():
            self._deliver.set()
            await self._delivered.wait()
        return await super().fetch_new(after_uid, uids)


async def test_a_message_arriving_while_the_fast_path_holds_the_lease_is_stored_once(env: Env) -> None:
    task_id = await polled_task(env)
    deliver, delivered = asyncio.Event(), asyncio.Event()
    second, second_id = message("while fetching")

    async def delivering() -> None:
        await deliver.wait()
        assert (await task_row(env, task_id)).lease_owner is not None  # the fast path holds the lease
        await asyncio.to_thread(env.dovecot.deliver, env.mailbox.email, second)
        delivered.set()

    helper = asyncio.create_task(delivering())
    runner = Runner(db=env.db, secret_box=env.secret_box, settings=env.settings)
    supervisor = PushSupervisor(
        db=env.db,
        secret_box=env.secret_box,
        settings=env.settings,
        runner=runner,
        connect=lambda account: AppendingConnection(account, deliver, delivered),
    )
    supervisor.start()
    try:
        await listening(env, task_id)
        first, first_id = message("first")
        env.dovecot.deliver(env.mailbox.email, first)
        await stored(env, first_id)
        await stored(env, second_id)
    finally:
        await supervisor.shutdown()
        await runner.shutdown()
        await helper
    assert await copies(env, first_id) == 1
    assert await copies(env, second_id) == 1
    assert (await env.run(task_id)).imported == 0
    assert (await inbox_cursor(env, task_id)).last_uid == 2


async def test_a_disabled_users_tasks_are_neither_pushed_nor_dispatched(env: Env) -> None:
    task_id = await polled_task(env)
    async with env.db.write() as session:  # the user disabled, the task due now
        await session.exec(update(User).where(col(User.id) == env.user_id).values(is_active=False))
        await session.exec(update(RetrievalTask).values(next_run_at=utcnow()).where(col(RetrievalTask.id) == task_id))
    assert not await push_eligible(env.db, task_id)
    assert await claim_due(env.db, "worker-x", seconds=60, limit=10) == []
    async with pushing(env) as supervisor:
        await supervisor.tick()
        assert supervisor.held == set()
    async with env.db.write() as session:
        await session.exec(update(User).where(col(User.id) == env.user_id).values(is_active=True))
    assert await push_eligible(env.db, task_id)
    assert [lease.task_id for lease in await claim_due(env.db, "worker-x", seconds=60, limit=10)] == [task_id]


class SlowConnection:
    """A push connection whose transfer lasts until `transfer` is set (a large batch over a slow link)."""

    def __init__(self, raw: bytes, uidvalidity: int, uid: int) -> None:
        self.raw, self._uidvalidity, self.uid = raw, uidvalidity, uid
        self.fetching, self.transfer = asyncio.Event(), asyncio.Event()

    @property
    def uidvalidity(self) -> int | None:
        return self._uidvalidity

    async def sizes_after(self, after_uid: int) -> dict[int, int]:
        return {self.uid: len(self.raw)}

    async def fetch_new(self, after_uid: int, uids: list[int] | None = None) -> list[FetchedMessage]:
        self.fetching.set()
        await self.transfer.wait()
        return [FetchedMessage(uid=self.uid, raw=self.raw, flags=frozenset(), internal_date=None)]


async def test_a_fast_path_outlasting_its_lease_keeps_it_and_stores_the_message_once(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await polled_task(env)
    cursor = await inbox_cursor(env, task_id)
    raw, message_id = message("slow transfer")
    env.dovecot.deliver(env.mailbox.email, raw)
    fast_done = asyncio.Event()
    original = run_module._record_outcome

    async def held(*args: Any, **kwargs: Any) -> None:
        # A full run started meanwhile still holds the lease when the fast path commits.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fast_done.wait(), 10)
        await original(*args, **kwargs)

    monkeypatch.setattr(run_module, "_record_outcome", held)
    runner = Runner(db=env.db, secret_box=env.secret_box, settings=env.settings.model_copy(update={"lease_seconds": 2}))
    async with env.db.write() as session:  # the poll falls due (it would at its interval anyway); pushed here
        await session.exec(
            update(RetrievalTask)
            .where(col(RetrievalTask.id) == task_id)
            .values(next_run_at=utcnow(), push_owner=runner.worker_id)
        )
    connection = SlowConnection(raw, cursor.uidvalidity, cursor.last_uid + 1)
    fast = asyncio.create_task(runner.push_fetch(task_id, connection, noticed=0.0))
    await asyncio.wait_for(connection.fetching.wait(), 10)
    await asyncio.sleep(3)  # longer than lease_seconds: only the fast path's heartbeat keeps the lease
    started = await runner.dispatch_due()
    connection.transfer.set()
    await fast
    fast_done.set()
    await runner.shutdown()
    assert started == 0
    assert await copies(env, message_id) == 1


async def test_the_dispatcher_never_starts_a_task_already_running_in_its_process(env: Env) -> None:
    task_id = await polled_task(env)
    runner = Runner(db=env.db, secret_box=env.secret_box, settings=env.settings)
    running: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
    runner._running[task_id] = running  # a run here whose lease expired (a stalled heartbeat)
    async with env.db.write() as session:
        await session.exec(update(RetrievalTask).where(col(RetrievalTask.id) == task_id).values(next_run_at=utcnow()))
    assert await runner.dispatch_due() == 0
    assert runner._running[task_id] is running
    row = await task_row(env, task_id)
    assert row.lease_owner is None
    assert row.next_run_at is not None
    assert row.next_run_at <= utcnow()
    running.set_result(RunResult())


async def test_a_connection_whose_push_lease_was_cleared_does_not_fetch(env: Env) -> None:
    task_id = await polled_task(env)
    cursor = await inbox_cursor(env, task_id)
    raw, message_id = message("after an edit")
    env.dovecot.deliver(env.mailbox.email, raw)
    runner = Runner(db=env.db, secret_box=env.secret_box, settings=env.settings)
    connection = SlowConnection(raw, cursor.uidvalidity, cursor.last_uid + 1)
    connection.transfer.set()
    async with env.db.write() as session:  # an edit of the task cleared the push lease of this process
        await session.exec(update(RetrievalTask).where(col(RetrievalTask.id) == task_id).values(push_owner=None))
    await runner.push_fetch(task_id, connection, noticed=0.0)
    assert not connection.fetching.is_set()
    assert await copies(env, message_id) == 0
    assert (await task_row(env, task_id)).lease_owner is None  # the claim was undone


async def test_the_fast_path_leaves_the_tasks_failures_to_the_polls(env: Env) -> None:
    task_id = await polled_task(env)
    cursor = await inbox_cursor(env, task_id)
    raw, message_id = message("while polls fail")
    env.dovecot.deliver(env.mailbox.email, raw)
    runner = Runner(db=env.db, secret_box=env.secret_box, settings=env.settings)
    failing = {"last_error": "Other folders failed.", "consecutive_failures": 3, "auth_failures": 2}
    async with env.db.write() as session:
        await session.exec(
            update(RetrievalTask)
            .where(col(RetrievalTask.id) == task_id)
            .values(push_owner=runner.worker_id, needs_action=True, **failing)
        )
    before = await task_row(env, task_id)
    connection = SlowConnection(raw, cursor.uidvalidity, cursor.last_uid + 1)
    connection.transfer.set()
    await runner.push_fetch(task_id, connection, noticed=0.0)
    assert await copies(env, message_id) == 1
    after = await task_row(env, task_id)
    assert (after.last_error, after.consecutive_failures, after.auth_failures) == tuple(failing.values())
    assert after.needs_action
    assert after.last_success_at == before.last_success_at
    assert after.last_run_at is not None
    assert before.last_run_at is not None
    assert after.last_run_at > before.last_run_at
