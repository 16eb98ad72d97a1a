"""Building an outgoing message from what the user typed: pure, no I/O.

The message is an RFC 5322 EmailMessage serialised with the SMTP policy (CRLF
line ends) restricted to 7-bit output, so the bytes are valid for any server
whether or not it offers 8BITMIME (RFC 6152), and the copy kept in Sent can be
exactly the bytes the server received. Non-ASCII display names and subjects
become RFC 2047 encoded words, non-ASCII attachment names RFC 2231 parameters.

Safety rules, because Python 3.11.7 predates the email package's own header
checks: every header input is refused if it holds CR, LF or NUL (header
injection), and every address is checked by email-validator (syntax only, no
DNS), never by ``parseaddr``. ``headerregistry.Address`` always gets
``addr_spec=`` (its second positional argument is a username).

Bcc addresses go only into the SMTP envelope (RFC 5322 3.6.3 leaves the choice;
we never transmit them). The local copy carries a Bcc header in front of the
transmitted bytes, ``data_offset`` bytes long, so the sender still sees whom
they copied.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid

from email_validator import EmailNotValidError, validate_email

from service.errors import InvalidInput

POLICY = policy.SMTP.clone(cte_type="7bit")
FORBIDDEN = ("\r", "\n", "\0")
SIGNATURE_SEPARATOR = "-- "  # RFC 3676 4.3: dash, dash, space on a line of its own
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_NAMED = re.compile(r'^\s*(?:"(?P<quoted>[^"]*)"|(?P<plain>[^"<>]*?))\s*<(?P<address>[^<>]*)>\s*$')
_TAGS = re.compile(r"(?is)<(script|style)\b.*?</\1>|<[^>]+>")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """An address that passed validation (ASCII form: IDN domains in punycode) and its display name."""

    address: str
    display_name: str = ""

    def header(self) -> Address:
        return Address(display_name=self.display_name, addr_spec=self.address)

    def __str__(self) -> str:
        return str(self.header())


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Draft:
    """A message as the user typed it. Addresses are "addr" or "Name <addr>" strings."""

    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Sender:
    """Who the message is from: the chosen account (or the user, through the company relay)."""

    address: str
    display_name: str = ""
    signature_text: str = ""
    signature_html: str = ""


@dataclass(frozen=True, slots=True)
class Thread:
    """The message being answered: its Message-ID and References (RFC 5322 3.6.4)."""

    message_id: str | None = None
    references: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ComposedMessage:
    stored: bytes  # the local copy: a Bcc header (if any), then exactly the transmitted bytes
    data_offset: int
    envelope_from: str
    recipients: tuple[str, ...]
    message_id: str

    @property
    def data(self) -> bytes:
        """The bytes sent after DATA (before dot-stuffing)."""
        return self.stored[self.data_offset :]


def check_header_text(value: str, what: str) -> str:
    """Refuse CR, LF and NUL: in a header they would start a new header (injection)."""
    if any(ch in value for ch in FORBIDDEN):
        raise InvalidInput(f"The {what} cannot contain line breaks or NUL characters.")
    return value


def parse_address(value: str, what: str = "address") -> str:
    """A bare address checked by email-validator (no DNS); returned in ASCII form."""
    check_header_text(value, what)
    candidate = value.strip()
    try:
        valid = validate_email(candidate, check_deliverability=False, test_environment=True, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"{candidate!r} is not a valid email address: {exc}") from exc
    assert valid.ascii_email is not None  # allow_smtputf8=False: the local part is ASCII
    return valid.ascii_email


def parse_mailbox(value: str, what: str = "address") -> Mailbox:
    """One address as typed: addr, Name <addr> or "Name" <addr>, validated."""
    check_header_text(value, what)
    named = _NAMED.match(value)
    if named is None:
        return Mailbox(parse_address(value, what))
    name = named.group("quoted") if named.group("quoted") is not None else named.group("plain")
    return Mailbox(parse_address(named.group("address"), what), " ".join(name.split()))


def split_addresses(value: str) -> list[str]:
    """Split "a@x, Name <b@y>; c@z" on commas and semicolons outside quotes and angle brackets."""
    parts: list[str] = []
    current: list[str] = []
    quoted = angled = False
    for ch in value:
        if ch == '"' and not angled:
            quoted = not quoted
        elif ch == "<" and not quoted:
            angled = True
        elif ch == ">" and not quoted:
            angled = False
        elif ch in ",;" and not quoted and not angled:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def parse_mailboxes(values: tuple[str, ...], what: str) -> list[Mailbox]:
    """Every address of every value (each may be a list); any CR, LF or NUL is refused, even at the ends."""
    return [parse_mailbox(item, what) for value in values for item in split_addresses(check_header_text(value, what))]


def message_ids(value: str | None) -> tuple[str, ...]:
    """The <...> tokens of a Message-ID, In-Reply-To or References value; anything else dropped."""
    return tuple(_MESSAGE_ID.findall(value or ""))


def _unique(addresses: list[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    result = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            result.append(address)
    return tuple(result)


def _text_of_html(markup: str) -> str:
    return html.unescape(_TAGS.sub(" ", markup)).strip()


def _bodies(draft: Draft, sender: Sender) -> tuple[str, str | None]:
    text = draft.text if draft.text or draft.html is None else _text_of_html(draft.html)
    if sender.signature_text.strip():
        text = f"{text.rstrip()}\n\n{SIGNATURE_SEPARATOR}\n{sender.signature_text.strip()}\n"
    if draft.html is None:
        return text, None
    signature = sender.signature_html.strip() or html.escape(sender.signature_text.strip()).replace("\n", "<br>")
    markup = draft.html if not signature else f"{draft.html}\n<br><br>{SIGNATURE_SEPARATOR}<br>\n{signature}\n"
    return text, markup


def _text_charset(maintype: str, content: bytes) -> dict[str, str]:
    """A text file's charset when it is certain (UTF-8, which ASCII is too), so readers do not guess."""
    if maintype != "text":
        return {}
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return {"charset": "utf-8"}


