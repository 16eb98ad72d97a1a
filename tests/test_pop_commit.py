"""commit_pop_batch: a POP3 batch, its UIDL keys and its notes in one transaction."""

from __future__ import annotations

from sqlmodel import col, select

from service.domain.retrieval import LocalTarget
from service.domain.values import Protocol
from service.persistence.database import Database
from service.persistence.mailstore import IncomingMessage
from service.persistence.tables import LogEntry, PopUidl
from service.usecases.retrieval.store import Owner, commit_pop_batch, known_uidls, resolve_folder
from service.usecases.users import add_user
from tests.mail_samples import sample
from tests.test_folders_manage import _task


async def test_a_run_that_ends_with_warnings_only_records_them(db: Database) -> None:
    # The end of a POP3 run commits its warnings without messages or keys (pop3_run).
    user_id = (await add_user(db=db, email="pop@example.test", password="long enough")).id
    task_id = await _task(db, user_id, name="pop", protocol=Protocol.POP3)
    owner = Owner(task_id=task_id, user_id=user_id)
    folder_id = await resolve_folder(db, user_id, LocalTarget(None, "INBOX"))
    stored = await commit_pop_batch(
        db, owner=owner, folder_id=folder_id, messages=[IncomingMessage(raw=sample("one"))], keys=["uidl-1"]
    )
    assert stored == 1
    assert (
        await commit_pop_batch(
            db, owner=owner, folder_id=folder_id, messages=[], keys=[], warnings=["message 7 was larger than allowed"]
        )
        == 0
    )
    assert set(await known_uidls(db, task_id)) == {"uidl-1"}
    async with db.read() as session:
        texts = (await session.exec(select(LogEntry.text).where(col(LogEntry.retrieval_task_id) == task_id))).all()
        keys = (await session.exec(select(PopUidl.uidl))).all()
    assert "message 7 was larger than allowed" in texts
    assert keys == ["uidl-1"]
