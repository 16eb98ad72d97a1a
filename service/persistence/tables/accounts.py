"""A user's remote accounts: SMTP accounts to send through, retrieval tasks to pull from,
and the retrieval cursors that make retrieval exactly-once.

Both kinds of account sign in with a password or with OAuth2 (issue 15): `auth`
says which. For OAuth2 the access and refresh tokens are Fernet-encrypted like
passwords (`service.persistence.secrets`), `oauth_expires_at` is the access
token's expiry, and `oauth_status` is pending (consent not given yet), ok, or
reconnect (the provider refused a refresh; `last_error` says why and
`needs_action` is set).
"""

from datetime import datetime

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.domain.oauth import AuthKind, CredentialStatus
from service.domain.values import FolderTransfer, Protocol, PushState, RetrievalMethod, Security
from service.persistence.tables.columns import enum_type
from service.persistence.types import UtcDateTime, utcnow


class SmtpAccount(SQLModel, table=True):
    """An external SMTP server a user sends through; its address appears in Send From."""

    __tablename__ = "smtp_account"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    display_name: str = Field(default="", max_length=200)
    email_address: str = Field(max_length=320)
    host: str = Field(max_length=253)
    port: int
    security: Security = Field(default=Security.STARTTLS, sa_type=enum_type(Security))
    auth_required: bool = Field(default=True)
    username: str = Field(default="", max_length=320)
    password_encrypted: str | None = Field(default=None)
    # OAuth2 sign-in (auth = oauth2): the provider's name and the encrypted tokens.
    auth: AuthKind = Field(default=AuthKind.PASSWORD, sa_type=enum_type(AuthKind))
    oauth_provider: str | None = Field(default=None, max_length=40)
    oauth_access_token_encrypted: str | None = Field(default=None)
    oauth_refresh_token_encrypted: str | None = Field(default=None)
    oauth_expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    oauth_status: CredentialStatus = Field(default=CredentialStatus.OK, sa_type=enum_type(CredentialStatus))
    verify_certificate: bool = Field(default=True)
    timeout_seconds: int = Field(default=30)
    signature_text: str = Field(default="")
    signature_html: str = Field(default="")
    save_copy_in_sent: bool = Field(default=True)
    messages_per_minute: int | None = Field(default=None)
    enable_debug: bool = Field(default=False)
    is_active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    # Health, shown on the account's row.
    last_used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_success_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_error: str | None = Field(default=None)
    failing_since: datetime | None = Field(default=None, sa_type=UtcDateTime)
    needs_action: bool = Field(default=False)
    # The IMAP retrieval task of the same mailbox: each message sent is appended to its Sent folder too.
    sent_copy_task_id: int | None = Field(default=None, foreign_key="retrieval_task.id", ondelete="SET NULL")


