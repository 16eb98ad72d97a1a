"""Automatic retrieval: runs on its own, one run per task at a time across processes, survives
a killed worker, and shares a run in progress with "Retrieve Messages Now"."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
import signal
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from service.config import Settings
from service.domain.oauth import AuthKind, CredentialStatus
from service.domain.retrieval import next_run_delay
from service.domain.values import LogLevel, LogSource, Protocol, RetrievalMethod, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import LogEntry, RetrievalTask
from service.persistence.types import utcnow
from service.scheduler import Scheduler
from service.usecases.retrieval import Runner
from service.usecases.retrieval.lease import due_count
from service.usecases.users import add_user
from tests.cli_runner import TRIBUTARY, cli_environment, terminate, tributary
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.faults import SlowProxy
from tests.mail_samples import sample
from tests.retrieval_env import Env, eventually, make_env
from tests.stored_bodies import body_count, stored_raws


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


async def run_times(db: Database) -> dict[int, list[datetime]]:
    """When each task's runs finished: one "Incoming mail" entry per run that brought something or
    failed (a quiet run writes none), or, for a task with "Enable debug", its transcript (every run)."""
    async with db.read() as session:
        entries = (
            await session.exec(select(LogEntry).where(LogEntry.source == LogSource.INCOMING).order_by(col(LogEntry.id)))
        ).all()
    times: dict[int, list[datetime]] = defaultdict(list)
    traced: dict[int, list[datetime]] = defaultdict(list)
    for entry in entries:
        if entry.retrieval_task_id is not None:
            (traced if entry.level is LogLevel.DEBUG else times)[entry.retrieval_task_id].append(entry.created_at)
    times.update(traced)
    return times


@pytest.fixture
async def scheduler(env: Env) -> AsyncIterator[Callable[[Settings], Scheduler]]:
    started: list[Scheduler] = []

    def start(settings: Settings) -> Scheduler:
        instance = Scheduler(settings=settings, db=env.db, secret_box=env.secret_box)
        instance.start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        await instance.shutdown()


def test_backoff_doubles_from_the_interval_and_is_capped() -> None:
    assert next_run_delay(600, 0, 0.1, 0.5) == 600
    assert next_run_delay(600, 1, 0.1, 0.5) == 1200
    assert next_run_delay(600, 3, 0.1, 0.5) == 4800
    assert next_run_delay(600, 30, 0.1, 0.5) == 600 * 16
    assert next_run_delay(600, 0, 0.1, 0.0) == pytest.approx(540)
    assert next_run_delay(600, 0, 0.1, 0.999999) == pytest.approx(660, abs=0.01)


async def test_automatic_tasks_run_on_their_own(env: Env, scheduler: Callable[[Settings], Scheduler]) -> None:
    env.dovecot.deliver(env.mailbox.email, sample("first"))
    fast = env.settings.model_copy(update={"retrieval_interval": 2, "retrieval_jitter": 0.1})
    automatic = await env.add_task(method=RetrievalMethod.AUTOMATIC)
    manual = await env.add_task(method=RetrievalMethod.MANUAL, destination_folder="Manual")
    running = scheduler(fast)

    async def stored() -> int:
        async with env.db.read() as session:
            return await body_count(session)

    async def one() -> bool:
        return await stored() == 1

    await eventually(one, within=15, what="the automatic task ran")
    env.dovecot.deliver(env.mailbox.email, sample("second"))

    async def two() -> bool:
        return await stored() == 2

    await eventually(two, within=15, what="the next automatic run")
    await running.shutdown()  # a run may be under way right now: shutdown lets it finish and release
    times = await run_times(env.db)
    assert manual not in times  # manual tasks run only when asked
    async with env.db.read() as session:
        task = await session.get(RetrievalTask, automatic)
    assert task is not None
    assert task.last_success_at is not None
    assert task.next_run_at is not None
    assert task.lease_owner is None


async def test_retrieve_now_during_an_automatic_run_joins_it(env: Env) -> None:
    for n in range(60):
        env.dovecot.deliver(env.mailbox.email, sample(f"slow {n}"))
    with SlowProxy(env.dovecot.host, env.dovecot.imap_port, delay=0.02) as proxy:
        task_id = await env.add_task(port=proxy.port, security=Security.NONE)
        runner = Runner(db=env.db, secret_box=env.secret_box, settings=env.settings)
        assert await runner.dispatch_due() == 1  # the automatic run starts in the background
        now = await runner.run_now(task_id)  # "Retrieve Messages Now" while it runs
        assert now.already_running
        assert now.imported == 60  # the result of the run in progress
    assert len((await run_times(env.db))[task_id]) == 1
    async with env.db.read() as session:
        assert await body_count(session) == 60


async def test_run_now_across_processes_reports_already_running(env: Env) -> None:
    for n in range(60):
        env.dovecot.deliver(env.mailbox.email, sample(f"slow {n}", body="x" * 2000 + "\r\n"))
    with SlowProxy(env.dovecot.host, env.dovecot.imap_port, delay=0.2) as proxy:  # about 6 s
        task_id = await env.add_task(port=proxy.port, security=Security.NONE, method=RetrievalMethod.MANUAL)
        runner = Runner(db=env.db, secret_box=env.secret_box, settings=env.settings)
        first = asyncio.create_task(runner.run_now(task_id))
        await asyncio.sleep(0.5)
        second = await asyncio.to_thread(tributary, env.settings, "retrieval", "run", str(task_id))
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout
        assert (await first).imported == 60
    assert len((await run_times(env.db))[task_id]) == 1


async def start_worker(settings: Settings, log_path: Path) -> asyncio.subprocess.Process:
    """A real `tributary worker` process, logging to `log_path`."""
    with log_path.open("wb") as log:
        return await asyncio.create_subprocess_exec(
            TRIBUTARY, "worker", env=cli_environment(settings), stdout=log, stderr=log
        )


async def test_two_workers_run_each_task_once_per_interval(env: Env, tmp_path: Path) -> None:
    env.dovecot.deliver(env.mailbox.email, sample("shared"))
    interval = 10
    settings = env.settings.model_copy(
        update={"retrieval_interval": interval, "retrieval_jitter": 0.1, "worker_concurrency": 4}
    )
    # "Enable debug": every run, quiet ones too, leaves its transcript in the log (see run_times).
    task_ids = [await env.add_task(destination_folder=f"T{n}", enable_debug=True) for n in range(50)]
    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    workers = [await start_worker(settings, path) for path in logs]
    try:

        async def all_ran_twice() -> bool:
            times = await run_times(env.db)
            return all(len(times[t]) >= 2 for t in task_ids)

        await eventually(all_ran_twice, within=60, what="every task ran twice")
    finally:
        for process in workers:
            await terminate(process)
    times = await run_times(env.db)
    for task_id in task_ids:
        runs = sorted(times[task_id])
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(runs)]
        assert all(gap >= interval * 0.9 - 1 for gap in gaps), (task_id, gaps)  # never twice in one interval
    async with env.db.read() as session:
        imported = (await session.exec(select(RetrievalTask.messages_imported))).all()
    assert imported == [1] * 50  # each task stored the message exactly once
    ran_by = Counter({path.name: len(re.findall(r"task \d+ run by", path.read_text())) for path in logs})
    assert all(count > 0 for count in ran_by.values()), ran_by  # both workers took work


async def test_a_killed_worker_loses_its_lease_and_another_finishes(env: Env, tmp_path: Path) -> None:
    messages = [sample(f"bulk {n}", body="b" * 1500 + "\r\n") for n in range(150)]
    for raw in messages:
        env.dovecot.deliver(env.mailbox.email, raw)
    settings = env.settings.model_copy(
        update={"retrieval_interval": 600, "lease_seconds": 3, "retrieval_batch_messages": 10}
    )
    with SlowProxy(env.dovecot.host, env.dovecot.imap_port, delay=0.1) as proxy:
        task_id = await env.add_task(port=proxy.port, security=Security.NONE)
        first = await start_worker(settings, tmp_path / "first.log")

        async def partly_stored() -> bool:
            async with env.db.read() as session:
                return await body_count(session) > 0

        try:
            await eventually(partly_stored, within=30, what="the first worker stored a batch")
            os.kill(first.pid, signal.SIGKILL)
            await first.wait()
        finally:
            await terminate(first)
        async with env.db.read() as session:
            task = await session.get(RetrievalTask, task_id)
            assert task is not None
            assert task.lease_owner is not None
            partial = await body_count(session)
        assert 0 < partial < len(messages)

        second = await start_worker(settings, tmp_path / "second.log")
        try:

            async def finished() -> bool:
                async with env.db.read() as session:
                    done = await session.get(RetrievalTask, task_id)
                    return done is not None and done.last_success_at is not None

            await eventually(finished, within=60, what="the second worker finished the task")
        finally:
            await terminate(second)
    async with env.db.read() as session:
        raws = await stored_raws(session)
    assert Counter(hashlib.sha256(r).hexdigest() for r in raws) == Counter(
        hashlib.sha256(m).hexdigest() for m in messages
    )


async def test_graceful_shutdown_keeps_the_batch_and_releases_the_lease(env: Env) -> None:
    for n in range(100):
        env.dovecot.deliver(env.mailbox.email, sample(f"many {n}", body="m" * 1500 + "\r\n"))
    small_batches = env.settings.model_copy(update={"retrieval_batch_messages": 10})
    with SlowProxy(env.dovecot.host, env.dovecot.imap_port, delay=0.1) as proxy:
        task_id = await env.add_task(port=proxy.port, security=Security.NONE)
        runner = Runner(db=env.db, secret_box=env.secret_box, settings=small_batches)
        await runner.dispatch_due()

        async def some() -> bool:
            async with env.db.read() as session:
                return await body_count(session) > 0

        await eventually(some, within=30, what="a batch committed")
        await runner.shutdown()
        async with env.db.read() as session:
            task = await session.get(RetrievalTask, task_id)
            stored = await body_count(session)
        assert task is not None
        assert task.lease_owner is None
        assert 0 < stored < 100
        later = await env.run(task_id)  # the next run continues where the last batch ended
    assert later.imported == 100 - stored


async def test_failures_back_off_and_repeated_sign_in_failures_pause_the_task(env: Env) -> None:
    settings = env.settings.model_copy(update={"retrieval_interval": 600, "retrieval_jitter": 0.0})
    runner = Runner(db=env.db, secret_box=env.secret_box, settings=settings)
    task_id = await env.add_task(password="wrong")
    delays = []
    for _ in range(3):
        started = utcnow()
        result = await runner.run_now(task_id)
        assert "rejected the username or password" in result.errors[0]
        async with env.db.read() as session:
            task = await session.get(RetrievalTask, task_id)
        assert task is not None
        assert task.next_run_at is not None
        delays.append(round((task.next_run_at - started).total_seconds() / 600))
    assert delays == [2, 4, 8]  # doubling from the interval
    assert task is not None
    assert task.needs_action
    assert task.paused_reason is not None
    assert "Correct the password" in task.paused_reason
    async with env.db.write() as session:  # due now, but paused: the dispatcher leaves it alone
        await session.exec(update(RetrievalTask).values(next_run_at=utcnow()))
    assert await runner.dispatch_due() == 0


async def test_a_round_of_due_tasks_runs_back_to_back_without_waiting_for_ticks(env: Env) -> None:
    """A slot that frees is refilled at once: ten due tasks on two slots all run after a single
    dispatch, with no timer running (a 10-minute interval has 15 s ticks; 1,000 tasks on
    tick-paced refills would take an hour)."""
    env.dovecot.deliver(env.mailbox.email, sample("for every task"))
    task_ids = [await env.add_task(destination_folder=f"Round{n}") for n in range(10)]
    settings = env.settings.model_copy(update={"worker_concurrency": 2})
    scheduler = Scheduler(settings=settings, db=env.db, secret_box=env.secret_box)  # never started: no timers
    try:
        assert await scheduler.dispatch() == 2

        async def all_ran() -> bool:
            times = await run_times(env.db)
            return all(times.get(task_id) for task_id in task_ids) and scheduler.runner.running == 0

        await eventually(all_ran, within=60, what="every due task ran")
    finally:
        await scheduler.shutdown()
    async with env.db.read() as session:
        assert await body_count(session) == 10


@pytest.mark.parametrize("status", [CredentialStatus.PENDING, CredentialStatus.RECONNECT])
async def test_the_dispatcher_leaves_alone_an_oauth_task_waiting_for_its_sign_in(
    db: Database, settings: Settings, secret_box: SecretBox, status: CredentialStatus
) -> None:
    """Issue 15: a task whose consent is pending, or that needs Reconnect, is not claimed however
    overdue (no retry loop against the provider); once signed in it is."""
    user = await add_user(db=db, email="oauth-reader@example.test", password="long enough password")
    async with db.write() as session:
        task = RetrievalTask(
            user_id=user.id,
            protocol=Protocol.IMAP,
            host="imap.example.test",
            port=993,
            username="reader@example.test",
            auth=AuthKind.OAUTH2,
            oauth_provider="local",
            oauth_status=status,
            next_run_at=utcnow() - timedelta(hours=1),
        )
        session.add(task)
    runner = Runner(db=db, secret_box=secret_box, settings=settings)
    assert await runner.dispatch_due() == 0
    assert await due_count(db) == 0
    async with db.write() as session:
        await session.exec(update(RetrievalTask).values(oauth_status=CredentialStatus.OK))
    assert await due_count(db) == 1
