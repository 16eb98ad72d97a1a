"""The local mailbox: folders, message index rows, and the raw bytes kept apart from them."""

from datetime import datetime

from sqlalchemy import BigInteger, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.domain.values import SpecialUse
from service.persistence.tables.columns import enum_type
from service.persistence.types import UtcDateTime, utcnow


class Folder(SQLModel, table=True):
    """A local folder. `path` is the full name with "/" between levels, unique per user;
    its message and unread counts are maintained by triggers."""

    __table_args__ = (
        UniqueConstraint("user_id", "path"),
        UniqueConstraint("user_id", "special_use"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    parent_id: int | None = Field(default=None, foreign_key="folder.id", ondelete="CASCADE", index=True)
    name: str = Field(max_length=255)
    path: str = Field(max_length=1000)
    special_use: SpecialUse | None = Field(default=None, sa_type=enum_type(SpecialUse))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    # Kept by database triggers on `message` (migration 0004), never by application code:
    # counting a 100,000-message folder on every page costs more than the page itself.
    message_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    unread_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class Message(SQLModel, table=True):
    """The index row of a stored message, derived from its raw bytes.

    The origin columns (task, remote folder, UIDVALIDITY, UID or UIDL) say where
    it came from; with size, Message-ID and sha256 they let a UIDVALIDITY change
    be matched against what is already here. `parse_error` marks a degraded index.
    """

    __table_args__ = (
        Index("ix_message_folder_listing", "folder_id", "sort_date", "id"),
        Index("ix_message_user_listing", "user_id", "sort_date", "id"),  # search without words (0009)
        Index("ix_message_folder_unseen", "folder_id", "seen"),
        Index("ix_message_origin", "task_id", "remote_folder", "sha256"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    folder_id: int = Field(foreign_key="folder.id", ondelete="CASCADE")
    task_id: int | None = Field(default=None, foreign_key="retrieval_task.id", ondelete="SET NULL")
    remote_folder: str | None = Field(default=None, max_length=1000)
    remote_uidvalidity: int | None = Field(default=None, sa_type=BigInteger)
    remote_uid: int | None = Field(default=None, sa_type=BigInteger)
    message_id_header: str | None = Field(default=None, max_length=998)
    in_reply_to: str | None = Field(default=None, max_length=998)
    subject: str = Field(default="", max_length=998)
    from_address: str = Field(default="", max_length=998)
    to_addresses: str = Field(default="")
    cc_addresses: str = Field(default="")
    date: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # The list's order: Date when sane, else when it arrived.
    sort_date: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    size: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    preview: str = Field(default="", max_length=300)
    has_attachments: bool = Field(default=False)
    parse_error: str | None = Field(default=None)
    seen: bool = Field(default=False)
    flagged: bool = Field(default=False)
    answered: bool = Field(default=False)
    draft: bool = Field(default=False)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class MessageBody(SQLModel, table=True):
    """The message exactly as received, byte for byte, in its own table so lists never load it."""

    __tablename__ = "message_body"

    message_id: int = Field(foreign_key="message.id", ondelete="CASCADE", primary_key=True)
    raw: bytes = Field(sa_type=LargeBinary)


class MessageBodyRef(SQLModel, table=True):
    """Where a message's bytes lie in the files body store (service.persistence.bodies.files):
    `length` bytes at `offset` of segment file `segment`, whose SHA-256 is `sha256`. A message has
    this row or a `message_body` row; readers look here first (issue 20)."""

    __tablename__ = "message_body_ref"

    message_id: int = Field(foreign_key="message.id", ondelete="CASCADE", primary_key=True)
    segment: int = Field(index=True)
    offset: int = Field(sa_type=BigInteger)
    length: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)


class SearchBacklog(SQLModel, table=True):
    """A stored message not yet in the full-text index (`message_search`): bulk retrieval queues
    its messages here instead of indexing them in the transaction that stores them, and
    `service.persistence.search_backlog` indexes them a batch at a time (the service's
    background job, and every search first for the searcher's own backlog)."""

    __tablename__ = "search_backlog"

    message_id: int = Field(foreign_key="message.id", ondelete="CASCADE", primary_key=True)
    user_id: int = Field(index=True)
