"""lease holder: the process holding a retrieval task's run lease

A run killed with SIGKILL kept its lease until it expired (90 s), so "Retrieve
Messages Now" said "already running" although nothing ran. The lease now names
its holder's host, boot id, pid namespace, process id and process start time,
so a claimer on the same machine (and in the same container) sees at once that
the holder is gone.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("retrieval_task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_host", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column("lease_boot_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("lease_pid_namespace", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column("lease_pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("lease_pid_started", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("retrieval_task", schema=None) as batch_op:
        batch_op.drop_column("lease_pid_started")
        batch_op.drop_column("lease_pid")
        batch_op.drop_column("lease_pid_namespace")
        batch_op.drop_column("lease_boot_id")
        batch_op.drop_column("lease_host")
