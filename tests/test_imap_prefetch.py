"""The IMAP run's prefetch: batches FETCHed in order, one at a time, each made durable while the
next is FETCHed, handed to the commit in order, at most two ahead, and every one in flight
settled before the session closes (service.usecases.retrieval.imap_batches.Prefetch).

The stages are scripted here (threads, events) because the property is the overlap itself;
the retrieval tests run the same pipeline against Dovecot, and the kill tests cut it."""

from __future__ import annotations

import asyncio
import threading
from typing import cast

import pytest

from service.persistence.mailstore import IncomingMessage
from service.usecases.retrieval.imap_batches import Batch, Prefetch, Source

WAIT = 10.0  # seconds a stage waits for the other before the test calls it sequential


class Stages:
    """A Source whose FETCH and store record what runs when; `gate(n)` holds batch n's store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fetching = 0
        self.most_fetching = 0
        self.fetched: list[int] = []
        self.stored: list[int] = []
        self.started: dict[int, threading.Event] = {}
        self.durable: dict[int, threading.Event] = {}
        self.gates: dict[int, threading.Event] = {}
        self.fail_fetch: set[int] = set()

    def event(self, uid: int, events: dict[int, threading.Event] | None = None) -> threading.Event:
        with self.lock:
            return (self.started if events is None else events).setdefault(uid, threading.Event())

    def fetch(self, uids: list[int]) -> list[IncomingMessage]:
        with self.lock:
            self.fetching += 1
            self.most_fetching = max(self.most_fetching, self.fetching)
        self.event(uids[0]).set()
        try:
            if uids[0] in self.fail_fetch:
                raise ConnectionError(f"lost during batch {uids[0]}")
            with self.lock:
                self.fetched.append(uids[0])
            return [IncomingMessage(raw=f"batch {uids[0]}".encode())]
        finally:
            with self.lock:
                self.fetching -= 1

    def store(self, fetched: list[IncomingMessage]) -> list[IncomingMessage]:
        number = int(fetched[0].raw.split()[1])
        gate = self.gates.get(number)
        if gate is not None:
            assert gate.wait(WAIT), f"batch {number}'s store was never released"
        with self.lock:
            self.stored.append(number)
        self.event(number, self.durable).set()
        return fetched


def prefetch(stages: Stages, count: int) -> Prefetch:
    return Prefetch(cast(Source, stages), [Batch([n]) for n in range(1, count + 1)])


def number(batch: list[IncomingMessage]) -> int:
    return int(batch[0].raw.split()[1])


async def test_the_next_fetch_overlaps_the_store_before_it_and_batches_come_in_order() -> None:
    stages = Stages()
    # Batch 1's store waits until batch 2's FETCH has started: a pipeline that stored before
    # fetching the next would never get there.
    stages.gates[1] = stages.event(2)
    ahead = prefetch(stages, 5)
    got = [number(await ahead.next()) for _ in range(5)]
    await ahead.settle()
    assert got == [1, 2, 3, 4, 5]
    assert stages.fetched == [1, 2, 3, 4, 5]
    assert stages.most_fetching == 1  # one command at a time on the IMAP session


async def test_a_slow_store_does_not_reorder_the_batches() -> None:
    stages = Stages()
    release = threading.Event()
    stages.gates[1] = release  # batch 1 is still being written while batch 2 is durable
    ahead = prefetch(stages, 3)
    first = asyncio.ensure_future(ahead.next())
    assert await asyncio.to_thread(stages.event(2, stages.durable).wait, WAIT)
    assert not first.done()
    release.set()
    assert number(await first) == 1
    assert [number(await ahead.next()), number(await ahead.next())] == [2, 3]


async def test_at_most_two_batches_wait_ahead_of_the_commit() -> None:
    stages = Stages()
    ahead = prefetch(stages, 6)
    assert number(await ahead.next()) == 1
    for _ in range(50):  # give the pipeline every chance to run further ahead than it may
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert stages.fetched == [1, 2, 3]
    await ahead.settle()


async def test_a_lost_connection_raises_in_order_and_settle_waits_for_the_rest() -> None:
    stages = Stages()
    stages.fail_fetch = {2}
    ahead = prefetch(stages, 4)
    assert number(await ahead.next()) == 1
    with pytest.raises(ConnectionError, match="batch 2"):
        await ahead.next()
    await ahead.settle()  # batch 3 (in flight) finished; batch 4 was never started
    assert stages.fetched == [1, 3]
    assert stages.fetching == 0


async def test_shutting_down_starts_nothing_more() -> None:
    stages = Stages()
    ahead = prefetch(stages, 6)
    assert number(await ahead.next(more=False)) == 1
    await ahead.settle()
    assert stages.fetched == [1, 2]
