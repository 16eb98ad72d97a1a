"""Sent copies made after the answer (issue 18): the APPEND never delays "Send".

Once SMTP has accepted a message, the user's send (compose page, API, CLI) answers at once; the
copy for the remote Sent folder is then attempted by a task of the same process
(`copy_in_background`), while the outbox round (scheduler) remains the copy's retry path. Both
go through sent_copy.attempt_sent_copy, whose claim (pending -> appending, the row locked) lets
only one of them append; a task cut short (the process stopping) leaves the copy "appending"
until it is stale, and the retry then looks for it by Message-ID before appending again.

The tasks are kept here (asyncio keeps only weak references to tasks), and
`wait_for_background_copies` lets a short-lived process (the CLI) or a test finish them.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from service.config import Settings
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases.sending.sent_copy import attempt_sent_copy

log = logging.getLogger(__name__)
_RUNNING: set[asyncio.Task[None]] = set()


async def _copy(db: Database, secret_box: SecretBox, settings: Settings, entry_id: int, now: datetime) -> None:
    try:  # the copy's own failures are recorded on the entry; this is for bugs
        await attempt_sent_copy(db=db, secret_box=secret_box, settings=settings, entry_id=entry_id, now=now)
    except Exception:
        log.exception("could not attempt the Sent copy of outbox entry %s", entry_id)


def copy_in_background(
    *, db: Database, secret_box: SecretBox, settings: Settings, entry_id: int, now: datetime
) -> None:
    """Attempt the entry's Sent copy in a task of the running loop, after the caller has answered."""
    task = asyncio.get_running_loop().create_task(
        _copy(db, secret_box, settings, entry_id, now), name=f"tributary-sent-copy-{entry_id}"
    )
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)


async def wait_for_background_copies() -> None:
    """Wait until the copies started in this loop are over (those started meanwhile too)."""
    loop = asyncio.get_running_loop()
    while mine := [task for task in _RUNNING if task.get_loop() is loop and not task.done()]:
        await asyncio.gather(*mine, return_exceptions=True)
