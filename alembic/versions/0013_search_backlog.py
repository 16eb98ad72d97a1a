"""the search backlog: messages stored but not yet in the full-text index (issue 20)

Bulk retrieval no longer indexes each message in the transaction that stores it (the
body text extraction and the index insert were a third of a full IMAP run): it queues
the message's id in `search_backlog`, and the service's background job, and every
search for the searcher's own messages first, index the queue a batch at a time
(service.persistence.search_backlog). A row goes with its message (ON DELETE CASCADE).

Every message stored before this migration is indexed already: nothing to queue. The
downgrade drops the queue: messages still waiting in it stay out of the index until
`tributary search rebuild` (0012's code indexes only what it stores itself).

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


def upgrade() -> None:
    op.create_table(
        "search_backlog",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_index(op.f("ix_search_backlog_user_id"), "search_backlog", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_search_backlog_user_id"), table_name="search_backlog")
    op.drop_table("search_backlog")
