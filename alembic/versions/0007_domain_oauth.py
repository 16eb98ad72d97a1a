"""domain_oauth: the administrator's per-domain "OAuth2 sign-in" switch (issue 15)

`domain.oauth_enabled` (on for existing domains): off refuses "Sign in with
<provider>" and Reconnect, hides the provider buttons and stops the domain's
OAuth2 tasks and accounts from signing in.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 22:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (Alembic's template: the tables' types live there)
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.add_column(sa.Column("oauth_enabled", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.drop_column("oauth_enabled")
