"""IMAP push (issue 16) in one process, against Dovecot: announced mail is stored within seconds
while the poll is an hour away, exactly once even when a run is under way, after a connection
cut by the server too; a server without IDLE, a refused password, the domain's switch and the
connection budget each stop or limit push the way users would expect."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import update
from sqlmodel import col, func, select

from service.config import Settings
from service.domain.values import LogLevel, LogSource, Protocol, PushState, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, Folder, LogEntry, Message, RetrievalTask
from service.persistence.types import utcnow
from service.usecases.retrieval import Runner, push
from service.usecases.retrieval.lease import claim, release
from service.usecases.retrieval.push import PushSupervisor
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.faults import SlowProxy
from tests.fixtures.scripted_imap import ScriptedFolder, ScriptedImapServer, ScriptedMessage
from tests.mail_samples import sample
from tests.retrieval_env import Env, make_env

HOUR = 3600


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    made = await make_env(db, settings, secret_box, dovecot, mail_user)
    # The poll an hour away; push leases renewed every second.
    made.settings = made.settings.model_copy(
        update={"retrieval_interval": HOUR, "push_lease_seconds": 3, "push_connections": 500}
    )
    return made


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within} s: {what}")


@asynccontextmanager
async def pushing(env: Env, settings: Settings | None = None) -> AsyncIterator[PushSupervisor]:
    """A Runner and its push supervisor, as `tributary worker` has them."""
    runner = Runner(db=env.db, secret_box=env.secret_box, settings=settings or env.settings)
    supervisor = PushSupervisor(db=env.db, secret_box=env.secret_box, settings=settings or env.settings, runner=runner)
    supervisor.start()
    try:
        yield supervisor
    finally:
        await supervisor.shutdown()
        await runner.shutdown()


async def polled_task(env: Env, **changes: Any) -> int:
    """An automatic IMAP task that has just run: its next poll is an hour away."""
    task_id = await env.add_task(**changes)
    assert (await env.run(task_id)).errors == []
    async with env.db.read() as session:
        task = await session.get(RetrievalTask, task_id)
    assert task is not None
    assert task.next_run_at is not None
    assert task.next_run_at > utcnow() + timedelta(minutes=50)
    return task_id


async def task_row(env: Env, task_id: int) -> RetrievalTask:
    async with env.db.read() as session:
        task = await session.get(RetrievalTask, task_id)
    assert task is not None
    return task


async def listening(env: Env, task_id: int) -> None:
    async def check() -> bool:
        return (await task_row(env, task_id)).push_state is PushState.LISTENING

    await eventually(check, within=15, what=f"task {task_id} listening")


async def copies(env: Env, message_id: str) -> int:
    async with env.db.read() as session:
        found = await session.exec(
            select(func.count()).select_from(Message).where(col(Message.message_id_header).contains(message_id))
        )
        return int(found.one())


async def stored(env: Env, message_id: str, *, within: float = 20) -> None:
    async def check() -> bool:
        return await copies(env, message_id) > 0

    await eventually(check, within=within, what=f"{message_id} stored")


def message(subject: str) -> tuple[bytes, str]:
    raw = sample(subject)
    header = next(line for line in raw.split(b"\r\n") if line.lower().startswith(b"message-id:"))
    return raw, header.split(b":", 1)[1].strip().strip(b"<>").decode()


async def runs(env: Env, task_id: int) -> int:
    """Finished runs of the task that brought something or failed: one "Incoming mail" entry each
    (a run with nothing new writes none)."""
    async with env.db.read() as session:
        entries = (
            await session.exec(
                select(LogEntry).where(LogEntry.source == LogSource.INCOMING, LogEntry.retrieval_task_id == task_id)
            )
        ).all()
    return sum(entry.level is not LogLevel.DEBUG for entry in entries)


def notifications() -> float:
    return REGISTRY.get_sample_value("tributary_push_notifications_total") or 0.0


def test_reconnects_back_off_doubling_with_jitter_up_to_five_minutes() -> None:
    rand = random.Random(7)
    for attempt, base in [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300), (40, 300)]:
        delays = [push.backoff(attempt, rand) for _ in range(200)]
        assert all(base * 0.8 <= delay <= base * 1.2 for delay in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > base * 0.2  # spread, so connections cut together come back apart


async def test_a_message_appended_to_the_inbox_is_stored_within_seconds(env: Env) -> None:
    task_id = await polled_task(env)
    before = notifications()
    async with pushing(env) as supervisor:
        await listening(env, task_id)
        assert supervisor.held == {task_id}
        raw, message_id = message("pushed")
        env.dovecot.deliver(env.mailbox.email, raw)
        await stored(env, message_id)
    assert notifications() > before
    assert await copies(env, message_id) == 1
    task = await task_row(env, task_id)
    assert task.push_owner is None  # released at shutdown
    assert task.next_run_at is not None
    assert task.next_run_at > utcnow() + timedelta(minutes=50)
    assert (REGISTRY.get_sample_value("tributary_push_store_seconds_count") or 0) > 0


async def test_with_notify_a_message_appended_to_another_folder_is_stored(env: Env) -> None:
    env.dovecot.create_folder(env.mailbox.email, "Projects")
    task_id = await polled_task(env)
    async with pushing(env):
        await listening(env, task_id)
        raw, message_id = message("in another folder")
        env.dovecot.deliver(env.mailbox.email, raw, folder="Projects")
        await stored(env, message_id)
    async with env.db.read() as session:
        folder = (
            await session.exec(
                select(Folder.path)
                .join(Message, col(Message.folder_id) == Folder.id)
                .where(col(Message.message_id_header).contains(message_id))
            )
        ).one()
    assert folder.endswith("Projects")


async def test_a_message_appended_while_another_run_holds_the_task_is_stored_once_after_it(env: Env) -> None:
    task_id = await polled_task(env)
    async with pushing(env) as supervisor:
        await listening(env, task_id)
        lease = await claim(env.db, task_id, "another-worker", seconds=60)  # a poll under way elsewhere
        assert lease is not None
        before = notifications()
        raw, message_id = message("during a run")
        env.dovecot.deliver(env.mailbox.email, raw)

        async def announced() -> bool:
            return supervisor.runner.push_pending == 1 and notifications() == before + 1

        await eventually(announced, within=15, what="the announcement reached the runner")
        assert await copies(env, message_id) == 0  # the push run waits for the lease
        second, second_id = message("also during the run")
        env.dovecot.deliver(env.mailbox.email, second)

        async def announced_again() -> bool:
            return notifications() == before + 2

        await eventually(announced_again, within=15, what="the second announcement")
        await release(env.db, lease, next_run_at=utcnow() + timedelta(hours=1))  # that run ends without it
        await stored(env, message_id)
        await stored(env, second_id)

        async def settled() -> bool:
            return supervisor.runner.push_pending == 0 and supervisor.runner.running == 0

        await eventually(settled, within=15, what="push runs finished")
    assert (await copies(env, message_id), await copies(env, second_id)) == (1, 1)
    assert await runs(env, task_id) == 1  # one push run for both announcements (the first poll found nothing)


async def test_a_message_appended_during_a_run_in_this_process_is_stored_once_by_a_run_after_it(env: Env) -> None:
    for n in range(30):
        env.dovecot.deliver(env.mailbox.email, sample(f"backlog {n}", body="x" * 2000 + "\r\n"))
    slow = env.settings.model_copy(update={"retrieval_batch_messages": 3})
    with SlowProxy(env.dovecot.host, env.dovecot.imap_port, delay=0.05) as proxy:
        task_id = await env.add_task(port=proxy.port, security=Security.NONE)
        async with env.db.write() as session:  # polled a moment ago
            await session.exec(update(RetrievalTask).values(next_run_at=utcnow() + timedelta(hours=1)))
        async with pushing(env, slow) as supervisor:
            await listening(env, task_id)
            poll = asyncio.create_task(supervisor.runner.run_now(task_id))

            async def under_way() -> bool:
                return 0 < sum((await env.local_counts()).values()) < 30

            await eventually(under_way, within=15, what="the run stored its first batch")
            raw, message_id = message("during the run")
            env.dovecot.deliver(env.mailbox.email, raw)  # after the run listed what it will fetch
            assert (await poll).imported == 30
            await stored(env, message_id)

            async def settled() -> bool:
                return supervisor.runner.push_pending == 0 and supervisor.runner.running == 0

            await eventually(settled, within=15, what="push runs finished")
    assert await copies(env, message_id) == 1
    assert sum((await env.local_counts()).values()) == 31


async def test_a_connection_cut_by_the_server_reconnects_and_catches_up(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push, "BACKOFF_FIRST", 3.0)  # time to append while the watcher is away
    task_id = await polled_task(env)
    async with pushing(env) as supervisor:
        await listening(env, task_id)
        env.dovecot.doveadm("kick", env.mailbox.email)

        async def noticed_the_cut() -> bool:
            return (await task_row(env, task_id)).push_state is PushState.CONNECTING

        await eventually(noticed_the_cut, within=10, what="the watcher saw the connection cut")
        raw, message_id = message("while away")
        env.dovecot.deliver(env.mailbox.email, raw)  # no connection hears of it
        await stored(env, message_id)  # the run after the reconnect catches up
        await listening(env, task_id)
        assert supervisor.held == {task_id}
    assert await copies(env, message_id) == 1


async def test_a_task_taken_over_from_a_dead_holder_catches_up(env: Env) -> None:
    await polled_task(env)
    raw, message_id = message("announced to a worker that died")
    env.dovecot.deliver(env.mailbox.email, raw)
    async with env.db.write() as session:
        await session.exec(
            update(RetrievalTask).values(
                push_owner="dead-worker",
                push_expires_at=utcnow() - timedelta(seconds=1),
                push_state=PushState.LISTENING,
            )
        )
    async with pushing(env):
        await stored(env, message_id)
    assert await copies(env, message_id) == 1


async def test_a_server_without_idle_falls_back_to_polling(env: Env) -> None:
    raw, message_id = message("polled")
    folders = [ScriptedFolder("INBOX", [ScriptedMessage(1, raw)])]
    with ScriptedImapServer(folders) as server:
        task_id = await env.add_task(port=server.port, security=Security.NONE)
        async with pushing(env) as supervisor:

            async def unsupported() -> bool:
                return (await task_row(env, task_id)).push_state is PushState.UNSUPPORTED

            await eventually(unsupported, within=15, what="push found unsupported")
            task = await task_row(env, task_id)
            assert task.push_owner is None
            assert task.push_retry_at is not None
            assert task.push_retry_at > utcnow() + timedelta(hours=5)
            assert task.push_detail
            assert "IDLE" in task.push_detail
            assert supervisor.held == set()
            assert await supervisor.runner.dispatch_due() == 1  # the poll goes on as before
            await stored(env, message_id)
            await supervisor.tick()
            assert supervisor.held == set()  # not tried again before the retry time


async def test_a_refused_password_stops_push_until_the_interval_has_passed(env: Env) -> None:
    task_id = await env.add_task(password="not the password")
    async with pushing(env) as supervisor:

        async def failed() -> bool:
            return (await task_row(env, task_id)).push_state is PushState.FAILED

        await eventually(failed, within=15, what="push failed")
        task = await task_row(env, task_id)
        assert task.push_owner is None
        assert task.push_retry_at is not None
        assert task.push_retry_at > utcnow() + timedelta(minutes=50)
        assert task.push_detail
        assert supervisor.held == set()


async def test_turning_the_domains_retrieval_off_closes_the_connections(env: Env) -> None:
    task_id = await polled_task(env)
    async with pushing(env) as supervisor:
        await listening(env, task_id)
        async with env.db.write() as session:
            await session.exec(update(Domain).values(retrieval_enabled=False))

        async def closed() -> bool:
            return supervisor.held == set() and (await task_row(env, task_id)).push_owner is None

        await eventually(closed, within=10, what="push stopped for the domain")
        await supervisor.tick()
        assert supervisor.held == set()  # and is not claimed again


async def test_a_process_holds_at_most_its_push_connections(env: Env) -> None:
    task_ids = [await env.add_task(destination_folder=f"T{n}") for n in range(5)]
    capped = env.settings.model_copy(update={"push_connections": 3})
    async with pushing(env, capped) as supervisor:

        async def three() -> bool:
            async with env.db.read() as session:
                rows = (
                    await session.exec(select(RetrievalTask).where(col(RetrievalTask.push_owner).is_not(None)))
                ).all()
            return len(rows) == 3 and all(row.push_state is PushState.LISTENING for row in rows)

        await eventually(three, within=15, what="three connections listening")
        await supervisor.tick()
        assert len(supervisor.held) == 3
        assert supervisor.held < set(task_ids)
        assert REGISTRY.get_sample_value("tributary_push_connections") == 3


async def test_no_push_for_pop3_manual_or_push_off_tasks(env: Env) -> None:
    from service.domain.values import RetrievalMethod

    await env.add_task(push=False)
    await env.add_task(method=RetrievalMethod.MANUAL)
    await env.add_task(Protocol.POP3, port=env.dovecot.pop3s_port)
    async with pushing(env) as supervisor:
        await supervisor.tick()
        assert supervisor.held == set()


async def test_failing_renewals_close_every_connection_after_a_lease_period(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await polled_task(env)
    async with pushing(env) as supervisor:
        await listening(env, task_id)

        async def database_down(*args: object, **kwargs: object) -> set[int]:
            raise OSError("database unreachable")

        monkeypatch.setattr(push, "renew_push", database_down)
        with pytest.raises(OSError, match="database unreachable"):
            await supervisor.tick()
        assert supervisor.held == {task_id}  # one failed renewal: the lease still holds
        supervisor._renewed -= env.settings.push_lease_seconds + 1  # as if renewals failed for a lease period
        with pytest.raises(OSError, match="database unreachable"):
            await supervisor.tick()
        assert supervisor.held == set()  # another process may hold it by now: never two connections


async def test_push_runs_try_a_lease_held_elsewhere_less_and_less_often(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await polled_task(env)
    assert await claim(env.db, task_id, "another-process", seconds=HOUR) is not None
    runner = Runner(db=env.db, secret_box=env.secret_box, settings=env.settings)
    claims = 0
    original = claim

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal claims
        claims += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr("service.usecases.retrieval.runner.claim", counting)
    runner.request_push_run(task_id)
    await asyncio.sleep(3.2)  # tries at 0, 0.5, 1.5 and 3.5 s (not every 0.5 s: 7)
    await runner.shutdown()
    assert 2 <= claims <= 4
