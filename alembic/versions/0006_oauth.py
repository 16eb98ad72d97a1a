"""oauth: OAuth2 sign-in for retrieval tasks and SMTP accounts (issue 15)

Both tables get `auth` (password | oauth2), the provider's name, the encrypted
access and refresh tokens, the access token's expiry and `oauth_status`
(pending | ok | reconnect); existing rows are password accounts whose status is
ok. A retrieval task signed in with OAuth2 has no password, so
retrieval_task.password_encrypted becomes nullable. The new table oauth_state
holds the authorization requests waiting for their callback (hashed state,
encrypted PKCE verifier, user and session binding, expiry, use).

Downgrading deletes the retrieval tasks that have no password (they cannot
exist without the OAuth2 columns).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 21:45:38
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from service.persistence.types import UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _oauth_columns() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "auth",
            sa.Enum("password", "oauth2", name="authkind", native_enum=False, length=32),
            nullable=False,
            server_default="password",
        ),
        sa.Column("oauth_provider", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("oauth_access_token_encrypted", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("oauth_refresh_token_encrypted", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("oauth_expires_at", UtcDateTime(), nullable=True),
        sa.Column(
            "oauth_status",
            sa.Enum("pending", "ok", "reconnect", name="credentialstatus", native_enum=False, length=32),
            nullable=False,
            server_default="ok",
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "oauth_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("session_binding", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("code_verifier_encrypted", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_oauth_state_user_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_state")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oauth_state_state_hash")),
    )
    with op.batch_alter_table("oauth_state", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oauth_state_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_oauth_state_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("retrieval_task", schema=None) as batch_op:
        for column in _oauth_columns():
            batch_op.add_column(column)
        batch_op.alter_column("password_encrypted", existing_type=sa.VARCHAR(), nullable=True)

    with op.batch_alter_table("smtp_account", schema=None) as batch_op:
        for column in _oauth_columns():
            batch_op.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("smtp_account", schema=None) as batch_op:
        for name in ("oauth_status", "oauth_expires_at", "oauth_refresh_token_encrypted"):
            batch_op.drop_column(name)
        for name in ("oauth_access_token_encrypted", "oauth_provider", "auth"):
            batch_op.drop_column(name)

    op.execute("DELETE FROM retrieval_task WHERE password_encrypted IS NULL")
    with op.batch_alter_table("retrieval_task", schema=None) as batch_op:
        batch_op.alter_column("password_encrypted", existing_type=sa.VARCHAR(), nullable=False)
        for name in ("oauth_status", "oauth_expires_at", "oauth_refresh_token_encrypted"):
            batch_op.drop_column(name)
        for name in ("oauth_access_token_encrypted", "oauth_provider", "auth"):
            batch_op.drop_column(name)

    with op.batch_alter_table("oauth_state", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_state_user_id"))
        batch_op.drop_index(batch_op.f("ix_oauth_state_expires_at"))
    op.drop_table("oauth_state")
