"""SMTP accounts as the faces see and edit them, and the Send From choices. No I/O.

A view never holds the password: it is write-only, so a view only says whether
one is stored. The input is what the "SMTP Account" form (or `tributary smtp
add`) submits; `checked()` returns it normalised or raises InvalidInput.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from datetime import datetime

from service.domain.compose import Mailbox, check_header_text, parse_address
from service.domain.values import Security, default_port
from service.errors import InvalidInput

MIN_TIMEOUT, MAX_TIMEOUT = 5, 300
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_HOST_LENGTH = 253  # RFC 1035 2.3.4, without the trailing dot
EXAMPLE_HOST = "mail.example.com"
EMPTY_HOST = f"Enter the server's host name or address, for example {EXAMPLE_HOST}."
COPY_NEEDS_LOCAL = "A copy in the remote Sent folder needs “Save a copy in Sent” on: turn it on, or choose no task."


@dataclass(frozen=True, slots=True)
class SmtpAccountInput:
    """The settings of an SMTP account (DESIGN.md section 1). ``port`` None: the security's default."""

    email_address: str
    host: str
    port: int | None = None
    security: Security = Security.STARTTLS
    display_name: str = ""
    auth_required: bool = True
    username: str = ""
    verify_certificate: bool = True
    timeout_seconds: int = 30
    signature_text: str = ""
    signature_html: str = ""
    save_copy_in_sent: bool = True
    messages_per_minute: int | None = None
    enable_debug: bool = False
    is_active: bool = True
    is_default: bool = False
    # The IMAP retrieval task of the same mailbox, whose Sent folder gets a copy of each message (issue 18).
    sent_copy_task_id: int | None = None

    def checked(self) -> SmtpAccountInput:
        """Normalised settings: address in ASCII form, host checked, port filled in."""
        if self.port is not None and not 1 <= self.port <= 65535:
            raise InvalidInput("The port must be between 1 and 65535.")
        if not MIN_TIMEOUT <= self.timeout_seconds <= MAX_TIMEOUT:
            raise InvalidInput(f"The connection timeout must be between {MIN_TIMEOUT} and {MAX_TIMEOUT} seconds.")
        if self.messages_per_minute is not None and self.messages_per_minute < 1:
            raise InvalidInput("The send rate must be at least one message per minute, or empty for no limit.")
        if "\0" in self.signature_text + self.signature_html:  # PostgreSQL text cannot hold NUL
            raise InvalidInput("The signature cannot contain NUL characters.")
        if self.sent_copy_task_id is not None and not self.save_copy_in_sent:
            raise InvalidInput(COPY_NEEDS_LOCAL)
        address = parse_address(self.email_address, "email address")
        username = check_header_text(self.username.strip(), "username")
        return replace(
            self,
            email_address=address,
            host=check_host(self.host),
            port=self.port or default_port("smtp", self.security),
            display_name=" ".join(check_header_text(self.display_name, "display name").split()),
            username=(username or address) if self.auth_required else username,
        )


def check_host(value: str) -> str:
    """The one rule for a server address (SMTP accounts, retrieval tasks, Test Connection, the CLI).

    An IP address (IPv6 with or without brackets), or a host name of LDH labels
    (RFC 1123 2.1), at most 253 characters, a trailing dot allowed. A name with
    non-ASCII letters is converted with IDNA (RFC 3490, the stdlib codec:
    "bücher.example" is kept as "xn--bcher-kva.example", the form every
    resolver and certificate uses). Anything else, control characters included,
    is refused with one sentence, never passed on to a socket.
    """
    host = value.strip().rstrip(".").lower()
    if not host:
        raise InvalidInput(EMPTY_HOST)
    try:
        return str(ipaddress.ip_address(host.removeprefix("[").removesuffix("]")))
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    if not ascii_host or len(ascii_host) > MAX_HOST_LENGTH or not all(map(_HOST_LABEL.match, ascii_host.split("."))):
        shown = value.strip() if len(value.strip()) <= 60 else value.strip()[:60] + "…"
        raise InvalidInput(
            f"{shown!r} is not a valid server address: enter a host name such as {EXAMPLE_HOST} or an IP address."
        )
    return ascii_host


@dataclass(frozen=True, slots=True)
class SmtpAccountView:
    id: int
    email_address: str
    display_name: str
    host: str
    port: int
    security: Security
    auth_required: bool
    username: str
    has_password: bool
    verify_certificate: bool
    timeout_seconds: int
    signature_text: str
    signature_html: str
    save_copy_in_sent: bool
    messages_per_minute: int | None
    enable_debug: bool
    is_active: bool
    is_default: bool
    last_used_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    needs_action: bool
    sent_copy_task: int | None = None  # the retrieval task whose Sent folder gets a copy ("sent_copy_task")
    # Why no copy is appended although a task is chosen (the provider files sent mail itself), else None.
    sent_copy_note: str | None = None

    @property
    def label(self) -> str:
        if not self.email_address:  # an OAuth2 account whose sign-in is pending has no address yet
            return f"{self.display_name or 'New account'} (sign-in not finished)"
        return str(Mailbox(self.email_address, self.display_name))


@dataclass(frozen=True, slots=True)
class FromChoice:
    """One entry of the Send From dropdown. ``account_id`` None: the company relay, as the user."""

    account_id: int | None
    address: str
    display_name: str
    is_default: bool = False

    @property
    def label(self) -> str:
        return str(Mailbox(self.address, self.display_name))

    @property
    def key(self) -> str:
        """The form value: the account's id, or "relay"."""
        return "relay" if self.account_id is None else str(self.account_id)


# Providers whose SMTP servers file every message sent through them in the mailbox's Sent folder
# themselves: an APPEND would show each message twice there. Recognised by host name suffix.
_FILES_SENT_ITSELF: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Gmail", ("gmail.com", "googlemail.com", "google.com")),
    ("Microsoft 365", ("office365.com", "office.com", "microsoftonline.com")),
    ("Outlook.com", ("outlook.com", "hotmail.com", "live.com")),
)


def files_sent_itself(*hosts: str) -> str | None:
    """The sentence saying why no copy is appended when one of `hosts` (the SMTP server, the
    IMAP server) belongs to a provider that stores sent mail itself; None otherwise."""
    for host in hosts:
        name = host.strip().rstrip(".").lower()
        for provider, suffixes in _FILES_SENT_ITSELF:
            if any(name == suffix or name.endswith("." + suffix) for suffix in suffixes):
                return (
                    f"{provider} ({name}) saves every message you send in its Sent folder itself, "
                    "so Tributary does not add a copy there (it would show twice)."
                )
    return None
