"""message bodies outside the database: body store references (issue 20)

`message_body_ref` says where a message's bytes lie when the files body store
(service.persistence.bodies.files) holds them: segment number, offset, length and the
SHA-256 of those bytes. A message has either this row or a `message_body` row; the
reference goes with its message (ON DELETE CASCADE), leaving its bytes for compaction.
Existing bodies stay in `message_body`: readers find them there, and
`tributary bodies migrate --to files` moves them while the service runs.

The downgrade brings every body in segment files back into `message_body` (checked
against its SHA-256, one at a time) before it drops the references, and refuses to go on
when one cannot be read: a schema downgrade must never lose mail. The segments are read
under `<data_dir>/bodies`, the data directory `tributary db` passes (or the settings').

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 03:30:00
"""

import hashlib
from collections.abc import Sequence
from pathlib import Path

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


def _data_dir() -> Path:
    config = op.get_context().config
    given = config.attributes.get("data_dir") if config is not None else None
    if given:
        return Path(given)
    from service.config import Settings

    return Settings().data_dir


def _bodies_back_into_the_table() -> None:
    connection = op.get_bind()
    root = _data_dir() / "bodies"
    refs = connection.execute(
        sa.text('SELECT message_id, segment, "offset", length, sha256 FROM message_body_ref ORDER BY segment, "offset"')
    ).all()
    insert = sa.text("INSERT INTO message_body (message_id, raw) VALUES (:id, :raw)")
    for message_id, segment, offset, length, digest in refs:
        with open(root / f"{int(segment):08d}.seg", "rb") as file:
            file.seek(int(offset))
            raw = file.read(int(length))
        if len(raw) != length or hashlib.sha256(raw).hexdigest() != digest:
            raise RuntimeError(f"message {message_id}: its body in segment {segment} is damaged; not downgrading")
        connection.execute(insert, {"id": message_id, "raw": raw})


def downgrade() -> None:
    _bodies_back_into_the_table()
    op.drop_index(op.f("ix_message_body_ref_segment"), table_name="message_body_ref")
    op.drop_table("message_body_ref")
