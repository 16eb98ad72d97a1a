"""The built-in table of large providers: their servers, and which need OAuth2 sign-in.

Checked first, by the address's domain; a custom domain hosted by one of them
(Google Workspace, Microsoft 365, Zoho ...) is recognised later by its MX
hosts. Servers follow each provider's published settings, implicit TLS where
offered (RFC 8314 section 3.3). Proton Mail is listed with no servers: it is
reached only through Proton Mail Bridge on the user's own computer, whose local
ports are not guessed.

`oauth2` names a provider of service.domain.oauth ("google", "microsoft"), so
the form can offer its sign-in when the administrator configured it.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.discovery import FoundServer, Source
from service.domain.oauth import GOOGLE, MICROSOFT
from service.domain.values import Security

SSL, STARTTLS = Security.SSL, Security.STARTTLS


@dataclass(frozen=True, slots=True)
class Provider:
    label: str
    domains: tuple[str, ...]
    servers: tuple[tuple[str, str, int, Security], ...]  # (protocol, host, port, security)
    mx_suffixes: tuple[str, ...] = ()
    host_suffixes: tuple[str, ...] = ()  # server names that show the provider (autoconfig, SRV)
    oauth2: str | None = None
    oauth2_required: bool = False
    advice: str = ""

    def found(self, source: Source, where: str, email: str) -> tuple[FoundServer, ...]:
        return tuple(
            FoundServer(protocol, host, port, security, source, where, username=email)
            for protocol, host, port, security in self.servers
        )


PROVIDERS: tuple[Provider, ...] = (
    Provider(
        "Gmail",
        ("gmail.com", "googlemail.com"),
        (
            ("imap", "imap.gmail.com", 993, SSL),
            ("pop3", "pop.gmail.com", 995, SSL),
            ("smtp", "smtp.gmail.com", 465, SSL),
        ),
        mx_suffixes=("google.com", "googlemail.com"),
        host_suffixes=("gmail.com", "googlemail.com"),
        oauth2=GOOGLE,
        oauth2_required=True,
        advice="Google takes sign-in with Google, or an app password made in your Google Account.",
    ),
    Provider(
        "Outlook.com / Microsoft 365",
        (
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "passport.com",
            "outlook.de",
            "hotmail.de",
            "hotmail.co.uk",
            "hotmail.fr",
            "live.de",
            "live.co.uk",
            "live.fr",
            "outlook.fr",
            "outlook.co.uk",
        ),
        (
            ("imap", "outlook.office365.com", 993, SSL),
            ("pop3", "outlook.office365.com", 995, SSL),
            ("smtp", "smtp.office365.com", 587, STARTTLS),
        ),
        mx_suffixes=("mail.protection.outlook.com", "olc.protection.outlook.com"),
        host_suffixes=("office365.com", "outlook.com"),
        oauth2=MICROSOFT,
        oauth2_required=True,
        advice="Microsoft turned off password sign-in for IMAP, POP and SMTP: sign in with Microsoft.",
    ),
    Provider(
        "Yahoo",
        ("yahoo.com", "ymail.com", "rocketmail.com", "yahoo.co.uk", "yahoo.de", "yahoo.fr", "yahoo.co.jp"),
        (
            ("imap", "imap.mail.yahoo.com", 993, SSL),
            ("pop3", "pop.mail.yahoo.com", 995, SSL),
            ("smtp", "smtp.mail.yahoo.com", 465, SSL),
        ),
        mx_suffixes=("yahoodns.net",),
        host_suffixes=("mail.yahoo.com",),
        advice="Yahoo needs an app password (Account security, Generate app password).",
    ),
    Provider(
        "iCloud",
        ("icloud.com", "me.com", "mac.com"),
        (("imap", "imap.mail.me.com", 993, SSL), ("smtp", "smtp.mail.me.com", 587, STARTTLS)),
        mx_suffixes=("mail.icloud.com",),
        host_suffixes=("mail.me.com",),
        advice="iCloud needs an app-specific password (account.apple.com) and offers no POP3.",
    ),
    Provider(
        "GMX",
        ("gmx.de", "gmx.net", "gmx.at", "gmx.ch"),
        (("imap", "imap.gmx.net", 993, SSL), ("pop3", "pop.gmx.net", 995, SSL), ("smtp", "mail.gmx.net", 465, SSL)),
        mx_suffixes=("gmx.net",),
        host_suffixes=("gmx.net",),
        advice="GMX lets IMAP and POP3 in once they are turned on in its web mail settings.",
    ),
    Provider(
        "GMX",
        ("gmx.com", "gmx.us", "gmx.co.uk", "gmx.fr"),
        (("imap", "imap.gmx.com", 993, SSL), ("pop3", "pop.gmx.com", 995, SSL), ("smtp", "mail.gmx.com", 465, SSL)),
        mx_suffixes=("gmx.com",),
        host_suffixes=("gmx.com",),
        advice="GMX lets IMAP and POP3 in once they are turned on in its web mail settings.",
    ),
    Provider(
        "WEB.DE",
        ("web.de",),
        (("imap", "imap.web.de", 993, SSL), ("pop3", "pop3.web.de", 995, SSL), ("smtp", "smtp.web.de", 587, STARTTLS)),
        mx_suffixes=("web.de",),
        host_suffixes=("web.de",),
        advice="WEB.DE lets IMAP and POP3 in once they are turned on in its web mail settings.",
    ),
    Provider(
        "Fastmail",
        ("fastmail.com", "fastmail.fm", "fastmail.net", "fastmail.org", "fastmail.to", "messagingengine.com"),
        (
            ("imap", "imap.fastmail.com", 993, SSL),
            ("pop3", "pop.fastmail.com", 995, SSL),
            ("smtp", "smtp.fastmail.com", 465, SSL),
        ),
        mx_suffixes=("messagingengine.com",),
        host_suffixes=("fastmail.com",),
        advice="Fastmail needs an app password (Settings, Privacy & Security).",
    ),
    Provider(
        "Zoho Mail",
        ("zoho.com", "zohomail.com"),
        (("imap", "imap.zoho.com", 993, SSL), ("pop3", "pop.zoho.com", 995, SSL), ("smtp", "smtp.zoho.com", 465, SSL)),
        mx_suffixes=("zoho.com",),
        host_suffixes=("zoho.com",),
        advice="Zoho Mail lets IMAP and POP3 in once they are turned on in its settings.",
    ),
    Provider(
        "Zoho Mail (EU)",
        ("zoho.eu", "zohomail.eu"),
        (("imap", "imap.zoho.eu", 993, SSL), ("pop3", "pop.zoho.eu", 995, SSL), ("smtp", "smtp.zoho.eu", 465, SSL)),
        mx_suffixes=("zoho.eu",),
        host_suffixes=("zoho.eu",),
    ),
    Provider(
        "mailbox.org",
        ("mailbox.org",),
        (
            ("imap", "imap.mailbox.org", 993, SSL),
            ("pop3", "pop3.mailbox.org", 995, SSL),
            ("smtp", "smtp.mailbox.org", 465, SSL),
        ),
        mx_suffixes=("mailbox.org",),
        host_suffixes=("mailbox.org",),
    ),
    Provider(
        "Proton Mail",
        ("proton.me", "protonmail.com", "protonmail.ch", "pm.me"),
        (),
        mx_suffixes=("protonmail.ch",),
        advice="Proton Mail is reached only through Proton Mail Bridge on your own computer: "
        "enter the server and ports that Bridge shows.",
    ),
)


def _matches(name: str, suffixes: tuple[str, ...]) -> bool:
    name = name.rstrip(".").lower()
    return any(name == s or name.endswith("." + s) for s in suffixes)


def by_domain(domain: str) -> Provider | None:
    """The provider whose own domain this is (exactly: a subdomain of gmail.com is not Gmail)."""
    name = domain.rstrip(".").lower()
    return next((p for p in PROVIDERS if name in p.domains), None)


def by_mx(hosts: list[str]) -> tuple[Provider, str] | None:
    """The provider that receives the domain's mail, by its MX host names, and the host that showed it."""
    for host in hosts:
        for provider in PROVIDERS:
            if provider.mx_suffixes and _matches(host, provider.mx_suffixes):
                return provider, host
    return None


def by_server(host: str) -> Provider | None:
    """The provider a server name belongs to (to flag OAuth2 for servers found elsewhere)."""
    return next((p for p in PROVIDERS if p.host_suffixes and _matches(host, p.host_suffixes)), None)
