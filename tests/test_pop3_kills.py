"""POP3 in delete mode under SIGKILL: `tributary retrieval run` killed at random points of its
POP3 session, again and again, with new mail arriving in between, loses nothing and stores
nothing twice; a last run left alone empties the server.

The runs reach Dovecot through a small proxy that tells when a run connects, so the seeded
random delays fall inside the session (not in the process's start-up)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections import Counter

import pytest

from service.config import Settings
from service.domain.values import Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from tests.cli_runner import TRIBUTARY, cli_environment
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.retrieval_env import Env, make_env
from tests.stored_bodies import stored_raws

KILLS = 20
NEW_PER_ROUND = 6  # batches of 2: three batches a run, with the DELEs of earlier ones between


class Doorway:
    """A TCP proxy on loopback to `port` that sets `connected` when a client arrives."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.connected = asyncio.Event()
        self.port = 0

    async def __aenter__(self) -> Doorway:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self.server.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connected.set()
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(
            _pipe(client_reader, server_writer), _pipe(server_reader, client_writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


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

    async def run(kill_after: float | None) -> float:
        """One `tributary retrieval run`, SIGKILLed `kill_after` seconds after it connects unless
        it ended first. Returns how long its session lasted; -1 when it was killed."""
        doorway.connected.clear()
        process = await asyncio.create_subprocess_exec(
            *(TRIBUTARY, "retrieval", "run", str(task_id), "--json"),
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        ended = asyncio.ensure_future(process.wait())
        arrived = asyncio.ensure_future(doorway.connected.wait())
        await asyncio.wait([ended, arrived], return_when="FIRST_COMPLETED")
        arrived.cancel()
        connected = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(ended), kill_after)
        except TimeoutError:
            os.kill(process.pid, signal.SIGKILL)
        stdout, stderr = await process.communicate()
        if process.returncode == -signal.SIGKILL:
            return -1
        assert process.returncode == 0, stderr
        shown = json.loads(stdout)
        assert (shown["already_running"], shown["errors"]) == (False, []), shown  # a killed run never blocks
        return time.monotonic() - connected

    delivered = fill(env, 0, NEW_PER_ROUND)
    session = await run(None)  # a whole run: how long its session takes on this machine
    assert session > 0
    assert env.dovecot.message_count(env.mailbox.email) == 0

    chance = random.Random(14)
    kills = 0
    for _ in range(3 * KILLS):
        delivered += fill(env, len(delivered), NEW_PER_ROUND)
        kills += await run(chance.uniform(0, 0.8) * session) < 0
        if kills == KILLS:
            break
    assert kills == KILLS

    assert await run(None) > 0
    assert env.dovecot.message_count(env.mailbox.email) == 0
    async with env.db.read() as db_session:
        assert Counter(await stored_raws(db_session)) == Counter(delivered)
