"""The schema: SQLModel tables. Table models are storage, never API shapes.

Every change here needs an Alembic migration (`alembic revision --autogenerate`),
and `alembic check` in the test suite fails when one is missing.
"""

from sqlmodel import SQLModel

from service.persistence.tables.accounts import ImapCursor, PopUidl, RetrievalTask, SmtpAccount
from service.persistence.tables.filters import FilterRuleRow
from service.persistence.tables.logs import LogEntry
from service.persistence.tables.mail import Folder, Message, MessageBody, MessageBodyRef, SearchBacklog
from service.persistence.tables.oauth import OAuthState
from service.persistence.tables.outbox import OutboxEntry
from service.persistence.tables.tenancy import Domain, User

metadata = SQLModel.metadata

__all__ = [
    "Domain",
    "FilterRuleRow",
    "Folder",
    "ImapCursor",
    "LogEntry",
    "Message",
    "MessageBody",
    "MessageBodyRef",
    "OAuthState",
    "OutboxEntry",
    "PopUidl",
    "RetrievalTask",
    "SearchBacklog",
    "SmtpAccount",
    "User",
    "metadata",
]
