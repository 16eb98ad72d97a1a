"""Who runs retrieval tasks in a process: the scheduler's dispatcher and "Retrieve Messages Now".

`Runner` claims due automatic tasks up to its concurrency (the rest wait in the
database for any worker), runs them as asyncio tasks whose protocol work happens
in threads, and shares a run in progress: asking for a task this process is
already running waits for that run and returns its result, marked
`already_running`. A task leased by another process answers `already_running`
at once. At shutdown the runs are told to stop after their current batch, and
they release their leases on the way out.

Push (push.py) asks for runs with `request_push_run`: they coalesce per task —
while a push run of a task is waiting or running, more news only marks "run
again after this one", so a message announced during a run is fetched by a run
that starts after it. A push run takes the ordinary run lease (`claim`); when
another run holds it (here: wait for it; elsewhere: try again after
PUSH_CLAIM_RETRY_SECONDS, doubling), it starts after that run ends, so nothing announced
while a poll was under way is missed, and the lease keeps it exactly once. It is
a full, ordinary run (`run_leased`): afterwards the next poll is an interval
from its end, as after any run. Push runs have their own concurrency
(`push_concurrency`), so many tasks notified at once finish quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta

from service import metrics
from service.config import Settings
from service.domain.retrieval import RunProgress, RunResult
from service.errors import TributaryError
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.types import utcnow
from service.usecases.retrieval.lease import (
    Lease,
    LeaseLost,
    claim,
    claim_due,
    due_count,
    give_back,
    release,
    renew,
    worker_identity,
)
from service.usecases.retrieval.push_batch import GroupCommit, writers_turns
from service.usecases.retrieval.push_claim import GroupClaim
from service.usecases.retrieval.push_fetch import (
    FetchingConnection,
    NoLongerPushing,
    Pushed,
    fetch_pushed,
)
from service.usecases.retrieval.push_leases import push_eligible
from service.usecases.retrieval.run import check_runnable, run_leased

log = logging.getLogger(__name__)

SHUTDOWN_WAIT_SECONDS = 30.0
PUSH_CLAIM_RETRY_SECONDS = 0.5  # the first retry; doubling up to PUSH_CLAIM_RETRY_MAX_SECONDS
PUSH_CLAIM_RETRY_MAX_SECONDS = 10.0
FAST_PATHS = 256  # push fast paths at once per process


def push_concurrency(settings: Settings) -> int:
    """Push-triggered runs at once per process: many tasks may be notified together."""
    return max(settings.worker_concurrency, 32)


@dataclass(slots=True)
class _PushDemand:
    """News for a task not yet covered by a run that started after it: when each was noticed."""

    again: bool = False
    noticed: list[float] = field(default_factory=list)


class Runner:
    def __init__(self, *, db: Database, secret_box: SecretBox, settings: Settings, worker_id: str | None = None):
        self.db = db
        self.secret_box = secret_box
        self.settings = settings
        self.worker_id = worker_id or worker_identity()
        self.stop = asyncio.Event()
        self.keep_full = False  # the scheduler's runner: a slot that frees is refilled at once
        self._running: dict[int, asyncio.Future[RunResult]] = {}
        self._progress: dict[int, RunProgress] = {}  # full runs in progress here: messages stored so far
        self._dispatching = asyncio.Lock()
        self._refills: set[asyncio.Task[int]] = set()
        self._random = random.Random()  # noqa: S311  (jitter, not secrets)
        self._push: dict[int, _PushDemand] = {}
        self._push_loops: dict[int, asyncio.Task[None]] = {}
        self._push_slots = asyncio.Semaphore(push_concurrency(settings))
        turns = writers_turns(db)
        self.group_commit = GroupCommit(db, turns=turns)  # the fast paths' batches, many tasks per transaction
        self.group_claim = GroupClaim(
            db, owner=self._owner, push_owner=self.worker_id, seconds=lambda: self.settings.lease_seconds, turns=turns
        )
        self._fast_slots = asyncio.Semaphore(FAST_PATHS)  # they open no connection; their writes are grouped
        self._claims = itertools.count(1)

    def _owner(self) -> str:
        """A lease owner for one claim: this process's identity and a claim number. Two claims of
        one task in this process (a fast path that outlived its lease and the dispatcher's claim
        after it) never pass each other's renewals, so only the newer holder can commit."""
        return f"{self.worker_id}#{next(self._claims)}"

    @property
    def running(self) -> int:
        return len(self._running)

    def stored_so_far(self, task_id: int) -> int | None:
        """Messages the task's run in progress in this process has stored so far; None when no
        run of it goes on here (a run in another process is not seen: it holds only the lease)."""
        progress = self._progress.get(task_id)
        return progress.stored if progress is not None else None

    async def run_now(self, task_id: int, *, user_id: int | None = None) -> RunResult:
        """Retrieve Messages Now: run at once, or report the run already in progress."""
        await check_runnable(db=self.db, task_id=task_id, user_id=user_id)
        current = self._running.get(task_id)
        if current is not None:
            return replace(await asyncio.shield(current), already_running=True)
        lease = await claim(self.db, task_id, self._owner(), seconds=self.settings.lease_seconds)
        if lease is None:
            return RunResult(already_running=True)
        return await self._start(lease)

    async def dispatch_due(self) -> int:
        """Claim due automatic tasks for the free slots and start them; returns how many started."""
        async with self._dispatching:  # the timer and refills never claim the same slot twice
            free = 0 if self.stop.is_set() else self.settings.worker_concurrency - len(self._running)
            leases = await claim_due(self.db, self._owner(), seconds=self.settings.lease_seconds, limit=free)
            started = 0
            for lease in leases:
                if lease.task_id in self._running:  # its run here lost the lease (it stops): it runs later
                    await give_back(self.db, lease)
                    continue
                self._start_in_background(lease)
                started += 1
        if not leases:  # idle or full: say how many wait (while claiming, the round is still going)
            metrics.DUE_TASKS.set(await due_count(self.db))
        return started

    def _refill(self) -> None:
        """A run ended: with `keep_full`, claim the next due task now rather than at the next tick,
        so a round of many due tasks runs back to back (1,000 idle tasks well inside the interval)."""
        if not self.keep_full or self.stop.is_set():
            return
        refill = asyncio.create_task(self.dispatch_due(), name="retrieval-refill")
        self._refills.add(refill)
        refill.add_done_callback(self._refilled)

    def _refilled(self, refill: asyncio.Task[int]) -> None:
        self._refills.discard(refill)
        if not refill.cancelled() and refill.exception() is not None:
            log.warning("claiming due tasks failed; the next tick tries again", exc_info=refill.exception())

    async def drain(self) -> int:
        """One round: run every due automatic task, keeping the concurrency full, until none is
        due and none running (`tributary worker --once`). Returns how many runs it started."""
        started = 0
        while not self.stop.is_set():
            started += await self.dispatch_due()
            if not self._running:
                break
            await asyncio.wait(list(self._running.values()), return_when=asyncio.FIRST_COMPLETED)
        return started

    def _start_in_background(self, lease: Lease) -> None:
        task = asyncio.create_task(self._run(lease), name=f"retrieval-{lease.task_id}")
        self._running[lease.task_id] = task

    async def _start(self, lease: Lease) -> RunResult:
        self._start_in_background(lease)
        return await asyncio.shield(self._running[lease.task_id])

    async def _run(self, lease: Lease) -> RunResult:
        metrics.RUNNING.inc()
        heartbeat = asyncio.create_task(self._heartbeat(lease))
        progress = self._progress[lease.task_id] = RunProgress()
        try:
            result = await run_leased(
                db=self.db,
                secret_box=self.secret_box,
                settings=self.settings,
                lease=lease,
                stop=self.stop,
                spread=self._random.random(),
                progress=progress,
            )
            log.info(
                "task %d run by %s: %d imported, %d errors",
                lease.task_id,
                self.worker_id,
                result.imported,
                len(result.errors),
            )
            return result
        except Exception:
            # A bug or a database outage: give the task back for a later try, never loop on it.
            log.exception("retrieval run of task %d failed", lease.task_id)
            later = utcnow() + timedelta(seconds=self.settings.retrieval_interval)
            try:
                await release(self.db, lease, next_run_at=later)
            except Exception:
                log.exception("could not release the lease of task %d; it will expire", lease.task_id)
            return RunResult(errors=["The run failed unexpectedly; it will be retried."])
        finally:
            heartbeat.cancel()
            metrics.RUNNING.dec()
            self._running.pop(lease.task_id, None)
            if self._progress.get(lease.task_id) is progress:
                del self._progress[lease.task_id]
            self._refill()

    async def _heartbeat(self, lease: Lease) -> None:
        """Renew the lease while the run lasts (batch commits renew it too)."""
        while True:
            await asyncio.sleep(lease.seconds / 3)
            try:
                await renew(self.db, lease)
            except LeaseLost:
                return  # the run's next commit will fail the same way and stop it
            except Exception:
                log.warning("could not renew the lease of task %d", lease.task_id, exc_info=True)

    def request_push_run(self, task_id: int, *, noticed: float | None = None) -> None:
        """The server announced new mail for this task (at `noticed`, time.monotonic()): make sure a
        run starts after now. Returns at once; runs coalesce (see the module's docstring)."""
        if self.stop.is_set():
            return
        demand = self._push.setdefault(task_id, _PushDemand())
        demand.again = True
        demand.noticed.append(time.monotonic() if noticed is None else noticed)
        if task_id not in self._push_loops:
            self._push_loops[task_id] = asyncio.create_task(self._push_runs(task_id), name=f"push-run-{task_id}")

    async def push_fetch(self, task_id: int, connection: FetchingConnection, *, noticed: float) -> None:
        """News for INBOX only, heard on `connection`, which the caller (the task's push watcher)
        does not use until this returns: the fast path (push_fetch.py) under the ordinary run
        lease, or, when it declines, the ordinary run under the same lease, started here and
        not waited for. A run of the task in progress, or pending push runs, or a lease held
        elsewhere: the ordinary `request_push_run`, which coalesces."""
        if self.stop.is_set():
            return
        if task_id in self._running or task_id in self._push_loops:
            self.request_push_run(task_id, noticed=noticed)
            return
        async with self._fast_slots:
            try:  # with the claims of other fast paths, in one transaction (push_claim.py)
                claimed = await self.group_claim.claim(task_id)
            except NoLongerPushing:  # the claim was undone; the supervisor closes the connection
                return
            if claimed is None:
                self.request_push_run(task_id, noticed=noticed)
                return
            lease, pushed = claimed
            shared: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
            self._running[task_id] = shared  # "Retrieve Messages Now" meanwhile shares this run
            metrics.RUNNING.inc()
            heartbeat = asyncio.create_task(self._heartbeat(lease))  # a large batch may outlast the lease
            try:
                result = await self._fast(lease, connection, pushed)
            except BaseException:  # cancelled (the watcher stops): give the task back as it was
                shared.set_result(RunResult(interrupted=True))
                with contextlib.suppress(Exception):
                    await asyncio.shield(give_back(self.db, lease))
                raise
            finally:
                heartbeat.cancel()
                metrics.RUNNING.dec()
                if self._running.get(task_id) is shared:
                    del self._running[task_id]
            if result is None:  # the ordinary run, under the lease already held
                self._start_in_background(lease)
                self._running[task_id].add_done_callback(lambda run: _settle(shared, run, noticed))
                return
        shared.set_result(result)
        metrics.PUSH_STORE_SECONDS.observe(max(0.0, time.monotonic() - noticed))

    async def _fast(self, lease: Lease, connection: FetchingConnection, pushed: Pushed) -> RunResult | None:
        """fetch_pushed; None (the full run follows) when it declines or the connection fails."""
        try:
            return await fetch_pushed(
                db=self.db,
                settings=self.settings,
                lease=lease,
                connection=connection,
                stop=self.stop,
                spread=self._random.random(),
                pushed=pushed,
                committer=self.group_commit,
            )
        except NoLongerPushing:
            await give_back(self.db, lease)
            return RunResult(already_running=True)
        except LeaseLost:  # ours expired mid-way: its new holder's run may predate the news
            self.request_push_run(lease.task_id)
            return RunResult(already_running=True)
        except TributaryError as exc:  # the connection failed (its watcher reconnects): run in full
            log.info("push fast path of task %d: %s; running in full", lease.task_id, exc.message)
            return None
        except Exception:
            log.exception("push fast path of task %d failed; running in full", lease.task_id)
            return None

    @property
    def push_pending(self) -> int:
        """Tasks with a push run waiting or running."""
        return len(self._push_loops)

    async def _push_runs(self, task_id: int) -> None:
        demand = self._push[task_id]
        try:
            while demand.again and not self.stop.is_set():
                noticed = await self._push_run(task_id, demand)
                finished = time.monotonic()
                for at in noticed:
                    metrics.PUSH_STORE_SECONDS.observe(max(0.0, finished - at))
        except Exception:
            log.exception("the push-triggered run of task %d failed", task_id)
        finally:  # no await between the loop's last check and here: no news can slip in unseen
            self._push.pop(task_id, None)
            self._push_loops.pop(task_id, None)

    async def _push_run(self, task_id: int, demand: _PushDemand) -> list[float]:
        """One run of the task that starts after now; returns when the news it covers was noticed
        (nothing when the task no longer pushes or we stop). The run's lease is claimed before it
        looks at any folder, so every announcement noticed until the claim is covered by it; only
        those noticed later ask for another run."""
        retry = PUSH_CLAIM_RETRY_SECONDS  # while another process holds the lease (a long run)
        while not self.stop.is_set():
            current = self._running.get(task_id)
            if current is not None:  # started before the news: run again once it ends
                await asyncio.wait([current])
                continue
            async with self._push_slots:
                if not await push_eligible(self.db, task_id):
                    demand.again = False
                    return []
                lease = await claim(self.db, task_id, self._owner(), seconds=self.settings.lease_seconds)
                if lease is not None:
                    covered, demand.noticed, demand.again = demand.noticed, [], False
                    await self._start(lease)
                    return covered
            with contextlib.suppress(TimeoutError):  # another process runs it: try again, less and less often
                await asyncio.wait_for(self.stop.wait(), retry)
            retry = min(retry * 2, PUSH_CLAIM_RETRY_MAX_SECONDS)
        return []

    async def shutdown(self) -> None:
        """Ask running runs to stop after their current batch and wait for them (up to SHUTDOWN_WAIT_SECONDS)."""
        self.stop.set()
        for refill in list(self._refills):
            refill.cancel()
        for waiting in list(self._push_loops.values()):
            waiting.cancel()  # a run it started goes on in _running (shielded) and is waited for below
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=SHUTDOWN_WAIT_SECONDS)


def _settle(shared: asyncio.Future[RunResult], run: asyncio.Future[RunResult], noticed: float) -> None:
    """The full run that followed a declined fast path ended: its result is the shared one."""
    if shared.done():
        return
    if run.cancelled() or run.exception() is not None:
        shared.set_result(RunResult(interrupted=True))
        return
    shared.set_result(run.result())
    metrics.PUSH_STORE_SECONDS.observe(max(0.0, time.monotonic() - noticed))


async def run_task(
    *, db: Database, secret_box: SecretBox, settings: Settings, task_id: int, user_id: int | None = None
) -> RunResult:
    """Retrieve Messages Now from a process with no runner of its own (the CLI)."""
    runner = Runner(db=db, secret_box=secret_box, settings=settings)
    return await runner.run_now(task_id, user_id=user_id)