def compose(draft: Draft, *, sender: Sender, now: datetime, thread: Thread | None = None) -> ComposedMessage:
    """The message to send, its local copy, and its envelope. Raises InvalidInput on bad input."""
    from_box = Mailbox(parse_address(sender.address, "sender address"), check_header_text(sender.display_name, "name"))
    to = parse_mailboxes(draft.to, "To address")
    cc = parse_mailboxes(draft.cc, "Cc address")
    bcc = parse_mailboxes(draft.bcc, "Bcc address")
    if not (to or cc or bcc):
        raise InvalidInput("Add at least one recipient.")
    check_header_text(draft.subject, "subject")
    for attachment in draft.attachments:
        check_header_text(attachment.filename, "attachment name")
        if "/" not in attachment.content_type:
            raise InvalidInput(f"{attachment.content_type!r} is not a content type.")

    message = EmailMessage(policy=POLICY)
    message["From"] = from_box.header()
    if to:
        message["To"] = [box.header() for box in to]
    if cc:
        message["Cc"] = [box.header() for box in cc]
    if draft.subject:
        message["Subject"] = draft.subject
    message["Date"] = now
    message_id = make_msgid(domain=from_box.address.rsplit("@", 1)[1])
    message["Message-ID"] = message_id
    if thread is not None and thread.message_id:
        message["In-Reply-To"] = thread.message_id
        message["References"] = " ".join((*thread.references, thread.message_id))
    text, markup = _bodies(draft, sender)
    message.set_content(text)
    if markup is not None:
        message.add_alternative(markup, subtype="html")
    for attachment in draft.attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        message.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
            params=_text_charset(maintype, attachment.content),
        )
    for part in message.walk():
        if part is not message:
            del part["MIME-Version"]  # EmailMessage adds it to every part; it belongs on the top only

    data = message.as_bytes(policy=POLICY)
    prefix = b""
    if bcc:
        holder = EmailMessage(policy=POLICY)
        holder["Bcc"] = [box.header() for box in bcc]
        prefix = POLICY.fold_binary("Bcc", holder["Bcc"])
    return ComposedMessage(
        stored=prefix + data,
        data_offset=len(prefix),
        envelope_from=from_box.address,
        recipients=_unique([box.address for box in (*to, *cc, *bcc)]),
        message_id=message_id,
    )
