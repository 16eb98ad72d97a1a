"""Servers from DNS SRV records (RFC 6186) and the MX guess.

RFC 6186 names one service per protocol and TLS mode; RFC 8314 section 3.3
asks clients to prefer implicit TLS, so the implicit-TLS services come first:

    _imaps._tcp       IMAP, implicit TLS          _imap._tcp        IMAP, STARTTLS
    _pop3s._tcp       POP3, implicit TLS
    _submissions._tcp SMTP submission, implicit TLS  (RFC 8314)
    _submission._tcp  SMTP submission, STARTTLS

Within one service the records are used by priority (lowest first), then
weight (highest first; RFC 2782's random choice is not needed to fill a form).
A target of "." says the service is not offered (RFC 2782, RFC 6186 section 3.4).
At most MAX_SERVERS are kept, as each is then resolved for the outbound policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service.domain.discovery import MAX_SERVERS, FoundServer, Source
from service.domain.smtp_accounts import check_host
from service.domain.values import Security
from service.errors import InvalidInput

SERVICES: tuple[tuple[str, str, Security], ...] = (
    ("_imaps._tcp", "imap", Security.SSL),
    ("_imap._tcp", "imap", Security.STARTTLS),
    ("_pop3s._tcp", "pop3", Security.SSL),
    ("_submissions._tcp", "smtp", Security.SSL),
    ("_submission._tcp", "smtp", Security.STARTTLS),
)


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str  # "" or "." for "not offered"


def srv_servers(records: Mapping[str, list[SrvRecord]], domain: str, *, email: str) -> list[FoundServer]:
    """The servers the records name, service by service in SERVICES order (implicit TLS first)."""
    found: list[FoundServer] = []
    for service, protocol, security in SERVICES:
        name = f"{service}.{domain}"
        for record in sorted(records.get(service, []), key=lambda r: (r.priority, -r.weight)):
            target = record.target.rstrip(".")
            if not target or not 1 <= record.port <= 65535:
                continue
            try:
                host = check_host(target)
            except InvalidInput:
                continue
            server = FoundServer(protocol, host, record.port, security, Source.DNS_SRV, name, username=email)
            if server not in found:
                found.append(server)
            if len(found) == MAX_SERVERS:  # a flood of records must not become a flood of queries
                return found
    return found


def mx_guess(hosts: list[str], *, email: str) -> list[FoundServer]:
    """The first MX host as IMAP, POP3 and SMTP server with implicit TLS: a guess (a small host often
    receives and serves mail on one machine), marked as one."""
    for mx in hosts:
        try:
            host = check_host(mx.rstrip("."))
        except InvalidInput:
            continue
        return [
            FoundServer(protocol, host, port, Security.SSL, Source.MX_GUESS, mx.rstrip("."), email, guess=True)
            for protocol, port in (("imap", 993), ("pop3", 995), ("smtp", 465))
        ]
    return []
