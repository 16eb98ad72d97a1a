"""Push across `tributary worker` processes (issue 16): each task's push connection is held by
exactly one worker, within each worker's TRIBUTARY_PUSH_CONNECTIONS, and the connections of a
worker killed outright are taken over by another within a push lease period."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, func, select

from service.config import Settings
from service.domain.values import PushState
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Message, RetrievalTask
from service.persistence.types import utcnow
from tests.cli_runner import TRIBUTARY, cli_environment, terminate
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.mail_samples import sample
from tests.retrieval_env import Env, eventually, make_env

LEASE = 3
TASKS = 50


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


async def start_worker(settings: Settings, log_path: Path, *, connections: int) -> asyncio.subprocess.Process:
    environment = cli_environment(settings) | {
        "TRIBUTARY_PUSH_CONNECTIONS": str(connections),
        "TRIBUTARY_PUSH_LEASE_SECONDS": str(LEASE),
    }
    with log_path.open("wb") as log:
        return await asyncio.create_subprocess_exec(TRIBUTARY, "worker", env=environment, stdout=log, stderr=log)


async def holders(env: Env) -> dict[int, str | None]:
    """Who holds each task's push lease, counting only listening connections."""
    async with env.db.read() as session:
        rows = (await session.exec(select(RetrievalTask).order_by(col(RetrievalTask.id)))).all()
    return {row.id: row.push_owner if row.push_state is PushState.LISTENING else None for row in rows if row.id}


async def copies(env: Env, sender: str) -> int:
    async with env.db.read() as session:
        found = await session.exec(
            select(func.count()).select_from(Message).where(col(Message.from_address).contains(sender))
        )
        return int(found.one())


async def test_two_workers_hold_each_push_connection_once_and_take_over_a_killed_ones(env: Env, tmp_path: Path) -> None:
    settings = env.settings.model_copy(update={"retrieval_interval": 3600, "worker_concurrency": 8})
    task_ids = {await env.add_task(destination_folder=f"T{n}") for n in range(TASKS)}
    async with env.db.write() as session:  # polled a moment ago: the next poll is an hour away
        await session.exec(update(RetrievalTask).values(next_run_at=utcnow() + timedelta(hours=1)))
    first = await start_worker(settings, tmp_path / "first.log", connections=TASKS // 2)
    second: asyncio.subprocess.Process | None = None
    try:

        async def first_full() -> bool:
            owners = Counter(owner for owner in (await holders(env)).values() if owner)
            return list(owners.values()) == [TASKS // 2]

        await eventually(first_full, within=30, what="the first worker holds its 25 connections")
        first_owner = next(owner for owner in (await holders(env)).values() if owner)
        second = await start_worker(settings, tmp_path / "second.log", connections=TASKS)

        async def all_held() -> bool:
            held = await holders(env)
            return set(held) == task_ids and all(held.values())

        await eventually(all_held, within=30, what="every task listening")
        by_worker = Counter((await holders(env)).values())
        assert len(by_worker) == 2, by_worker  # each task has one holder; both workers hold some
        assert sorted(by_worker.values()) == [TASKS // 2, TASKS // 2], by_worker

        os.kill(first.pid, signal.SIGKILL)
        await first.wait()
        killed_at = time.monotonic()
        # Announced to the survivor's connections, and to nobody for the dead worker's tasks: their
        # new holder catches up when it takes them over.
        env.dovecot.deliver(env.mailbox.email, sample("while taking over", sender="late@example.test"))

        async def taken_over() -> bool:
            held = await holders(env)
            return all(owner is not None and owner != first_owner for owner in held.values())

        await eventually(taken_over, within=LEASE * 4 + 10, what="the second worker took over every connection")
        assert time.monotonic() - killed_at < LEASE * 4 + 10
        assert len(set((await holders(env)).values())) == 1

        async def stored_by_every_task() -> bool:
            return await copies(env, "late@example.test") == TASKS

        await eventually(stored_by_every_task, within=30, what="every task stored the pushed message")
        await asyncio.sleep(1)  # a duplicate would be stored right after
        assert await copies(env, "late@example.test") == TASKS
    finally:
        await terminate(first)
        if second is not None:
            await terminate(second)
    async with env.db.read() as session:
        released = (await session.exec(select(RetrievalTask.push_owner))).all()
    assert released == [None] * TASKS  # a worker stopped by SIGTERM gives its push leases back
