"""The vocabulary shared by every layer: security modes, protocols, folders, log kinds."""

from __future__ import annotations

from enum import StrEnum


class Security(StrEnum):
    """How a connection is protected. STARTTLS never falls back to plain text."""

    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


class Protocol(StrEnum):
    IMAP = "imap"
    POP3 = "pop3"


class RetrievalMethod(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class PushState(StrEnum):
    """What a task's push connection (IMAP IDLE, RFC 2177; NOTIFY, RFC 5465) last found."""

    CONNECTING = "connecting"  # leased by a worker, signing in
    LISTENING = "listening"  # signed in and idling: the server announces new mail at once
    UNSUPPORTED = "unsupported"  # the server offers neither IDLE nor NOTIFY: polling only
    FAILED = "failed"  # sign-in refused or the server unreachable: retried later, polling goes on


class FolderTransfer(StrEnum):
    """Where remote IMAP folders land: under a destination folder, or at the root."""

    SUBFOLDERS = "subfolders"
    ROOT = "root"


class SpecialUse(StrEnum):
    """The local folders every user has (RFC 6154 names, plus the outbox)."""

    INBOX = "inbox"
    SENT = "sent"
    DRAFTS = "drafts"
    TRASH = "trash"
    JUNK = "junk"
    OUTBOX = "outbox"


SPECIAL_FOLDER_NAMES: dict[SpecialUse, str] = {
    SpecialUse.INBOX: "Inbox",
    SpecialUse.SENT: "Sent",
    SpecialUse.DRAFTS: "Drafts",
    SpecialUse.TRASH: "Trash",
    SpecialUse.JUNK: "Junk",
    SpecialUse.OUTBOX: "Outbox",
}


class LogSource(StrEnum):
    SMTP_AUTH = "SMTP Auth"
    IMAP_AUTH = "IMAP Auth"
    POP3_AUTH = "POP3 Auth"
    INCOMING = "Incoming mail"
    OUTGOING = "Outgoing mail"
    SCHEDULER = "Scheduler"


class LogLevel(StrEnum):
    DEBUG = "Debug"
    INFO = "Info"
    WARNING = "Warning"
    ERROR = "Error"


DEFAULT_PORTS: dict[tuple[Protocol | str, Security], int] = {
    (Protocol.IMAP, Security.NONE): 143,
    (Protocol.IMAP, Security.STARTTLS): 143,
    (Protocol.IMAP, Security.SSL): 993,
    (Protocol.POP3, Security.NONE): 110,
    (Protocol.POP3, Security.STARTTLS): 110,
    (Protocol.POP3, Security.SSL): 995,
    ("smtp", Security.NONE): 25,
    ("smtp", Security.STARTTLS): 587,
    ("smtp", Security.SSL): 465,
}


def default_port(protocol: Protocol | str, security: Security) -> int:
    """The port a security mode suggests: 143/993 IMAP, 110/995 POP3, 25/587/465 SMTP."""
    return DEFAULT_PORTS[(protocol, security)]
