"""APScheduler 3 wiring for `tributary serve` and `tributary worker`.

One AsyncIOScheduler per process, started inside the running event loop, with
coroutine jobs on its default executor (replacing that executor silently stops
coroutine jobs). Jobs:

- dispatch: every few seconds, claim due automatic retrieval tasks for this
  process's free slots (the Runner, which also refills a slot the moment a run
  ends; leases keep several processes apart);
- outbox: send queued messages whose retry time has come;
- search_index: index the messages bulk retrieval queued for the full-text index
  (service.persistence.search_backlog), a batch per transaction until none wait;
- housekeeping: prune old log entries; compact body segments (service.persistence.bodies.compaction).

Beside the jobs, the push supervisor (usecases/retrieval/push.py) holds this
process's IMAP push connections and hands announcements to the same Runner. It
starts with the jobs (not in `run_once`) and stops first at shutdown. Push runs
do their protocol work in threads (asyncio.to_thread), many at once when many
tasks are notified together, so the loop's default executor gets a thread per
run that may be under way (at least PUSH_THREADS) instead of asyncio's
min(32, CPUs + 4); a push run that waits for a thread waits for nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from service.config import Settings
from service.persistence import search_backlog
from service.persistence.bodies import compaction
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import logs, sending
from service.usecases.retrieval import Runner
from service.usecases.retrieval.push import PushSupervisor
from service.usecases.retrieval.runner import push_concurrency

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_SECONDS = 3600
OUTBOX_INTERVAL_SECONDS = 30
SEARCH_INDEX_INTERVAL_SECONDS = 2
PUSH_THREADS = 64


def dispatch_interval(settings: Settings) -> float:
    """How often to look for due tasks: often enough to keep jitter meaningful, at most every 15 s."""
    return max(1.0, min(15.0, settings.retrieval_interval / 20))


_WIDENED: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _widen_default_executor(runs: int) -> None:
    """Give the running loop a default executor with a thread for each run that may be in its
    protocol work at once (at least PUSH_THREADS), once per loop."""
    loop = asyncio.get_running_loop()
    if loop not in _WIDENED:
        loop.set_default_executor(
            ThreadPoolExecutor(max_workers=max(PUSH_THREADS, runs), thread_name_prefix="tributary")
        )
        _WIDENED.add(loop)


class Scheduler:
    """The background jobs of one process, and the Runner that "Retrieve Messages Now" shares."""

    def __init__(self, *, settings: Settings, db: Database, secret_box: SecretBox) -> None:
        self._settings = settings
        self._db = db
        self._secret_box = secret_box
        self.runner = Runner(db=db, secret_box=secret_box, settings=settings)
        self.runner.keep_full = True
        self.push = PushSupervisor(db=db, secret_box=secret_box, settings=settings, runner=self.runner)
        self._scheduler = AsyncIOScheduler(timezone=UTC)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self) -> None:
        """Start the jobs; call from inside the running event loop."""
        jobs: list[tuple[Callable[[], Awaitable[object]], float, str]] = [
            (self.dispatch, dispatch_interval(self._settings), "dispatch"),
            (self.outbox, OUTBOX_INTERVAL_SECONDS, "outbox"),
            (self.housekeeping, HOUSEKEEPING_INTERVAL_SECONDS, "housekeeping"),
            (self.search_index, SEARCH_INDEX_INTERVAL_SECONDS, "search_index"),
        ]
        for job, seconds, name in jobs:
            self._scheduler.add_job(
                job, "interval", seconds=seconds, id=name, coalesce=True, max_instances=1, misfire_grace_time=None
            )
        self._scheduler.start()
        if self._settings.push_connections > 0:
            _widen_default_executor(push_concurrency(self._settings) + self._settings.worker_concurrency)
            self.push.start()

    async def dispatch(self) -> int:
        try:
            return await self.runner.dispatch_due()
        except Exception:  # a database hiccup must not kill the job; the next tick tries again
            log.exception("dispatching due retrieval tasks failed")
            return 0

    async def outbox(self) -> None:
        """Send queued messages whose retry time has come (sending.process_due_outbox)."""
        try:
            await sending.process_due_outbox(db=self._db, secret_box=self._secret_box, settings=self._settings)
        except Exception:
            log.exception("processing the outbox failed")

    async def search_index(self) -> int:
        """Index what retrieval queued for search; the number of messages indexed."""
        try:
            return await search_backlog.drain(self._db)
        except Exception:  # the next tick tries again; a search indexes its own queue meanwhile
            log.exception("indexing messages for search failed")
            return 0

    async def run_once(self) -> int:
        """Every due retrieval task, then the outbox and the search index, once, without the timers;
        returns the runs started."""
        started = await self.runner.drain()
        await self.outbox()
        await self.search_index()
        return started

    async def housekeeping(self) -> None:
        removed = await logs.prune_logs(db=self._db, retention_days=self._settings.log_retention_days)
        if removed:
            log.info("housekeeping pruned %d log entries", removed)
        compacted = await compaction.compact(self._db)  # None: a backup holds the segments
        if compacted is not None and compacted.removed:
            log.info("housekeeping compacted %d body segments, freeing %d bytes", compacted.compacted, compacted.freed)

    async def shutdown(self) -> None:
        """Stop taking work, let running runs finish their current batch and release their leases."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        await self.push.shutdown()
        await self.runner.shutdown()
