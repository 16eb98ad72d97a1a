"""The per-user log: recording events (inside the caller's transaction) and pruning old ones."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, delete
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain.values import LogLevel, LogSource
from service.persistence.database import Database
from service.persistence.tables import LogEntry
from service.persistence.types import utcnow


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
