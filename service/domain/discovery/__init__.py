"""Finding an email address's mail servers (issue 18): the values and rules, no I/O.

The answer for an address is a `Discovery`: the servers found (IMAP, POP3,
SMTP submission), each saying where it was found (`Source`), and whether the
provider signs in with OAuth2 only. Sources, best first:

1. the built-in table of large providers (`providers`);
2. the domain's autoconfig document, Thunderbird's format (`autoconfig`);
3. DNS SRV records, RFC 6186, ordered by RFC 8314's preference for implicit TLS (`srv`);
4. the domain's MX hosts: a provider recognised by its MX (Google Workspace,
   Microsoft 365 ...), else the MX host itself as a guess, marked as one.

Nothing found here is trusted beyond filling a form the user then checks and
saves: hosts and ports are held to the same rules as typed ones (check_host,
1..65535), and every later connection goes through the outbound policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from email_validator import EmailNotValidError, validate_email

from service.domain.values import Security
from service.errors import InvalidInput

PROTOCOLS = ("imap", "pop3", "smtp")
MAX_SERVERS = 32  # per source: each named server costs DNS queries when it is checked against the policy


class Source(StrEnum):
    """Where a server was found (the "source" of every result)."""

    BUILT_IN = "built-in"
    AUTOCONFIG = "autoconfig"
    DNS_SRV = "dns-srv"
    MX = "mx"  # a provider of the built-in table recognised by the domain's MX hosts
    MX_GUESS = "mx-guess"


SOURCE_WORDS = {
    Source.BUILT_IN: "Tributary's list of large providers",
    Source.AUTOCONFIG: "the domain's autoconfig document",
    Source.DNS_SRV: "the domain's DNS SRV records",
    Source.MX: "the domain's MX records",
    Source.MX_GUESS: "a guess from the domain's MX records",
}


@dataclass(frozen=True, slots=True)
class FoundServer:
    """One server for one protocol ("imap", "pop3" or "smtp"). `where` is the document URL, DNS name
    or MX host it came from; `username` is what to sign in as when the source said ("" unknown)."""

    protocol: str
    host: str
    port: int
    security: Security
    source: Source
    where: str
    username: str = ""
    oauth2_only: bool = False
    guess: bool = False


@dataclass(frozen=True, slots=True)
class Address:
    """An address checked for discovery: as typed (normalised), and its domain in ASCII (IDNA)."""

    email: str
    local_part: str
    domain: str  # ASCII, lower case: what DNS and URLs use
    unicode_domain: str


@dataclass(frozen=True, slots=True)
class Discovery:
    """What was found for an address. `servers` holds every result, best first per protocol;
    `best(protocol)` the one the form fills in."""

    address: Address
    servers: tuple[FoundServer, ...]
    source: Source | None
    provider: str | None = None  # a label of the built-in table ("Gmail")
    oauth2_provider: str | None = None  # a name of service.domain.oauth ("google", "microsoft")
    oauth2_required: bool = False
    oauth2_label: str = ""  # the configured provider's label ("Google"), "" when not offered here
    advice: str = ""  # the provider's words (an app password, Proton Mail Bridge ...)
    tried: tuple[str, ...] = field(default=())  # what was looked at and what came of it

    def best(self, protocol: str) -> FoundServer | None:
        return next((s for s in self.servers if s.protocol == protocol), None)

    @property
    def guess(self) -> bool:
        return self.source is Source.MX_GUESS

    @property
    def message(self) -> str:
        """One sentence for the form: where the servers were found, or that nothing was."""
        domain = self.address.unicode_domain
        if self.source is None:
            if self.advice:
                return self.advice
            return f"No mail servers were found for {domain}: enter them yourself."
        where = SOURCE_WORDS[self.source]
        if self.provider:
            where = f"{where} ({self.provider})"
        text = f"Found in {where}."
        if self.guess:
            text = f"A guess from {domain}'s MX records: check the server with Test Connection."
        return f"{text} {self.advice}".strip()


_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


def parse_address(value: str) -> Address:
    """The address to look up, or InvalidInput with one sentence. Control characters (CR, LF, NUL ...)
    are refused before anything else: the domain goes into DNS names, URLs and the form."""
    text = value.strip()
    if not text:
        raise InvalidInput("Enter an email address to look up.")
    if any(c in _CONTROL for c in text):
        raise InvalidInput("An email address cannot contain line breaks or control characters.")
    if len(text) > 320:
        raise InvalidInput("This email address is too long.")
    try:
        valid = validate_email(text, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise InvalidInput(f"{text!r} is not a valid email address: {exc}") from exc
    return Address(
        email=valid.normalized,
        local_part=valid.local_part,
        domain=valid.ascii_domain.lower(),
        unicode_domain=valid.domain.lower(),
    )
