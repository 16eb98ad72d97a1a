"""A folder's batches fetched and made durable ahead of their commit (imap_run's pipeline).

While the event loop commits batch n, batches n+1 and n+2 are on their way, each in worker
threads: FETCHed, then written to the body store. So the disk write and fdatasync of one batch
overlap the FETCH of the next, and both overlap the commit of the one before. At most `depth`
+ 1 batches are in memory.

The one IMAP session answers one command after another, so FETCHes go out one at a time and
in batch order (a FIFO lock), and the lock is held until the FETCH's thread has really
returned, even when the run is cancelled meanwhile: a cancelled await does not stop a thread,
and a second FETCH or the LOGOUT must not start beside it. After a failed FETCH the session is
in an unknown state: no further FETCH is sent. `settle` (always, before the session closes)
stops what has not reached the session yet and waits for the rest, whatever happens to its
caller.

Exactly-once is untouched: a batch is committed, with its cursor, only after its own bodies
are durable; bodies of batches never committed (a failed commit, a shutdown) are
unreferenced bytes that compaction reclaims.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from service.persistence.mailstore import IncomingMessage
from service.usecases.retrieval.imap_batches import Batch, Source

T = TypeVar("T")


class _Stopped(Exception):
    """A batch that was not FETCHed: the run is stopping, or an earlier FETCH failed."""


@dataclass(slots=True)
class _Flight:
    """One batch on its way; `stopped` before it reaches the session, it sends nothing."""

    uids: list[int]
    stopped: bool = False


class Prefetch:
    """Batches of one folder, fetched and durable, handed out in order by `next`."""

    def __init__(self, source: Source, batches: Sequence[Batch], *, depth: int = 2) -> None:
        self._source = source
        self._waiting = deque(batch.fetch for batch in batches)
        self._depth = depth
        self._session = asyncio.Lock()  # FIFO: FETCHes go out in batch order
        self._flying: deque[tuple[_Flight, asyncio.Task[list[IncomingMessage]]]] = deque()
        self._broken = False  # a FETCH failed: the session is not asked again

    def _start(self, count: int) -> None:
        while self._waiting and len(self._flying) < count:
            flight = _Flight(self._waiting.popleft())
            self._flying.append((flight, asyncio.ensure_future(self._prepare(flight))))

    async def _prepare(self, flight: _Flight) -> list[IncomingMessage]:
        async with self._session:
            if flight.stopped or self._broken:
                raise _Stopped
            try:
                fetched = await _uncancelled(asyncio.to_thread(self._source.fetch, flight.uids))
            except BaseException:
                self._broken = True
                raise
        return await asyncio.to_thread(self._source.store, fetched)

    def _stop(self) -> None:
        self._waiting.clear()
        for flight, _ in self._flying:
            flight.stopped = True

    async def next(self, *, more: bool = True) -> list[IncomingMessage]:
        """The next batch, fetched and durable. With `more` False (shutting down) nothing after
        it is FETCHed any more."""
        self._start(self._depth if more else 1)
        _, task = self._flying.popleft()
        if more:
            self._start(self._depth)
        else:
            self._stop()
        return await task

    async def settle(self) -> None:
        """Stop the batches that have not reached the session and wait for the rest (their
        failures are not the caller's any more), so the session is idle before it closes."""
        self._stop()
        flying = [task for _, task in self._flying]
        self._flying.clear()
        if flying:
            await _uncancelled(asyncio.gather(*flying, return_exceptions=True))


async def _uncancelled(work: Awaitable[T]) -> T:
    """Await `work` to its end even if the caller is cancelled meanwhile (the cancellation is
    raised after): a worker thread runs on when its await is cancelled."""
    future = asyncio.ensure_future(work)
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return future.result()
