"""Who runs retrieval tasks in a process: the scheduler's dispatcher and "Retrieve Messages Now".

`Runner` claims due automatic tasks up to its concurrency (the rest wait in the
database for any worker), runs them as asyncio tasks whose protocol work happens
in threads, and shares a run in progress: asking for a task this process is
already running waits for that run and returns its result, marked
`already_running`. A task leased by another process answers `already_running`
at once. At shutdown the runs are told to stop after their current batch, and
they release their leases on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace
from datetime import timedelta

from service import metrics
from service.config import Settings
from service.domain.retrieval import RunResult
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.types import utcnow
from service.usecases.retrieval.lease import (
    Lease,
    LeaseLost,
    claim,
    claim_due,
    due_count,
    release,
    renew,
    worker_identity,
)
from service.usecases.retrieval.run import check_runnable, run_leased

log = logging.getLogger(__name__)

SHUTDOWN_WAIT_SECONDS = 30.0


class Runner:
    def __init__(self, *, db: Database, secret_box: SecretBox, settings: Settings, worker_id: str | None = None):
        self.db = db
        self.secret_box = secret_box
        self.settings = settings
        self.worker_id = worker_id or worker_identity()
        self.stop = asyncio.Event()
        self.keep_full = False  # the scheduler's runner: a slot that frees is refilled at once
        self._running: dict[int, asyncio.Task[RunResult]] = {}
        self._dispatching = asyncio.Lock()
        self._refills: set[asyncio.Task[int]] = set()
        self._random = random.Random()  # noqa: S311  (jitter, not secrets)

    @property
    def running(self) -> int:
        return len(self._running)

    async def run_now(self, task_id: int, *, user_id: int | None = None) -> RunResult:
        """Retrieve Messages Now: run at once, or report the run already in progress."""
        await check_runnable(db=self.db, task_id=task_id, user_id=user_id)
        current = self._running.get(task_id)
        if current is not None:
            return replace(await asyncio.shield(current), already_running=True)
        lease = await claim(self.db, task_id, self.worker_id, seconds=self.settings.lease_seconds)
        if lease is None:
            return RunResult(already_running=True)
        return await self._start(lease)

    async def dispatch_due(self) -> int:
        """Claim due automatic tasks for the free slots and start them; returns how many started."""
        async with self._dispatching:  # the timer and refills never claim the same slot twice
            free = 0 if self.stop.is_set() else self.settings.worker_concurrency - len(self._running)
            leases = await claim_due(self.db, self.worker_id, seconds=self.settings.lease_seconds, limit=free)
            for lease in leases:
                self._start_in_background(lease)
        if not leases:  # idle or full: say how many wait (while claiming, the round is still going)
            metrics.DUE_TASKS.set(await due_count(self.db))
        return len(leases)

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
        try:
            result = await run_leased(
                db=self.db,
                secret_box=self.secret_box,
                settings=self.settings,
                lease=lease,
                stop=self.stop,
                spread=self._random.random(),
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

    async def shutdown(self) -> None:
        """Ask running runs to stop after their current batch and wait for them (up to SHUTDOWN_WAIT_SECONDS)."""
        self.stop.set()
        for refill in list(self._refills):
            refill.cancel()
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=SHUTDOWN_WAIT_SECONDS)


async def run_task(
    *, db: Database, secret_box: SecretBox, settings: Settings, task_id: int, user_id: int | None = None
) -> RunResult:
    """Retrieve Messages Now from a process with no runner of its own (the CLI)."""
    runner = Runner(db=db, secret_box=secret_box, settings=settings)
    return await runner.run_now(task_id, user_id=user_id)
