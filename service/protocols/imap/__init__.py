"""IMAP retrieval with imapclient: the only package that talks IMAP (see session.py)."""

from service.protocols.imap.folders import SPECIAL_USE_FLAGS, RemoteFolder
from service.protocols.imap.probe import test_connection
from service.protocols.imap.push import PushConnection, PushNews
from service.protocols.imap.session import (
    FetchedMessage,
    ImapAccount,
    ImapSession,
    SelectedFolder,
    open_session,
)

__all__ = [
    "SPECIAL_USE_FLAGS",
    "FetchedMessage",
    "ImapAccount",
    "ImapSession",
    "PushConnection",
    "PushNews",
    "RemoteFolder",
    "SelectedFolder",
    "open_session",
    "test_connection",
]
