"""POP3 in delete mode under SIGKILL: `tributary retrieval run` killed at random points of its
POP3 session, again and again, with new mail arriving in between, loses nothing and stores
nothing twice; a last run left alone empties the server.

The runs reach Dovecot through a small proxy that tells when a run connects, so the seeded
random delays fall inside the session (not in the process's start-up): see tests/kill_runs.py."""

from __future__ import annotations

from collections import Counter

import pytest

from service.config import Settings
from service.domain.values import Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from tests import kill_runs
from tests.cli_runner import cli_environment
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.kill_runs import Doorway
from tests.retrieval_env import Env, make_env
from tests.stored_bodies import stored_raws

KILLS = 20
NEW_PER_ROUND = 6  # batches of 2: three batches a run, with the DELEs of earlier ones between


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    small_batches = settings.model_copy(update={"retrieval_batch_messages": 2})
    return await make_env(db, small_batches, secret_box, dovecot, mail_user)


def fill(env: Env, first: int, count: int) -> list[bytes]:
    """`count` small messages, numbered from `first`, delivered to the server's inbox."""
    messages = [
        f"Subject: kill {n}\r\nMessage-ID: <{n}@kills.test>\r\n\r\nbody {n}\r\n".encode()
        for n in range(first, first + count)
    ]
    for raw in messages:
        env.dovecot.deliver(env.mailbox.email, raw)
    return messages


async def test_runs_killed_at_random_points_store_every_message_exactly_once(env: Env) -> None:
    async with Doorway(env.dovecot.pop3_port) as doorway:
        await _kill_runs_again_and_again(env, doorway)


async def _kill_runs_again_and_again(env: Env, doorway: Doorway) -> None:
    task_id = await env.add_task(Protocol.POP3, port=doorway.port, security=Security.NONE, leave_on_server=False)
    environment = cli_environment(env.settings)

    delivered = fill(env, 0, NEW_PER_ROUND)
    # a whole run: how long its session takes on this machine
    session = await kill_runs.run(doorway, task_id, environment, None)
    assert session > 0
    assert env.dovecot.message_count(env.mailbox.email) == 0

    await kill_runs.kill_at_random(
        doorway,
        task_id,
        environment,
        more_mail=lambda: delivered.extend(fill(env, len(delivered), NEW_PER_ROUND)),
        session=session,
        reach=0.8,
        seed=14,
        kills=KILLS,
    )

    assert await kill_runs.run(doorway, task_id, environment, None) > 0
    assert env.dovecot.message_count(env.mailbox.email) == 0
    async with env.db.read() as db_session:
        assert Counter(await stored_raws(db_session)) == Counter(delivered)
