"""The IMAP run's prefetch: batches FETCHed in order, one at a time, each made durable while the
next is FETCHed, handed to the commit in order, at most two ahead; no FETCH after a failed one,
never two at once nor one after `settle` even when the run is cancelled mid-FETCH
(service.usecases.retrieval.imap_prefetch).

The stages are scripted here (threads, events) because the property is the overlap itself;
the retrieval tests run the same pipeline against Dovecot, and the kill tests cut it."""

from __future__ import annotations

import asyncio
import threading
from typing import cast

import pytest

from service.persistence.mailstore import IncomingMessage
from service.usecases.retrieval.imap_batches import Batch, Source
from service.usecases.retrieval.imap_prefetch import Prefetch

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
        self.holds: dict[int, threading.Event] = {}  # batch n's FETCH waits for holds[n]

    def event(self, uid: int, events: dict[int, threading.Event] | None = None) -> threading.Event:
        with self.lock:
            return (self.started if events is None else events).setdefault(uid, threading.Event())

    def fetch(self, uids: list[int]) -> list[IncomingMessage]:
        with self.lock:
            self.fetching += 1
            self.most_fetching = max(self.most_fetching, self.fetching)
        self.event(uids[0]).set()
        try:
            hold = self.holds.get(uids[0])
            if hold is not None:
                assert hold.wait(WAIT), f"batch {uids[0]}'s FETCH was never released"
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
    assert await asyncio.to_thread(stages.event(3, stages.durable).wait, WAIT)
    for _ in range(50):  # give the pipeline every chance to run further ahead than it may
        await asyncio.sleep(0)
    assert stages.fetched == [1, 2, 3]
    await ahead.settle()


async def test_no_fetch_after_a_lost_connection_and_settle_waits_for_the_rest() -> None:
    stages = Stages()
    stages.fail_fetch = {2}
    ahead = prefetch(stages, 4)
    assert number(await ahead.next()) == 1
    with pytest.raises(ConnectionError, match="batch 2"):
        await ahead.next()
    await ahead.settle()  # batch 3 was waiting for the session: it never asked
    assert stages.fetched == [1]
    assert sorted(stages.started) == [1, 2]


async def test_shutting_down_fetches_nothing_more() -> None:
    stages = Stages()
    ahead = prefetch(stages, 6)
    assert number(await ahead.next(more=False)) == 1
    await ahead.settle()
    assert stages.fetched == [1]


async def test_a_run_cancelled_mid_fetch_waits_for_it_and_sends_nothing_beside_or_after_it() -> None:
    """Ctrl-C, or asyncio.run's teardown: the FETCH thread runs on; nothing may join it on the
    session, and settle returns (the session may close) only once it has returned."""
    stages = Stages()
    release = threading.Event()
    stages.holds[2] = release
    ahead = prefetch(stages, 5)
    assert number(await ahead.next()) == 1  # batch 2 FETCHing (held), batch 3 waiting for the session
    assert await asyncio.to_thread(stages.event(2).wait, WAIT)
    run = asyncio.ensure_future(ahead.next())
    await asyncio.sleep(0)
    run.cancel()
    await asyncio.sleep(0.05)
    assert not run.done()  # still waiting for the FETCH's thread
    threading.Timer(0.05, release.set).start()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert stages.fetching == 0
    await ahead.settle()
    assert stages.fetched == [1, 2]  # batch 3 never asked the session
    assert stages.most_fetching == 1


async def test_settle_cancelled_still_waits_and_leaves_nothing_unawaited() -> None:
    stages = Stages()
    release = threading.Event()
    stages.holds[2] = release
    ahead = prefetch(stages, 4)

    async def commit_fails() -> None:
        try:
            await ahead.next()
            raise RuntimeError("the commit failed")
        finally:
            await ahead.settle()

    run = asyncio.ensure_future(commit_fails())
    assert await asyncio.to_thread(stages.event(2).wait, WAIT)
    await asyncio.sleep(0.01)
    run.cancel()  # teardown while settle waits for batch 2's FETCH
    await asyncio.sleep(0.05)
    assert not run.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert stages.fetching == 0
    assert stages.fetched == [1, 2]
