"""POP3 in delete mode ("Leave messages on server" off) over several batches, against the real
Dovecot fixture: every committed batch is DELEd before QUIT, so one run empties the server and
the next imports nothing."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlmodel import select

from service.config import Settings
from service.domain.values import Protocol
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import PopUidl
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.retrieval_env import Env, make_env
from tests.stored_bodies import stored_raws

POP3 = Protocol.POP3


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    small_batches = settings.model_copy(update={"retrieval_batch_messages": 3})
    return await make_env(db, small_batches, secret_box, dovecot, mail_user)


def fill(env: Env, first: int, count: int) -> list[bytes]:
    """`count` small messages, numbered from `first`, delivered to the server's inbox."""
    messages = [
        f"Subject: pop {n}\r\nMessage-ID: <{n}@batches.test>\r\n\r\nbody {n}\r\n".encode()
        for n in range(first, first + count)
    ]
    for raw in messages:
        env.dovecot.deliver(env.mailbox.email, raw)
    return messages


async def stored(env: Env) -> Counter[bytes]:
    async with env.db.read() as session:
        return Counter(await stored_raws(session))


async def test_a_delete_mode_run_over_several_batches_empties_the_server(env: Env) -> None:
    messages = fill(env, 0, 11)  # batches of 3: four batches, the last one short
    task_id = await env.add_task(POP3, leave_on_server=False)
    first = await env.run(task_id)
    assert (first.imported, first.errors) == (11, [])
    assert env.dovecot.message_count(env.mailbox.email) == 0
    assert await stored(env) == Counter(messages)
    second = await env.run(task_id)
    assert (second.imported, second.errors) == (0, [])
    assert await stored(env) == Counter(messages)
    async with env.db.read() as session:
        assert (await session.exec(select(PopUidl))).all() == []  # nothing is left on the server to remember


@pytest.mark.parametrize("count", [1, 3, 4, 6])
async def test_batch_boundaries(env: Env, count: int) -> None:
    """One batch, exactly one full batch, one and a bit, exactly two."""
    messages = fill(env, 0, count)
    task_id = await env.add_task(POP3, leave_on_server=False)
    assert (await env.run(task_id)).imported == count
    assert env.dovecot.message_count(env.mailbox.email) == 0
    assert (await env.run(task_id)).imported == 0
    assert await stored(env) == Counter(messages)
