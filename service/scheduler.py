"""APScheduler 3 wiring for `tributary serve` and `tributary worker`.

One AsyncIOScheduler per process, started inside the running event loop. Jobs
are coroutines on the default executor (replacing it silently stops coroutine
jobs). Today it runs housekeeping; the retrieval dispatcher and outbox retries
join it with their issues.
"""

from __future__ import annotations

import logging
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from service.config import Settings
from service.persistence.database import Database
from service.usecases import logs

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_SECONDS = 3600


class Scheduler:
    """The background jobs of one process."""

    def __init__(self, *, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db
        self._scheduler = AsyncIOScheduler(timezone=UTC)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self) -> None:
        """Start the jobs; call from inside the running event loop."""
        self._scheduler.add_job(
            self.housekeeping,
            "interval",
            seconds=HOUSEKEEPING_INTERVAL_SECONDS,
            id="housekeeping",
            coalesce=True,
            max_instances=1,
        )
        self._scheduler.start()

    async def housekeeping(self) -> None:
        removed = await logs.prune_logs(db=self._db, retention_days=self._settings.log_retention_days)
        if removed:
            log.info("housekeeping pruned %d log entries", removed)

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
