"""The durable outbox: one row per outgoing message, written before any network I/O.

The message's bytes live in the mailstore (`message_id`: first in the Outbox
folder, then moved to Sent or deleted). The first `data_offset` bytes of that
copy (a Bcc header) are never transmitted. The recipient columns are JSON text:
lists of addresses, and an object of address -> the server's reply.

The `sent_copy_*` columns follow the copy appended to a retrieval task's remote Sent
folder (issue 18) once delivery is over: `next_attempt_at` and `give_up_at` then time
the APPEND's retries, and the UID the server gave it (APPENDUID, RFC 4315) is the
origin retrieval recognises so it never imports that copy again.
"""

from datetime import datetime

from sqlalchemy import BigInteger, Index
from sqlmodel import Field, SQLModel

from service.domain.outbox import OutboxStatus, SentCopyStatus
from service.persistence.tables.columns import enum_type
from service.persistence.types import UtcDateTime, utcnow


class OutboxEntry(SQLModel, table=True):
    """An outgoing message's envelope and each recipient's fate.

    `smtp_account_id` is None when the message goes through the domain's company
    relay (`via_relay`), or when its account was deleted.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_account_attempts", "smtp_account_id", "last_attempt_at"),
        Index("ix_outbox_sent_copy_due", "sent_copy_status", "next_attempt_at"),
        Index("ix_outbox_sent_copy_origin", "sent_copy_task_id", "sent_copy_uid"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    smtp_account_id: int | None = Field(default=None, foreign_key="smtp_account.id", ondelete="SET NULL")
    via_relay: bool = Field(default=False)
    message_id: int | None = Field(default=None, foreign_key="message.id", ondelete="SET NULL")
    in_reply_to_message_id: int | None = Field(default=None, foreign_key="message.id", ondelete="SET NULL")
    data_offset: int = Field(default=0)
    envelope_from: str = Field(max_length=320)
    pending_recipients: str = Field(default="[]")
    accepted_recipients: str = Field(default="[]")
    refused_recipients: str = Field(default="{}")
    status: OutboxStatus = Field(default=OutboxStatus.QUEUED, sa_type=enum_type(OutboxStatus))
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # Automatic retries stop here (24 hours after queueing, or after the user's "retry").
    give_up_at: datetime = Field(sa_type=UtcDateTime)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_reply: str | None = Field(default=None)
    last_error: str | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    # The copy for the remote Sent folder (None: none wanted).
    sent_copy_task_id: int | None = Field(default=None, foreign_key="retrieval_task.id", ondelete="SET NULL")
    sent_copy_status: SentCopyStatus | None = Field(default=None, sa_type=enum_type(SentCopyStatus))
    sent_copy_attempts: int = Field(default=0)
    sent_copy_attempted_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    sent_copy_folder: str | None = Field(default=None, max_length=1000)
    sent_copy_uidvalidity: int | None = Field(default=None, sa_type=BigInteger)
    sent_copy_uid: int | None = Field(default=None, sa_type=BigInteger)
    sent_copy_error: str | None = Field(default=None)
