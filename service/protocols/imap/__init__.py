"""IMAP retrieval with imapclient: the only package that talks IMAP (see session.py)."""

from service.protocols.imap.probe import test_connection
from service.protocols.imap.session import (
    SPECIAL_USE_FLAGS,
    FetchedMessage,
    ImapAccount,
    ImapSession,
    RemoteFolder,
    SelectedFolder,
    open_session,
)

__all__ = [
    "SPECIAL_USE_FLAGS",
    "FetchedMessage",
    "ImapAccount",
    "ImapSession",
    "RemoteFolder",
    "SelectedFolder",
    "open_session",
    "test_connection",
]
