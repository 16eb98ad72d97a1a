"""A retrieval run with nothing new and no error writes no log entry (idle tasks would bury
everything else in Logs); a run that imports, or fails, writes one; debug transcripts stay."""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from service.config import Settings
from service.domain.values import LogLevel, LogSource
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import LogEntry, RetrievalTask
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.mail_samples import sample
from tests.retrieval_env import Env, make_env


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


async def incoming(env: Env, level: LogLevel) -> list[str]:
    async with env.db.read() as session:
        query = select(LogEntry).where(LogEntry.source == LogSource.INCOMING, LogEntry.level == level)
        return [e.text for e in (await session.exec(query.order_by(col(LogEntry.id)))).all()]


async def test_quiet_runs_write_nothing_an_import_and_an_error_write_one_each(env: Env) -> None:
    task_id = await env.add_task()
    for _ in range(2):
        assert (await env.run(task_id)).ok
    assert await incoming(env, LogLevel.INFO) == []
    async with env.db.read() as session:
        task = await session.get(RetrievalTask, task_id)
        assert task is not None
        assert task.last_run_at is not None
        assert task.last_success_at is not None

    env.dovecot.deliver(env.mailbox.email, sample("one new"))
    assert (await env.run(task_id)).imported == 1
    [entry] = await incoming(env, LogLevel.INFO)
    assert "Imported 1 message" in entry or "1 new message" in entry
    assert (await env.run(task_id)).ok
    assert len(await incoming(env, LogLevel.INFO)) == 1

    async with env.db.write() as session:  # the next run fails to sign in
        task = await session.get(RetrievalTask, task_id)
        assert task is not None
        task.port = env.dovecot.pop3s_port
        session.add(task)
    assert not (await env.run(task_id)).ok
    errors = await incoming(env, LogLevel.ERROR)
    assert len(errors) == 1


async def test_a_quiet_run_with_debug_still_writes_its_transcript(env: Env) -> None:
    task_id = await env.add_task(enable_debug=True)
    assert (await env.run(task_id)).ok
    assert await incoming(env, LogLevel.INFO) == []
    [transcript] = await incoming(env, LogLevel.DEBUG)
    assert "EXAMINE" in transcript or "SELECT" in transcript
