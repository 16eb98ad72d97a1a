"""A user's content filters: ordered rules applied to mail arriving in the Inbox."""

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from service.persistence.types import UtcDateTime, utcnow


class FilterRuleRow(SQLModel, table=True):
    """One rule. `conditions` and `actions` are JSON text (lists of objects), read and written
    only by service.usecases.filters, which checks them with service.domain.filters."""

    __tablename__ = "filter_rule"
    __table_args__ = (Index("ix_filter_rule_user_position", "user_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    position: int = Field(default=0)
    name: str = Field(max_length=200)
    enabled: bool = Field(default=True)
    match_all: bool = Field(default=True)
    conditions: str = Field(default="[]")
    actions: str = Field(default="[]")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
