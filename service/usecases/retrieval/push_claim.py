"""Group claim for push's fast path: the run leases of many tasks announced together, one transaction.

Before a fast path fetches anything it holds the task's ordinary run lease and
has read the task, its domain, its INBOX cursor and the local folder INBOX lands
in (push_fetch.read_pushed). When many push connections announce mail at once,
`GroupClaim` takes the claims that arrive while a claim transaction is being
written and does them all in the next one (no timer: a lone claim goes at once):

1. one UPDATE stamps the lease of every task of the group whose lease is free
   (or expired), RETURNING the ids it took (lease.claim's common case; a task
   whose lease another holder has, live or dead, gets None and the caller
   falls back on the ordinary `claim`, which also takes over a dead holder's);
2. one SELECT reads the taken tasks that should still push from this process
   (push_fetch.read_many), and one more finds the local folders they land in;
3. a task taken that should no longer push has its lease given back in the same
   transaction, and its caller gets NoLongerPushing, as when read_pushed undoes
   lease.claim.

The leases of one group share an owner string (the Runner's claim number):
every lease check is on (task id, owner), so the owner needs to be unique per
task and claim only, and it is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from service.persistence.database import Database
from service.persistence.tables import RetrievalTask
from service.persistence.types import utcnow
from service.usecases.retrieval.holder import this_process
from service.usecases.retrieval.lease import Lease, _free, _stamp, give_back
from service.usecases.retrieval.push_batch import taking_turns
from service.usecases.retrieval.push_fetch import NoLongerPushing, Pushed, read_many

MOST_CLAIMS = 256  # tasks in one claim transaction

Claimed = tuple[Lease, Pushed] | None


class GroupClaim:
    """The process's claimer of fast-path leases (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        *,
        owner: Callable[[], str],
        push_owner: str,
        seconds: Callable[[], int],
        turns: asyncio.Lock | None = None,
    ) -> None:
        self.db = db
        self._turns = turns  # shared with the group commit (push_batch.writers_turns)
        self._owner = owner
        self._push_owner = push_owner
        self._seconds = seconds
        self._queue: list[tuple[int, asyncio.Future[Claimed]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._returning: set[asyncio.Task[None]] = set()
        self.transactions = 0  # written so far (tests, diagnostics)

    async def claim(self, task_id: int) -> Claimed:
        """The task's run lease and what the fast path reads; None while another holder has the
        lease; NoLongerPushing (no lease taken) when the task should not push from here."""
        done: asyncio.Future[Claimed] = asyncio.get_running_loop().create_future()
        self._queue.append((task_id, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="push-group-claim")
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:  # the watcher stops: a lease taken for it goes back at once
            done.add_done_callback(self._abandoned)
            raise

    def _abandoned(self, done: asyncio.Future[Claimed]) -> None:
        if not done.cancelled() and done.exception() is None and (claimed := done.result()) is not None:
            task = asyncio.get_running_loop().create_task(self._give_back(claimed[0]))
            self._returning.add(task)
            task.add_done_callback(self._returning.discard)

    async def _give_back(self, lease: Lease) -> None:
        with contextlib.suppress(Exception):  # else it expires
            await give_back(self.db, lease)

    async def _write(self) -> None:
        while self._queue:
            group, self._queue = self._queue[:MOST_CLAIMS], self._queue[MOST_CLAIMS:]
            waiting: dict[int, list[asyncio.Future[Claimed]]] = {}
            for task_id, done in group:
                waiting.setdefault(task_id, []).append(done)
            try:
                outcomes = await self._claim(list(waiting))
            except Exception as exc:  # the database failed: every caller hears it
                outcomes = dict.fromkeys(waiting, exc)
            for task_id, futures in waiting.items():
                for position, done in enumerate(futures):
                    # The same task twice in a group (cannot happen through the Runner): the later ones wait elsewhere.
                    _settle(done, outcomes.get(task_id) if position == 0 else None)

    async def _claim(self, task_ids: list[int]) -> dict[int, Claimed | BaseException]:
        owner, seconds = self._owner(), self._seconds()
        now = utcnow()
        async with taking_turns(self._turns), self.db.write() as session:
            connection = await session.connection()
            taken = await connection.execute(
                update(RetrievalTask)
                .where(col(RetrievalTask.id).in_(task_ids), _free(now))
                .values(**_stamp(owner, this_process(), now + timedelta(seconds=seconds)))
                .returning(col(RetrievalTask.id))
            )
            ids = [task_id for (task_id,) in taken if task_id is not None]
            pushed = await read_many(session, ids, push_owner=self._push_owner) if ids else {}
            await _give_back(session, [task_id for task_id in ids if task_id not in pushed], owner)
        self.transactions += 1
        outcomes: dict[int, Claimed | BaseException] = {}
        for task_id in ids:
            found = pushed.get(task_id)
            outcomes[task_id] = (Lease(task_id, owner, seconds), found) if found else NoLongerPushing(task_id)
        return outcomes


async def _give_back(session: AsyncSession, task_ids: list[int], owner: str) -> None:
    if task_ids:
        await session.exec(
            update(RetrievalTask)
            .where(col(RetrievalTask.id).in_(task_ids), col(RetrievalTask.lease_owner) == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


def _settle(done: asyncio.Future[Claimed], outcome: Claimed | BaseException) -> None:
    if done.done():
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)
