"""message bodies outside the database: body store references (issue 20)

`message_body_ref` says where a message's bytes lie when the files body store
(service.persistence.bodies.files) holds them: segment number, offset, length and the
SHA-256 of those bytes. A message has either this row or a `message_body` row; the
reference goes with its message (ON DELETE CASCADE), leaving its bytes for compaction.
Existing bodies stay in `message_body`: readers find them there, and
`tributary bodies migrate --to files` moves them while the service runs.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_body_ref",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_index(op.f("ix_message_body_ref_segment"), "message_body_ref", ["segment"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_message_body_ref_segment"), table_name="message_body_ref")
    op.drop_table("message_body_ref")
