"""Resolving a server's name once, keeping only the addresses the outbound policy allows,
and connecting to exactly those.

Every adapter goes through here, so the address checked is the address connected
to: there is no second DNS lookup between the check and the connect (which a
name with a short TTL could answer differently). The host name stays with the
adapter for TLS: SNI and certificate verification use it, never the address.

getaddrinfo normalises the odd spellings of an address (2130706433, 0x7f000001,
0177.0.0.1, ::ffff:127.0.0.1) before the policy sees it. When no address is
allowed the error is the same sentence whatever the reason, so a user cannot
map the internal network through it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.domain.outbound import NOT_ALLOWED, OutboundPolicy
from service.errors import ConnectionNotAllowed


@dataclass(frozen=True, slots=True)
class Target:
    """One address to connect to, as getaddrinfo gave it."""

    family: socket.AddressFamily
    kind: socket.SocketKind
    proto: int
    sockaddr: tuple[Any, ...]

    @property
    def ip(self) -> str:
        return str(self.sockaddr[0])


def allowed_targets(infos: Sequence[tuple[Any, ...]], host: str, policy: OutboundPolicy | None) -> list[Target]:
    """The getaddrinfo results the policy allows, in order, without duplicates; ConnectionNotAllowed if none.
    `policy` None means unchecked (adapter tests only: every use case passes one)."""
    targets: list[Target] = []
    for family, kind, proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        if policy is not None and not policy.allows(str(sockaddr[0]), host):
            continue
        target = Target(family, kind, proto, tuple(sockaddr))
        if target not in targets:
            targets.append(target)
    if not targets:
        raise ConnectionNotAllowed(NOT_ALLOWED)
    return targets


def resolve(host: str, port: int, policy: OutboundPolicy) -> list[Target]:
    """Blocking resolution (for the imaplib and poplib threads). socket.gaierror passes through."""
    return allowed_targets(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), host, policy)


async def resolve_async(host: str, port: int, policy: OutboundPolicy | None) -> list[Target]:
    """The same, on the event loop (aiosmtplib)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return allowed_targets(infos, host, policy)


def connect(targets: Sequence[Target], timeout: float | None) -> socket.socket:
    """A blocking TCP connection to the first target that answers (like socket.create_connection,
    but only ever to these checked addresses)."""
    error: OSError | None = None
    for target in targets:
        sock = socket.socket(target.family, target.kind, target.proto)
        try:
            sock.settimeout(timeout)
            sock.connect(target.sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error or OSError("no address to connect to")
