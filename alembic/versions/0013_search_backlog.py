"""the search backlog: messages stored but not yet in the full-text index (issue 20)

Bulk retrieval no longer indexes each message in the transaction that stores it (the
body text extraction and the index insert were a third of a full IMAP run): it queues
the message's id in `search_backlog`, and the service's background job, and every
search for the searcher's own messages first, index the queue a batch at a time
(service.persistence.search_backlog). A row goes with its message (ON DELETE CASCADE).

Every message stored by 0012's code is indexed as it is stored; the upgrade queues any that
is not (those a downgrade of this migration left waiting, or an index that drifted). The
downgrade drops the queue: messages still waiting in it stay out of the index until
`tributary search rebuild` or the next upgrade (0012's code indexes only what it stores itself).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 07:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EPOCH_2000 = 946_684_800
_LOW = 2**32
# The FTS5 rowid of a message (0009's sort key: seconds since 2000, 32 bits signed, * 2^32 + id).
_SECONDS = f"coalesce(CAST(strftime('%s', m.sort_date) AS INTEGER), {_EPOCH_2000}) - {_EPOCH_2000}"
_KEY = f"(max(-2147483648, min(2147483647, {_SECONDS})) * {_LOW} + m.id)"
_UNINDEXED_SQLITE = f"""INSERT INTO search_backlog (message_id, user_id) SELECT m.id, m.user_id FROM message m
    WHERE NOT EXISTS (SELECT 1 FROM message_search s WHERE s.rowid = {_KEY})"""  # noqa: S608  (constant text)
_UNINDEXED_POSTGRESQL = (
    "INSERT INTO search_backlog (message_id, user_id) SELECT m.id, m.user_id FROM message m"
    " WHERE NOT EXISTS (SELECT 1 FROM message_search s WHERE s.message_id = m.id)"
)


def upgrade() -> None:
    op.create_table(
        "search_backlog",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_index(op.f("ix_search_backlog_user_id"), "search_backlog", ["user_id"], unique=False)
    op.execute(_UNINDEXED_SQLITE if op.get_bind().dialect.name == "sqlite" else _UNINDEXED_POSTGRESQL)


def downgrade() -> None:
    op.drop_index(op.f("ix_search_backlog_user_id"), table_name="search_backlog")
    op.drop_table("search_backlog")
