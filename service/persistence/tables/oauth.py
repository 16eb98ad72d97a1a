"""OAuth2 sign-ins in progress: one row per authorization request (RFC 6749 4.1.1, RFC 7636).

The `state` parameter itself is never stored, only its SHA-256, so a database
reader cannot complete someone's sign-in. A row is single use (`used_at` is set
in the transaction that consumes it), expires after ten minutes, and is bound to
the user and, for flows started in a browser, to that browser session
(`session_binding` holds the SHA-256 of the opaque value the web face derives
from the session id; NULL for flows started by the CLI, where the state alone
binds the callback). The PKCE code verifier is Fernet-encrypted like a password.
"""

from datetime import datetime

from sqlmodel import Field, SQLModel

from service.persistence.types import UtcDateTime, utcnow


class OAuthState(SQLModel, table=True):
    """An authorization request waiting for its callback."""

    __tablename__ = "oauth_state"

    id: int | None = Field(default=None, primary_key=True)
    state_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    session_binding: str | None = Field(default=None, max_length=64)
    kind: str = Field(max_length=16)  # "retrieval" or "smtp"
    target_id: int
    provider: str = Field(max_length=40)
    code_verifier_encrypted: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime, index=True)
    used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
