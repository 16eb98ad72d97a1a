"""`tributary backup DIR` while retrieval runs, and `tributary restore DIR` into an empty data directory:
every message reads back byte for byte through the app's read path, and the stored passwords
still open with the restored key file (a retrieval run after the restore signs in and finishes
the mailbox exactly once). On PostgreSQL the backup is the key file and the manifest (the
database is pg_dump's job)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Message
from service.usecases.backup import BackupReport, backup
from service.usecases.reading import export_raw
from service.usecases.retrieval import run_task
from tests.cli_runner import tributary
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.mail_samples import EIGHT_BIT, MALFORMED, sample
from tests.retrieval_env import Env, eventually, make_env

LARGE = b"Subject: large\r\n\r\n" + b"0123456789abcdef\r\n" * (200 * 1024)


@pytest.fixture
async def env(db: Database, settings: Settings, dovecot: DovecotServer, mail_user: MailUser) -> Env:
    """A retrieval user whose keys come from the key file in the data directory (as by default)."""
    with_key_file = settings.model_copy(update={"secret_key": None})
    box = SecretBox.from_settings(with_key_file)  # creates data_dir/secret.key
    return await make_env(db, with_key_file, box, dovecot, mail_user)


def _fill(env: Env) -> list[bytes]:
    delivered = [sample(f"inbox {n}") for n in range(10)] + [EIGHT_BIT, MALFORMED, LARGE]
    for raw in delivered:
        env.dovecot.deliver(env.mailbox.email, raw)
    for n in range(6):
        raw = sample(f"archived {n}")
        env.dovecot.deliver(env.mailbox.email, raw, folder="Archiv/2024")
        delivered.append(raw)
    return delivered


async def _count(db: Database) -> int:
    async with db.read() as session:
        return int((await session.exec(select(func.count(Message.id)))).one())  # type: ignore[arg-type]


async def _every_message(db: Database, user_id: int) -> list[bytes]:
    """Each stored message's bytes, read as the app reads them (reading.export_raw)."""
    async with db.read() as session:
        ids = (await session.exec(select(Message.id).where(Message.user_id == user_id))).all()
    return [await export_raw(db=db, user_id=user_id, message_id=i) for i in ids if i is not None]


def _backup_in_first_write_after_a_batch(
    env: Env, monkeypatch: pytest.MonkeyPatch, target: Path
) -> dict[str, int | BackupReport]:
    """Make the run's first write transaction after a committed batch take the backup while it holds
    the database's write lock (SQLite: BEGIN IMMEDIATE), half-way through the run."""
    original = env.db.write
    taken: dict[str, int | BackupReport] = {}

    @asynccontextmanager
    async def write() -> AsyncIterator[AsyncSession]:
        async with original() as session:
            if not taken and (committed := await _count(env.db)) > 0:
                await session.exec(select(1))  # the transaction begins: lock held
                taken["committed"] = committed
                taken["report"] = await asyncio.to_thread(backup, settings=env.settings, directory=target)
            yield session

    monkeypatch.setattr(env.db, "write", write)
    return taken


async def test_a_backup_taken_during_retrieval_restores_every_message_and_the_passwords(
    env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    delivered = _fill(env)
    task_id = await env.add_task()
    target = tmp_path / "backup"
    taken = _backup_in_first_write_after_a_batch(env, monkeypatch, target)

    result = await env.run(task_id, env.settings.model_copy(update={"retrieval_batch_messages": 4, "lease_seconds": 2}))

    assert (result.errors, result.imported) == ([], len(delivered))
    monkeypatch.undo()
    committed = taken["committed"]
    assert isinstance(committed, int)
    assert 0 < committed < len(delivered)  # the backup was taken mid-run
    restored = env.settings.model_copy(update={"data_dir": tmp_path / "restored"})
    outcome = tributary(restored, "restore", str(target), "--json")
    assert outcome.returncode == 0, outcome.stderr
    key = (restored.data_dir / "secret.key").read_bytes()
    assert key == (env.settings.data_dir / "secret.key").read_bytes()
    assert stat.S_IMODE((restored.data_dir / "secret.key").stat().st_mode) == 0o600
    restored_db = Database(restored)
    try:
        if restored.is_sqlite:
            snapshot = await _every_message(restored_db, env.user_id)
            assert len(snapshot) == committed
            assert set(snapshot) <= set(delivered)  # whole batches, byte for byte
        else:
            assert json.loads(outcome.stdout)["database"] == "postgresql"
        # The restored key file opens the stored password: the run signs in and completes the mailbox,
        # once the lease of the run caught in the backup (held by no process now) has expired.
        box = SecretBox.from_settings(restored)
        runs = []

        async def ran() -> bool:
            runs.append(await run_task(db=restored_db, secret_box=box, settings=restored, task_id=task_id))
            return not runs[-1].already_running

        await eventually(ran, within=30, what="the lease held in the backup expires")
        assert runs[-1].errors == []
        every = await _every_message(restored_db, env.user_id)
        assert Counter(hashlib.sha256(r).hexdigest() for r in every) == Counter(
            hashlib.sha256(r).hexdigest() for r in delivered
        )
    finally:
        await restored_db.dispose()
