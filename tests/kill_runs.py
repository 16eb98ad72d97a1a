"""Runs of `tributary retrieval run` SIGKILLed at random points of their mail session.

The runs reach Dovecot through a small proxy (`Doorway`) that tells when a run connects, so the
seeded random delays fall inside the session (not in the process's start-up). Shared by the POP3
and the IMAP (body store) kill tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Callable, Mapping

from tests.cli_runner import TRIBUTARY


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


async def run(doorway: Doorway, task_id: int, environment: Mapping[str, str], kill_after: float | None) -> float:
    """One `tributary retrieval run` of `task_id` through `doorway`, SIGKILLed `kill_after` seconds
    after it connects unless it ended first. Returns how long its session lasted; -1 when it was killed."""
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
        with contextlib.suppress(ProcessLookupError):  # it ended (and was reaped) at that very moment
            os.kill(process.pid, signal.SIGKILL)
    stdout, stderr = await process.communicate()
    if process.returncode == -signal.SIGKILL:
        return -1
    assert process.returncode == 0, stderr
    shown = json.loads(stdout)
    assert (shown["already_running"], shown["errors"]) == (False, []), shown  # a killed run never blocks
    return time.monotonic() - connected


async def kill_at_random(
    doorway: Doorway,
    task_id: int,
    environment: Mapping[str, str],
    *,
    more_mail: Callable[[], object],
    session: float,
    reach: float,
    seed: int,
    kills: int,
) -> None:
    """Delivers `more_mail` and runs, SIGKILLing each run at a seeded random point within the first
    `reach` of a whole `session`, until `kills` runs were killed (within 3 * `kills` runs)."""
    chance = random.Random(seed)
    killed = 0
    for _ in range(3 * kills):
        more_mail()
        killed += await run(doorway, task_id, environment, chance.uniform(0, reach) * session) < 0
        if killed == kills:
            break
    assert killed == kills
