"""The domain's IMAP/POP Retrieval switch, off then on again, leaves its tasks healthy: the
dispatcher claims none of them while it is off, a run claimed just before it went off gives the
task back untouched, "Retrieve Messages Now" answers with the sentence without marking the task
failing, and once the switch is back on the tasks are due at once and run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from service.config import Settings
from service.domain.values import LogLevel, RetrievalMethod
from service.errors import FeatureDisabled
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import LogEntry, RetrievalTask
from service.persistence.types import utcnow
from service.usecases.domains import set_domain
from service.usecases.retrieval.lease import claim
from service.usecases.retrieval.run import run_leased
from service.usecases.retrieval.runner import Runner
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.mail_samples import sample
from tests.retrieval_env import Env, make_env
from tests.test_push import task_row

DOMAIN = "example.test"  # reader@example.test's


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


async def due_task(env: Env) -> int:
    task_id = await env.add_task(method=RetrievalMethod.AUTOMATIC)
    async with env.db.write() as session:
        task = await session.get(RetrievalTask, task_id)
        assert task is not None
        task.next_run_at = utcnow() - timedelta(seconds=5)
        session.add(task)
    return task_id


async def assert_healthy(env: Env, task_id: int) -> None:
    task = await task_row(env, task_id)
    assert (task.failing_since, task.consecutive_failures, task.last_error) == (None, 0, None)
    assert task.lease_owner is None
    async with env.db.read() as session:
        errors = (await session.exec(select(LogEntry).where(LogEntry.level == LogLevel.ERROR))).all()
    assert [e.text for e in errors] == []


async def test_off_nothing_is_claimed_run_now_explains_and_on_again_runs_at_once(env: Env) -> None:
    env.dovecot.deliver(env.mailbox.email, sample("waiting while off"))
    task_id = await due_task(env)
    await set_domain(db=env.db, name=DOMAIN, retrieval_enabled=False)
    runner = Runner(db=env.db, secret_box=env.secret_box, settings=env.settings)
    assert await runner.dispatch_due() == 0
    with pytest.raises(FeatureDisabled, match="turned off IMAP/POP Retrieval"):
        await runner.run_now(task_id, user_id=env.user_id)
    await assert_healthy(env, task_id)
    assert (await task_row(env, task_id)).last_run_at is None

    await set_domain(db=env.db, name=DOMAIN, retrieval_enabled=True)
    assert (await task_row(env, task_id)).next_run_at <= utcnow()  # type: ignore[operator]
    assert await runner.dispatch_due() == 1
    await runner.drain()
    await runner.shutdown()
    await assert_healthy(env, task_id)
    task = await task_row(env, task_id)
    assert task.last_success_at is not None
    assert await env.local_counts() == {"Remote/INBOX": 1}


async def test_a_run_claimed_just_before_the_switch_went_off_gives_the_task_back_untouched(env: Env) -> None:
    task_id = await due_task(env)
    due_at = (await task_row(env, task_id)).next_run_at
    lease = await claim(env.db, task_id, "worker-a", seconds=60)
    assert lease is not None
    await set_domain(db=env.db, name=DOMAIN, retrieval_enabled=False)
    result = await run_leased(db=env.db, secret_box=env.secret_box, settings=env.settings, lease=lease)
    assert result.errors == [f"Your administrator turned off IMAP/POP Retrieval for {DOMAIN}."]
    await assert_healthy(env, task_id)
    task = await task_row(env, task_id)
    assert task.next_run_at == due_at
    assert task.last_run_at is None
