"""The outbound-connection policy: which addresses retrieval tasks and SMTP accounts may reach.

Pure rules, no I/O. The adapters resolve a host name once, ask `allows()` about
each resulting address, and connect only to an address it accepts.

By default every address that is not ordinary public unicast is refused:
private (RFC 1918, fc00::/7), loopback, link-local, CGNAT (RFC 6598),
multicast, unspecified, documentation, benchmarking and reserved ranges, and
the cloud metadata endpoints. An IPv6 address that carries an IPv4 address
(IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible, NAT64 64:ff9b::/96, 6to4) is
judged by the IPv4 address inside it. Decimal, octal and hex spellings
(2130706433, 0177.0.0.1, 0x7f000001) are normalised by getaddrinfo before the
check, so they meet the same rules.

Exceptions come from the administrator: networks and single addresses, and host
names (exact, or "*.example.com" for its subdomains) whose addresses are then
all allowed. A metadata endpoint is only ever allowed by an entry naming that
exact address, never by a network or host name that happens to cover it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from service.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NOT_ALLOWED = "Connections to this server are not allowed by your administrator's policy."

_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # CGNAT, RFC 6598 (Alibaba's metadata 100.100.100.200 too)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local (AWS, GCP, Azure metadata 169.254.169.254)
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments (Oracle metadata 192.0.0.192)
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and broadcast
    )
)
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback, IPv4-compatible (deprecated)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, ...)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "fc00::/7",  # unique local (AWS metadata fd00:ec2::254)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "169.254.169.123", "100.100.100.200", "192.0.0.192", "fd00:ec2::254")
)


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def canonical(address: str | IPAddress) -> IPAddress:
    """The address to judge: scope ids dropped, IPv4 inside IPv6 unwrapped."""
    if isinstance(address, str):
        address = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_v4(address)
        if inner is not None:
            return inner
        if address.scope_id:
            return ipaddress.IPv6Address(address.compressed.split("%", 1)[0])
    return address


def is_public(address: str | IPAddress) -> bool:
    """Whether the default policy lets a connection reach this address."""
    ip = canonical(address)
    if ip in METADATA:
        return False
    if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in network for network in _BLOCKED_V4)
    if ip not in _GLOBAL_UNICAST_V6 and ip not in _NAT64:
        return False
    return not any(ip in network for network in _BLOCKED_V6)


def normalise_host(host: str) -> str:
    """A host name as the policy compares it: lower case, no final dot, IDN in punycode."""
    name = host.strip().rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The exceptions to the default refusal: networks, exact host names and "*." suffixes."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # "*.example.com" kept as ".example.com"

    @classmethod
    def parse(cls, entries: Iterable[str], *, source: str = "The allow list") -> OutboundPolicy:
        """Entries (blank ones and "#" comments skipped) as a policy, or InvalidInput naming the bad one."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        suffixes: list[str] = []
        for raw in entries:
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                if "/" in entry:
                    raise InvalidInput(f"{source} has {entry!r}, which is not a valid network.") from None
            name = normalise_host(entry[2:] if entry.startswith("*.") else entry)
            if not name or any(c.isspace() or c in "*/@\0" for c in name):
                raise InvalidInput(f"{source} has {entry!r}, which is not a host name, address or network.")
            if entry.startswith("*."):
                suffixes.append("." + name)
            else:
                hosts.add(name)
        return cls(tuple(networks), frozenset(hosts), tuple(suffixes))

    def merged(self, other: OutboundPolicy) -> OutboundPolicy:
        return OutboundPolicy(self.networks + other.networks, self.hosts | other.hosts, self.suffixes + other.suffixes)

    def names(self, host: str) -> bool:
        """Whether the administrator allowed this host name (exactly or by "*." wildcard)."""
        name = normalise_host(host)
        return name in self.hosts or any(name.endswith(suffix) for suffix in self.suffixes)

    def allows(self, address: str | IPAddress, host: str) -> bool:
        """Whether a connection to `address`, resolved from `host`, may be made."""
        ip = canonical(address)
        if ip in METADATA:  # only an entry for exactly this address lets it through
            return any(network.num_addresses == 1 and ip in network for network in self._networks_for(ip))
        if is_public(ip) or self.names(host):
            return True
        return any(ip in network for network in self._networks_for(ip))

    def _networks_for(self, ip: IPAddress) -> list[IPNetwork]:
        return [n for n in self.networks if n.version == ip.version]


STRICT = OutboundPolicy()


def build_policy(global_allow: str, domain_allow: str) -> OutboundPolicy:
    """The policy for one domain: TRIBUTARY_OUTBOUND_ALLOW (comma-separated) plus the domain's
    allowed hosts (one entry per line)."""
    setting = OutboundPolicy.parse(global_allow.split(","), source="TRIBUTARY_OUTBOUND_ALLOW")
    return setting.merged(OutboundPolicy.parse(domain_allow.splitlines(), source="The domain's allowed hosts"))
