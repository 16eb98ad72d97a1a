"""The per-user log: recording events (inside the caller's transaction), reading them back
for Settings, Logs (filtered, newest first, a page at a time) and pruning old ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.values import LogLevel, LogSource
from service.persistence.database import Database
from service.persistence.tables import LogEntry, RetrievalTask, SmtpAccount
from service.persistence.types import utcnow

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class LogView:
    """One log entry as the Logs page shows it; `account` names the task or SMTP account, if any."""

    id: int
    created_at: datetime
    source: LogSource
    level: LogLevel
    text: str
    smtp_account_id: int | None
    retrieval_task_id: int | None
    account: str | None


def record(
    session: AsyncSession,
    *,
    source: LogSource,
    level: LogLevel,
    text: str,
    user_id: int | None = None,
    smtp_account_id: int | None = None,
    retrieval_task_id: int | None = None,
) -> None:
    """Add a log entry to the caller's transaction, so it commits (or not) with the work it describes."""
    session.add(
        LogEntry(
            user_id=user_id,
            source=source,
            level=level,
            text=text,
            smtp_account_id=smtp_account_id,
            retrieval_task_id=retrieval_task_id,
        )
    )


async def prune_logs(*, db: Database, retention_days: int) -> int:
    """Delete log entries older than the retention period; return how many went."""
    cutoff = utcnow() - timedelta(days=retention_days)
    async with db.write() as session:
        result = await session.exec(delete(LogEntry).where(col(LogEntry.created_at) < cutoff))
        return int(result.rowcount)


def _account_label(address: str | None, task: RetrievalTask | None) -> str | None:
    if address is not None:
        return address
    if task is not None:
        return task.name or f"{task.username} on {task.host}"
    return None


async def list_logs(
    *,
    db: Database,
    user_id: int,
    source: LogSource | None = None,
    level: LogLevel | None = None,
    smtp_account_id: int | None = None,
    retrieval_task_id: int | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[LogView]:
    """A user's log entries, newest first, at most `limit` (up to MAX_PAGE) of them.

    Filters combine with AND; `level` is that level exactly. Paging is by keyset: pass the
    last entry's id as `before_id` for the next, older page. Only this user's entries are
    ever returned, whatever account ids are asked for.
    """
    query = (
        select(LogEntry, SmtpAccount.email_address, RetrievalTask)
        .outerjoin(SmtpAccount, col(SmtpAccount.id) == col(LogEntry.smtp_account_id))
        .outerjoin(RetrievalTask, col(RetrievalTask.id) == col(LogEntry.retrieval_task_id))
        .where(col(LogEntry.user_id) == user_id)
        .order_by(col(LogEntry.id).desc())
        .limit(max(1, min(limit, MAX_PAGE)))
    )
    if source is not None:
        query = query.where(col(LogEntry.source) == source)
    if level is not None:
        query = query.where(col(LogEntry.level) == level)
    if smtp_account_id is not None:
        query = query.where(col(LogEntry.smtp_account_id) == smtp_account_id)
    if retrieval_task_id is not None:
        query = query.where(col(LogEntry.retrieval_task_id) == retrieval_task_id)
    if before_id is not None:
        query = query.where(col(LogEntry.id) < before_id)
    async with db.read() as session:
        rows = (await session.exec(query)).all()
    views = []
    for entry, address, task in rows:
        assert entry.id is not None
        views.append(
            LogView(
                id=entry.id,
                created_at=entry.created_at,
                source=entry.source,
                level=entry.level,
                text=entry.text,
                smtp_account_id=entry.smtp_account_id,
                retrieval_task_id=entry.retrieval_task_id,
                account=_account_label(address, task),
            )
        )
    return views
