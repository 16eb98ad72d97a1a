"""content filters: a user's ordered filter rules

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 22:36:07.259089
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from service.persistence.types import UtcDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "filter_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("match_all", sa.Boolean(), nullable=False),
        sa.Column("conditions", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("actions", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_filter_rule_user_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_filter_rule")),
    )
    with op.batch_alter_table("filter_rule", schema=None) as batch_op:
        batch_op.create_index("ix_filter_rule_user_position", ["user_id", "position"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("filter_rule", schema=None) as batch_op:
        batch_op.drop_index("ix_filter_rule_user_position")
    op.drop_table("filter_rule")
