"""push: IMAP IDLE/NOTIFY push per retrieval task (issue 16)

`retrieval_task.push` (on by default, also for existing tasks: it only acts on
automatic IMAP tasks whose server offers IDLE), and the push lease and state:
`push_owner` / `push_expires_at` (the worker holding the task's one push
connection), `push_state` / `push_detail` (what it found, for the Connectivity
card) and `push_retry_at` (when a task whose push stopped is tried again).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 00:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from service.persistence.types import UtcDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("retrieval_task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("push", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("push_owner", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column("push_expires_at", UtcDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "push_state",
                sa.Enum(
                    "connecting", "listening", "unsupported", "failed", name="pushstate", native_enum=False, length=32
                ),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("push_detail", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("push_retry_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("retrieval_task", schema=None) as batch_op:
        for column in ("push_retry_at", "push_detail", "push_state", "push_expires_at", "push_owner", "push"):
            batch_op.drop_column(column)
