"""The network side of finding an address's mail servers: DNS (SRV, MX, A/AAAA) and HTTPS GETs of
autoconfig documents.

DNS goes to the resolvers the administrator set (TRIBUTARY_DISCOVERY_NAMESERVERS,
else the system's) with dnspython's asyncio resolver; each query has a short
lifetime. A missing name or record is an empty answer; a resolver that does
not answer in time raises ServerUnavailable, which the use case reports and
moves past.

HTTPS only, and under the outbound policy like every other connection
(service/protocols/outbound.py): the autoconfig host is resolved once with the
same resolver, each address is judged by the domain's policy, and the
connection goes to exactly a checked address, with Host, SNI and the
certificate check for the name. Redirects are not followed, the environment's
proxies are ignored, and the body is read to MAX_BYTES at most.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import httpx

from service.domain.discovery.srv import SrvRecord
from service.domain.outbound import OutboundPolicy
from service.errors import ServerUnavailable
from service.protocols.outbound import allowed_targets

_EMPTY = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.YXDOMAIN, dns.resolver.NoRootSOA)
_DNS_FAILED = "The DNS resolver did not answer in time."


def nameservers(setting: str) -> list[tuple[str, int]]:
    """TRIBUTARY_DISCOVERY_NAMESERVERS as (address, port) pairs ("[::1]:53", "127.0.0.1:5353", "9.9.9.9")."""
    pairs: list[tuple[str, int]] = []
    for item in (i.strip() for i in setting.split(",")):
        if not item:
            continue
        if item.startswith("["):
            address, _, port = item[1:].partition("]:")
            pairs.append((address.rstrip("]"), int(port or 53)))
        elif item.count(":") == 1:
            address, port = item.split(":")
            pairs.append((address, int(port)))
        else:
            pairs.append((item, 53))
    return pairs


@dataclass
class DnsLookup:
    """DNS lookups with one resolver and one lifetime per query."""

    servers: list[tuple[str, int]] = field(default_factory=list)
    timeout: float = 3.0

    def __post_init__(self) -> None:
        self._resolver: dns.asyncresolver.Resolver | None = None

    def _get(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            try:
                resolver = dns.asyncresolver.Resolver(configure=not self.servers)
            except dns.resolver.NoResolverConfiguration as exc:
                raise ServerUnavailable("No DNS resolver is configured on this server.") from exc
            if self.servers:
                resolver.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in self.servers]
            resolver.lifetime = self.timeout
            resolver.timeout = self.timeout
            self._resolver = resolver
        return self._resolver

    async def _query(self, name: str, rdtype: str) -> list[Any]:
        try:
            answer = await self._get().resolve(name.rstrip(".") + ".", rdtype, search=False)
        except _EMPTY:
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as exc:
            raise ServerUnavailable(_DNS_FAILED) from exc
        except dns.exception.DNSException as exc:  # a malformed answer, a name too long ...
            raise ServerUnavailable(_DNS_FAILED) from exc
        return list(answer)

    async def srv(self, name: str) -> list[SrvRecord]:
        return [
            SrvRecord(int(r.priority), int(r.weight), int(r.port), r.target.to_text(omit_final_dot=True))
            for r in await self._query(name, "SRV")
        ]

    async def mx(self, domain: str) -> list[str]:
        """The MX host names, most preferred first; a null MX (RFC 7505, ".") is left out."""
        records = sorted(await self._query(domain, "MX"), key=lambda r: int(r.preference))
        hosts = [r.exchange.to_text(omit_final_dot=True) for r in records]
        return [h for h in hosts if h and h != "."]

    async def addresses(self, host: str) -> list[str]:
        """The host's IPv4 and IPv6 addresses. Some DNS servers fail AAAA queries: a query that fails
        is passed over when the other type found addresses (ServerUnavailable only when none was found)."""
        found: list[str] = []
        failure: ServerUnavailable | None = None
        for rdtype in ("A", "AAAA"):
            try:
                found += [r.address for r in await self._query(host, rdtype)]
            except ServerUnavailable as exc:
                failure = exc
        if failure is not None and not found:
            raise failure
        return found


class _PinnedTransport(httpx.AsyncBaseTransport):
    """Connects only to addresses the policy allows, resolved through `lookup`; SNI and Host keep the name."""

    def __init__(self, lookup: DnsLookup, policy: OutboundPolicy, tls: ssl.SSLContext) -> None:
        self._lookup, self._policy = lookup, policy
        self._pool = httpx.AsyncHTTPTransport(verify=tls, retries=0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or 443
        infos = []
        for ip in await self._lookup.addresses(host):
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            infos.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port)))
        if not infos:
            raise httpx.ConnectError(f"{host} could not be resolved", request=request)
        error: httpx.ConnectError | None = None
        for target in allowed_targets(infos, host, self._policy):
            pinned = httpx.Request(
                request.method,
                request.url.copy_with(host=target.ip),
                headers=request.headers,
                stream=request.stream,
                extensions={**request.extensions, "sni_hostname": host},
            )
            try:
                return await self._pool.handle_async_request(pinned)
            except httpx.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def aclose(self) -> None:
        await self._pool.aclose()


async def fetch_https(
    url: str, *, lookup: DnsLookup, policy: OutboundPolicy, tls: ssl.SSLContext, seconds: float, max_bytes: int
) -> bytes | None:
    """The body of a 200 answer to GET `url` (https only), None for any other answer or a body over
    `max_bytes`. Connection and TLS failures raise httpx.HTTPError or ServerUnavailable; a refused
    address raises ConnectionNotAllowed."""
    if not url.startswith("https://"):
        raise ValueError("autoconfig documents are fetched over HTTPS only")
    transport = _PinnedTransport(lookup, policy, tls)
    async with (
        httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(seconds), follow_redirects=False, trust_env=False
        ) as client,
        client.stream(
            "GET", url, headers={"Accept": "application/xml, text/xml", "Accept-Encoding": "identity"}
        ) as response,
    ):
        if response.status_code != 200:
            return None
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            return None
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > max_bytes:
                return None
        return bytes(body)
