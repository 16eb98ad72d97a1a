"""The per-user event and protocol log shown on Settings, Logs."""

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from service.domain.values import LogLevel, LogSource
from service.persistence.tables.columns import enum_type
from service.persistence.types import UtcDateTime, utcnow


class LogEntry(SQLModel, table=True):
    """One event. `user_id` is None for system events; the account columns say which account."""

    __tablename__ = "log_entry"
    __table_args__ = (Index("ix_log_entry_user_time", "user_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int | None = Field(default=None, foreign_key="user.id", ondelete="CASCADE")
    source: LogSource = Field(sa_type=enum_type(LogSource))
    level: LogLevel = Field(sa_type=enum_type(LogLevel))
    smtp_account_id: int | None = Field(default=None, foreign_key="smtp_account.id", ondelete="SET NULL")
    retrieval_task_id: int | None = Field(default=None, foreign_key="retrieval_task.id", ondelete="SET NULL")
    text: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, index=True)
