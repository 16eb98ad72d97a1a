"""retrieval import choices: initial import and folder selection (issue 18)

- retrieval_task.initial: "all", "new" or "since:YYYY-MM-DD" (service.domain.import_choices);
  existing tasks import everything, as they always did.
- retrieval_task.initial_done: set when a run completes; the initial choice no longer applies.
  Existing tasks that already ran are done (their mail is in), so nothing changes for them.
- retrieval_task.include_folders / exclude_folders: JSON text, lists of folder patterns ("[]").
- pop_uidl.not_imported: a POP3 message the initial import recorded without storing it
  (never deleted from the server, since no local copy exists).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TASK_COLUMNS = ("initial", "initial_done", "include_folders", "exclude_folders")


def upgrade() -> None:
    with op.batch_alter_table("retrieval_task", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("initial", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False, server_default="all")
        )
        batch_op.add_column(sa.Column("initial_done", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(
            sa.Column("include_folders", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="[]")
        )
        batch_op.add_column(
            sa.Column("exclude_folders", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="[]")
        )
    with op.batch_alter_table("pop_uidl", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_imported", sa.Boolean(), nullable=False, server_default=sa.false()))
    task = sa.table("retrieval_task", sa.column("initial_done", sa.Boolean()), sa.column("last_run_at"))
    op.execute(task.update().where(task.c.last_run_at.is_not(None)).values(initial_done=True))


def downgrade() -> None:
    with op.batch_alter_table("pop_uidl", schema=None) as batch_op:
        batch_op.drop_column("not_imported")
    with op.batch_alter_table("retrieval_task", schema=None) as batch_op:
        for column in reversed(_TASK_COLUMNS):
            batch_op.drop_column(column)
