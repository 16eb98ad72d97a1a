"""Reading the log back (Settings, Logs): one user's entries only, newest first, filters that
combine, keyset paging, and the account each entry is about."""

from __future__ import annotations

import dataclasses

import pytest

from service.domain.values import LogLevel, LogSource, Protocol
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import SmtpAccount
from service.usecases import retrieval_tasks
from service.usecases.logs import LogView, list_logs, record
from service.usecases.users import add_user


async def _setup(db: Database, secret_box: SecretBox) -> tuple[int, int, int, int]:
    """Two users; the first has a retrieval task and an SMTP account. Returns (me, other, task, smtp)."""
    me = (await add_user(db=db, email="me@example.test", password="long enough")).id
    other = (await add_user(db=db, email="other@example.test", password="long enough")).id
    new = retrieval_tasks.NewTask(protocol=Protocol.POP3, host="pop.example.test", username="me", password="pw")
    task = (await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=me, new=new)).id
    async with db.write() as session:
        account = SmtpAccount(user_id=me, email_address="me@example.test", host="smtp.example.test", port=587)
        session.add(account)
        await session.flush()
        assert account.id is not None
        smtp = account.id
        for source, level, text, user_id, task_id, smtp_id in [
            (LogSource.POP3_AUTH, LogLevel.ERROR, "pop rejected", me, task, None),
            (LogSource.INCOMING, LogLevel.INFO, "pop imported 2", me, task, None),
            (LogSource.OUTGOING, LogLevel.INFO, "sent one", me, None, smtp),
            (LogSource.SMTP_AUTH, LogLevel.ERROR, "smtp rejected", me, None, smtp),
            (LogSource.INCOMING, LogLevel.DEBUG, "transcript", me, task, None),
            (LogSource.SCHEDULER, LogLevel.WARNING, "not mine", other, None, None),
            (LogSource.SCHEDULER, LogLevel.WARNING, "system", None, None, None),
        ]:
            record(
                session,
                source=source,
                level=level,
                text=text,
                user_id=user_id,
                retrieval_task_id=task_id,
                smtp_account_id=smtp_id,
            )
    return me, other, task, smtp


def _texts(entries: list[LogView]) -> list[str]:
    return [entry.text for entry in entries]


async def test_only_the_users_entries_newest_first_with_their_account(db: Database, secret_box: SecretBox) -> None:
    me, other, task, smtp = await _setup(db, secret_box)
    mine = await list_logs(db=db, user_id=me)
    assert _texts(mine) == ["transcript", "smtp rejected", "sent one", "pop imported 2", "pop rejected"]
    assert [e.account for e in mine] == [
        "me on pop.example.test",
        "me@example.test",
        "me@example.test",
        "me on pop.example.test",
        "me on pop.example.test",
    ]
    first = mine[0]
    assert (first.source, first.level, first.retrieval_task_id, first.smtp_account_id) == (
        LogSource.INCOMING,
        LogLevel.DEBUG,
        task,
        None,
    )
    assert first.created_at.tzinfo is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.text = "changed"  # type: ignore[misc]
    assert _texts(await list_logs(db=db, user_id=other)) == ["not mine"]
    # Asking for another user's account never reaches their entries.
    assert await list_logs(db=db, user_id=other, retrieval_task_id=task) == []
    assert await list_logs(db=db, user_id=other, smtp_account_id=smtp) == []


async def test_filters_combine(db: Database, secret_box: SecretBox) -> None:
    me, _other, task, smtp = await _setup(db, secret_box)
    assert _texts(await list_logs(db=db, user_id=me, level=LogLevel.ERROR)) == ["smtp rejected", "pop rejected"]
    assert _texts(await list_logs(db=db, user_id=me, source=LogSource.INCOMING)) == ["transcript", "pop imported 2"]
    assert _texts(await list_logs(db=db, user_id=me, smtp_account_id=smtp)) == ["smtp rejected", "sent one"]
    assert _texts(await list_logs(db=db, user_id=me, retrieval_task_id=task, level=LogLevel.INFO)) == ["pop imported 2"]
    assert await list_logs(db=db, user_id=me, source=LogSource.SCHEDULER) == []


async def test_keyset_pages_cover_everything_once(db: Database, secret_box: SecretBox) -> None:
    me, *_ = await _setup(db, secret_box)
    async with db.write() as session:
        for n in range(23):
            record(session, source=LogSource.SCHEDULER, level=LogLevel.INFO, text=f"tick {n}", user_id=me)
    seen: list[str] = []
    before: int | None = None
    pages = 0
    while True:
        page = await list_logs(db=db, user_id=me, source=LogSource.SCHEDULER, limit=10, before_id=before)
        if not page:
            break
        pages += 1
        seen += _texts(page)
        before = page[-1].id
    assert pages == 3
    assert seen == [f"tick {n}" for n in range(22, -1, -1)]
    assert len(await list_logs(db=db, user_id=me, limit=0)) == 1  # at least one entry per page
