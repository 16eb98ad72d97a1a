"""SMTP accounts that append a copy of sent mail to a retrieval task's Sent folder (issue 18)

- smtp_account.sent_copy_task_id: the IMAP retrieval task of the same mailbox (NULL: no copy).
- outbox.sent_copy_*: the copy's state once delivery is over (pending, appending, done, skipped,
  failed), its attempts, and where it went (remote folder, UIDVALIDITY, UID from APPENDUID), which
  retrieval recognises so it never imports the copy a second time. Existing rows want no copy.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from service.persistence.types import UtcDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUS = sa.Enum(
    "pending", "appending", "done", "skipped", "failed", name="sentcopystatus", native_enum=False, length=32
)


def upgrade() -> None:
    with op.batch_alter_table("smtp_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_copy_task_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_smtp_account_sent_copy_task_id_retrieval_task"),
            "retrieval_task",
            ["sent_copy_task_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_copy_task_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("sent_copy_status", _STATUS, nullable=True))
        batch_op.add_column(sa.Column("sent_copy_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("sent_copy_attempted_at", UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column("sent_copy_folder", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))
        batch_op.add_column(sa.Column("sent_copy_uidvalidity", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("sent_copy_uid", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("sent_copy_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_sent_copy_task_id_retrieval_task"),
            "retrieval_task",
            ["sent_copy_task_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index("ix_outbox_sent_copy_due", ["sent_copy_status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_outbox_sent_copy_origin", ["sent_copy_task_id", "sent_copy_uid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_sent_copy_origin")
        batch_op.drop_index("ix_outbox_sent_copy_due")
        batch_op.drop_constraint(batch_op.f("fk_outbox_sent_copy_task_id_retrieval_task"), type_="foreignkey")
        for column in (
            "sent_copy_error",
            "sent_copy_uid",
            "sent_copy_uidvalidity",
            "sent_copy_folder",
            "sent_copy_attempted_at",
            "sent_copy_attempts",
            "sent_copy_status",
            "sent_copy_task_id",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("smtp_account", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_smtp_account_sent_copy_task_id_retrieval_task"), type_="foreignkey")
        batch_op.drop_column("sent_copy_task_id")
