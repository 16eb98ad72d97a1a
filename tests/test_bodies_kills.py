"""IMAP retrieval under SIGKILL, on both body stores, and `bodies migrate` while it runs (issue 20).

`tributary retrieval run` killed at random points of its session, again and again with new mail
arriving in between, and then left to finish, has stored every message exactly once, byte for
byte, and `bodies verify` finds nothing wrong. With segment files, a kill between a batch's
fdatasync and its commit leaves only bytes that nothing references; the next run fetches the
batch again and references its new copy.

The runs reach Dovecot through the kill tests' proxy (`Doorway`, tests/kill_runs.py), so the
seeded random delays fall inside the IMAP session rather than in the process's start-up."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from sqlmodel import select

from service.config import Settings
from service.domain.values import Protocol, Security
from service.persistence.bodies import maintenance
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import MessageBody, MessageBodyRef
from tests import kill_runs
from tests.cli_runner import cli_environment, tributary
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.kill_runs import Doorway
from tests.retrieval_env import Env, make_env
from tests.stored_bodies import body_count, stored_raws

KILLS = 20
NEW_PER_ROUND = 6  # batches of 2


@pytest.fixture(params=["files", "database"])
async def env(
    request: pytest.FixtureRequest,
    settings: Settings,
    secret_box: SecretBox,
    dovecot: DovecotServer,
    mail_user: MailUser,
) -> AsyncIterator[Env]:
    chosen = settings.model_copy(update={"retrieval_batch_messages": 2, "body_store": request.param})
    db = Database(chosen)
    yield await make_env(db, chosen, secret_box, dovecot, mail_user)
    await db.dispose()


def fill(env: Env, first: int, count: int) -> list[bytes]:
    """`count` messages numbered from `first`, delivered to the server's inbox. Every fifth is over
    a megabyte, so its batch is written with O_DIRECT (service.persistence.bodies.direct)."""
    messages = [
        f"Subject: kill {n}\r\nMessage-ID: <{n}@bodies-kills.test>\r\n\r\n".encode()
        + (b"body %d\r\n" % n) * (1 + 120_000 * (n % 5 == 0))
        for n in range(first, first + count)
    ]
    for raw in messages:
        env.dovecot.deliver(env.mailbox.email, raw)
    return messages


@pytest.mark.timeout(900)
async def test_imap_runs_killed_at_random_points_store_every_message_once_on_either_store(env: Env) -> None:
    async with Doorway(env.dovecot.imap_port) as doorway:
        await _kill_runs_again_and_again(env, doorway)


async def _kill_runs_again_and_again(env: Env, doorway: Doorway) -> None:
    task_id = await env.add_task(Protocol.IMAP, port=doorway.port, security=Security.NONE)
    environment = cli_environment(env.settings)

    delivered = fill(env, 0, NEW_PER_ROUND)
    # a whole run: how long its session takes on this machine
    session = await kill_runs.run(doorway, task_id, environment, None)
    assert session > 0

    await kill_runs.kill_at_random(
        doorway,
        task_id,
        environment,
        more_mail=lambda: delivered.extend(fill(env, len(delivered), NEW_PER_ROUND)),
        session=session,
        reach=0.9,
        seed=20,
        kills=KILLS,
    )

    assert await kill_runs.run(doorway, task_id, environment, None) > 0
    async with env.db.read() as db_session:
        assert Counter(await stored_raws(db_session)) == Counter(delivered)  # each once, byte for byte
    verified = tributary(env.settings, "bodies", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["checked"] == len(delivered)


async def test_migrate_both_ways_while_retrieval_runs(
    settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    """`bodies migrate` moves bodies while a run stores new mail; a second pass takes what the run
    stored meanwhile; every message stays readable, once, byte for byte, in both directions."""
    in_table = settings.model_copy(update={"retrieval_batch_messages": 5, "body_store": "database"})
    in_files = in_table.model_copy(update={"body_store": "files"})
    table_db, files_db = Database(in_table), Database(in_files)
    try:
        env = await make_env(table_db, in_table, secret_box, dovecot, mail_user)
        task_id = await env.add_task()
        delivered = fill(env, 0, 30)
        assert (await env.run(task_id)).imported == 30
        delivered += fill(env, 30, 30)
        ran, _ = await asyncio.gather(env.run(task_id), maintenance.migrate(table_db, to="files"))
        assert ran.imported == 30
        await maintenance.migrate(table_db, to="files")  # what the run stored in the table meanwhile
        async with table_db.read() as session:
            assert await body_count(session) == 60
            assert (await session.exec(select(MessageBody.message_id))).all() == []
            assert Counter(await stored_raws(session)) == Counter(delivered)

        env = replace(env, db=files_db, settings=env.settings.model_copy(update={"body_store": "files"}))
        delivered += fill(env, 60, 30)
        ran, _ = await asyncio.gather(env.run(task_id), maintenance.migrate(files_db, to="database"))
        assert ran.imported == 30
        await maintenance.migrate(files_db, to="database")
        async with files_db.read() as session:
            assert (await session.exec(select(MessageBodyRef.message_id))).all() == []
            assert Counter(await stored_raws(session)) == Counter(delivered)
    finally:
        await table_db.dispose()
        await files_db.dispose()