class RetrievalTask(SQLModel, table=True):
    """A remote IMAP or POP3 mailbox pulled into the user's local mailbox."""

    __tablename__ = "retrieval_task"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    name: str = Field(default="", max_length=200)
    protocol: Protocol = Field(sa_type=enum_type(Protocol))
    host: str = Field(max_length=253)
    port: int
    security: Security = Field(default=Security.SSL, sa_type=enum_type(Security))
    username: str = Field(max_length=320)
    password_encrypted: str | None = Field(default=None)  # None when auth is oauth2
    # OAuth2 sign-in (auth = oauth2): the provider's name and the encrypted tokens.
    auth: AuthKind = Field(default=AuthKind.PASSWORD, sa_type=enum_type(AuthKind))
    oauth_provider: str | None = Field(default=None, max_length=40)
    oauth_access_token_encrypted: str | None = Field(default=None)
    oauth_refresh_token_encrypted: str | None = Field(default=None)
    oauth_expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    oauth_status: CredentialStatus = Field(default=CredentialStatus.OK, sa_type=enum_type(CredentialStatus))
    verify_certificate: bool = Field(default=True)
    timeout_seconds: int = Field(default=60)
    method: RetrievalMethod = Field(default=RetrievalMethod.AUTOMATIC, sa_type=enum_type(RetrievalMethod))
    # IMAP: where remote folders land. POP3: the destination folder (Inbox when None).
    folder_transfer: FolderTransfer = Field(default=FolderTransfer.SUBFOLDERS, sa_type=enum_type(FolderTransfer))
    destination_folder: str | None = Field(default=None, max_length=1000)
    # POP3 only.
    use_apop: bool = Field(default=False)
    leave_on_server: bool = Field(default=True)
    delete_after_days: int | None = Field(default=None)
    apply_filters: bool = Field(default=False)
    # IMAP, automatic: hold a push connection (IDLE, NOTIFY) and run as soon as the server announces mail.
    push: bool = Field(default=True)
    enable_debug: bool = Field(default=False)
    # What to import (service.domain.import_choices): the initial import ("all", "new",
    # "since:YYYY-MM-DD"), applied until a run completes (initial_done), and the folder patterns
    # (JSON text: lists of strings), read and written only by service.usecases.retrieval_tasks.
    initial: str = Field(default="all", max_length=20)
    initial_done: bool = Field(default=False)
    include_folders: str = Field(default="[]")
    exclude_folders: str = Field(default="[]")
    is_active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    # Health, shown on the task's row.
    last_run_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_success_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    messages_imported: int = Field(default=0, sa_type=BigInteger)
    last_error: str | None = Field(default=None)
    failing_since: datetime | None = Field(default=None, sa_type=UtcDateTime)
    consecutive_failures: int = Field(default=0)
    auth_failures: int = Field(default=0)
    needs_action: bool = Field(default=False)
    paused_reason: str | None = Field(default=None)
    # Scheduling: when it is due, and who holds the run lease until when.
    next_run_at: datetime | None = Field(default=None, sa_type=UtcDateTime, index=True)
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # The lease holder's process, so a claimer on the same machine can see that it died
    # (service/usecases/retrieval/holder.py); meaningful only while lease_owner is set.
    lease_host: str | None = Field(default=None, max_length=255)
    lease_boot_id: str | None = Field(default=None, max_length=64)
    lease_pid_namespace: str | None = Field(default=None, max_length=64)
    lease_pid: int | None = Field(default=None)
    lease_pid_started: int | None = Field(default=None, sa_type=BigInteger)
    # Push (IMAP IDLE/NOTIFY, service/usecases/retrieval/push): which worker holds the task's one push
    # connection until when (a lease of its own, apart from the run lease), what the connection
    # found (push_state, push_detail in words) and when a task whose push stopped may be tried again.
    push_owner: str | None = Field(default=None, max_length=200)
    push_expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    push_state: PushState | None = Field(default=None, sa_type=enum_type(PushState))
    push_detail: str | None = Field(default=None)
    push_retry_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ImapCursor(SQLModel, table=True):
    """How far a task has retrieved one remote IMAP folder (RFC 3501 2.3.1.1).

    UIDs are only meaningful with the folder's UIDVALIDITY; when it changes the
    folder is matched again instead of imported again.
    """

    __tablename__ = "imap_cursor"
    __table_args__ = (UniqueConstraint("task_id", "remote_folder"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="retrieval_task.id", ondelete="CASCADE")
    remote_folder: str = Field(max_length=1000)
    uidvalidity: int = Field(sa_type=BigInteger)
    last_uid: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class PopUidl(SQLModel, table=True):
    """A POP3 message this task has stored, by its UIDL (RFC 1939 section 7)."""

    __tablename__ = "pop_uidl"
    __table_args__ = (UniqueConstraint("task_id", "uidl"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="retrieval_task.id", ondelete="CASCADE")
    uidl: str = Field(max_length=512)
    message_id: int | None = Field(default=None, foreign_key="message.id", ondelete="SET NULL")
    retrieved_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    deleted_remotely: bool = Field(default=False)
    # Recorded without being imported (the initial import skipped it): never deleted from the server.
    not_imported: bool = Field(default=False)
