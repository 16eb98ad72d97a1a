"""`tributary worker`: the scheduler without the web face.

Scale out by starting several workers (and `serve` processes) against one
PostgreSQL: run leases in the database keep every task to one run at a time.
`--once` runs one round (every due task, then the outbox) and exits, for cron
or a benchmark. SIGTERM or Ctrl-C stops taking work, lets running runs commit their current
batch and release their leases, then exits. A worker killed outright (SIGKILL,
out of memory) leaves its leases behind: another process on the same machine
sees that their holder is gone and takes them at once; elsewhere they expire
after TRIBUTARY_LEASE_SECONDS.

Each worker (and `serve`) also holds up to TRIBUTARY_PUSH_CONNECTIONS IMAP push
connections (0: none here), spread over the processes by push leases; a
stopping worker closes them and hands them over, and a killed one's are taken
over after TRIBUTARY_PUSH_LEASE_SECONDS. `--once` holds none.

Logs go to stderr as TRIBUTARY_LOG_FORMAT and TRIBUTARY_LOG_LEVEL say. With
TRIBUTARY_METRICS_PORT set, the worker serves its Prometheus metrics at
http://TRIBUTARY_METRICS_ADDRESS:PORT/metrics (127.0.0.1 by default) while it
runs; each worker on a machine needs a port of its own.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import click

from service.cli import cli
from service.cli.common import plain_errors, ready_or_refuse
from service.config import Settings
from service.observability import configure_logging, start_metrics_server
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.scheduler import Scheduler

log = logging.getLogger(__name__)


@cli.command()
@click.option("--once", is_flag=True, help="Run every due retrieval task and the outbox once, then exit.")
@plain_errors
def worker(once: bool) -> None:
    """Run automatic retrieval, outbox retries and housekeeping until stopped (no web pages)."""
    settings = Settings()
    ready_or_refuse(settings)  # an unmigrated or unreachable database: one sentence, exit 1 (as serve)
    configure_logging(settings)
    stop_metrics_server = start_metrics_server(settings)
    try:
        asyncio.run(_once(settings) if once else _work(settings))
    finally:
        if stop_metrics_server is not None:
            stop_metrics_server()


async def _once(settings: Settings) -> None:
    db = Database(settings)
    try:
        scheduler = Scheduler(settings=settings, db=db, secret_box=SecretBox.from_settings(settings))
        started = time.perf_counter()
        runs = await scheduler.run_once()
        log.info("one round: %d retrieval runs in %.2f s, outbox processed", runs, time.perf_counter() - started)
    finally:
        await db.dispose()


async def _work(settings: Settings) -> None:
    db = Database(settings)
    scheduler = Scheduler(settings=settings, db=db, secret_box=SecretBox.from_settings(settings))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    scheduler.start()
    log.info("worker %s started", scheduler.runner.worker_id)
    if settings.metrics_port is not None:
        log.info("metrics at http://%s:%d/metrics", settings.metrics_address, settings.metrics_port)
    try:
        await stopping.wait()
    finally:
        log.info("worker %s stopping", scheduler.runner.worker_id)
        await scheduler.shutdown()
        await db.dispose()
