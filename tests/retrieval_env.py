"""A Tributary user with retrieval tasks for a mailbox on the Dovecot fixture, and ways to look
at what retrieval stored: shared by the IMAP and POP3 retrieval tests, and `eventually` for
waiting on what other processes do."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlmodel import col, select

from service.config import Settings
from service.domain.retrieval import RunResult
from service.domain.values import LogLevel, Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Folder, LogEntry, Message
from service.usecases import retrieval_tasks
from service.usecases.retrieval import run_task
from service.usecases.users import add_user
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.stored_bodies import stored_raws


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    """Wait until `check` holds (asked every 0.2 s), failing with `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {within} s: {what}")


@dataclass
class Env:
    """A Tributary user with a retrieval task for a Dovecot mailbox."""

    db: Database
    settings: Settings
    secret_box: SecretBox
    dovecot: DovecotServer
    mailbox: MailUser
    user_id: int

    async def add_task(self, protocol: Protocol = Protocol.IMAP, **changes: Any) -> int:
        new = retrieval_tasks.NewTask(
            protocol=protocol,
            host="127.0.0.1",
            port=self.dovecot.imaps_port if protocol is Protocol.IMAP else self.dovecot.pop3s_port,
            security=Security.SSL,
            username=self.mailbox.email,
            password=self.mailbox.password,
            name="Remote",
            timeout_seconds=10,
        )
        task = await retrieval_tasks.add_task(
            db=self.db, secret_box=self.secret_box, user_id=self.user_id, new=replace(new, **changes)
        )
        return task.id

    async def run(self, task_id: int, settings: Settings | None = None) -> RunResult:
        return await run_task(
            db=self.db, secret_box=self.secret_box, settings=settings or self.settings, task_id=task_id
        )

    async def local_counts(self) -> dict[str, int]:
        async with self.db.read() as session:
            rows = (
                await session.exec(select(Folder.path, Message.id).join(Message, col(Message.folder_id) == Folder.id))
            ).all()
        return dict(Counter(path for path, _ in rows))

    async def local_hashes(self) -> Counter[str]:
        async with self.db.read() as session:
            raws = await stored_raws(session)
        return Counter(hashlib.sha256(raw).hexdigest() for raw in raws)

    async def logs(self, level: LogLevel | None = None) -> list[str]:
        async with self.db.read() as session:
            query = select(LogEntry).order_by(col(LogEntry.id))
            entries = (await session.exec(query)).all()
        return [e.text for e in entries if level is None or e.level is level]


async def make_env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mailbox: MailUser
) -> Env:
    """A local user "reader@example.test" whose settings trust the fixture's certificate."""
    user = await add_user(db=db, email="reader@example.test", password="long enough")
    trusting = settings.model_copy(update={"extra_ca_file": dovecot.cert_pem_path})
    return Env(db, trusting, secret_box, dovecot, mailbox, user.id)
