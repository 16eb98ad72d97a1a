"""Domains (the administrator's switches and limits) and the users that belong to them."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from service.domain.values import Security
from service.persistence.tables.columns import enum_type
from service.persistence.types import UtcDateTime, utcnow


class Domain(SQLModel, table=True):
    """A mail domain (the part after @ in users' addresses) and its administrator's policy."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=253, unique=True)
    retrieval_enabled: bool = Field(default=True)
    smtp_accounts_enabled: bool = Field(default=True)
    # "OAuth2 sign-in (Google, Microsoft, ...)": off refuses new sign-ins and stops existing ones (issue 15).
    oauth_enabled: bool = Field(default=True)
    max_tasks_per_user: int | None = Field(default=None)
    max_smtp_accounts_per_user: int | None = Field(default=None)
    max_message_bytes: int = Field(default=50 * 1024 * 1024)
    # Hosts or networks users may reach beyond the default outbound policy, one per line.
    allowed_hosts: str = Field(default="")
    # The company relay: optional; users without an SMTP account send as themselves through it.
    relay_host: str | None = Field(default=None, max_length=253)
    relay_port: int | None = Field(default=None)
    relay_security: Security = Field(default=Security.STARTTLS, sa_type=enum_type(Security))
    relay_username: str | None = Field(default=None, max_length=320)
    relay_password_encrypted: str | None = Field(default=None)
    relay_verify_certificate: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class User(SQLModel, table=True):
    """A person who signs in to Tributary. `email` is their own address on `domain`."""

    id: int | None = Field(default=None, primary_key=True)
    domain_id: int = Field(foreign_key="domain.id", ondelete="RESTRICT", index=True)
    email: str = Field(max_length=320, unique=True)
    display_name: str = Field(default="", max_length=200)
    password_hash: str
    is_admin: bool = Field(default=False)
    is_active: bool = Field(default=True)
    # The Send From default: one of the user's SMTP accounts; None means the
    # company relay (their own address) or the first active account.
    default_from_account_id: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    last_login_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
