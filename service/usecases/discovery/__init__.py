"""Set-up from the address (issue 18): find the mail servers of an email address.

`discover` tries, best first: the built-in provider table (no network), then —
all at once, within TRIBUTARY_DISCOVERY_TIMEOUT_SECONDS — the domain's two
autoconfig URLs (https://autoconfig.DOMAIN/mail/config-v1.1.xml, then
https://DOMAIN/.well-known/autoconfig/mail/config-v1.1.xml), its RFC 6186 SRV
records and its MX hosts; the first source in that order that gave servers is
the answer. A lookup that fails or runs out of time is noted in `tried` and
passed over: a dead resolver or web server never holds the form up longer than
the timeout.

Servers named by DNS (SRV targets, the MX guess) are offered only when their
name resolves to an address the outbound policy allows, and the ones left out
are counted, never named: what the server's resolver knows of an internal
network stays there. The servers an autoconfig document names are held to the
same rule (an address given as such is judged as it is); only servers of the
built-in table are offered as they are.

`discover_for_user` adds the user's domain: its outbound policy (the
autoconfig fetches obey it) and whether its OAuth2 sign-in is on, so a
provider that needs OAuth2 can be offered where the administrator set it up.
Nothing found is stored: it only fills the form the user checks and saves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import ssl
from collections.abc import Awaitable, Mapping
from typing import Any

import httpx
from sqlmodel import select

from service.config import Settings
from service.domain.discovery import Address, Discovery, FoundServer, Source, parse_address
from service.domain.discovery import providers as table
from service.domain.discovery.autoconfig import MAX_BYTES, UnsafeDocument, parse_autoconfig
from service.domain.discovery.srv import SERVICES, SrvRecord, mx_guess, srv_servers
from service.domain.oauth import usable_providers
from service.domain.outbound import OutboundPolicy, build_policy
from service.errors import ConnectionNotAllowed, ServerUnavailable
from service.persistence.database import Database
from service.persistence.tables import Domain, User
from service.protocols.discovery import DnsLookup, fetch_https, nameservers
from service.protocols.tls import client_context
from service.usecases.discovery.answer import to_dict
from service.usecases.discovery.limits import LOOKUPS_PER_MINUTE, check_lookups
from service.usecases.domains import outbound_policy

log = logging.getLogger(__name__)
MX_GUESSES = 5  # MX hosts tried for the guess, each resolved for the outbound policy


__all__ = ["LOOKUPS_PER_MINUTE", "discover", "discover_for_user", "global_policy", "offered", "to_dict"]


def _urls(domain: str, port: int) -> list[str]:
    at = "" if port == 443 else f":{port}"
    return [
        f"https://autoconfig.{domain}{at}/mail/config-v1.1.xml",
        f"https://{domain}{at}/.well-known/autoconfig/mail/config-v1.1.xml",
    ]


async def _autoconfig(
    address: Address, *, lookup: DnsLookup, policy: OutboundPolicy, tls: ssl.SSLContext, seconds: float,
    https_port: int, tried: list[str],
) -> list[FoundServer]:  # fmt: skip
    for url in _urls(address.domain, https_port):
        try:
            body = await fetch_https(url, lookup=lookup, policy=policy, tls=tls, seconds=seconds, max_bytes=MAX_BYTES)
        except (ConnectionNotAllowed, httpx.HTTPError, ServerUnavailable, ssl.SSLError, OSError):
            # One sentence whatever the reason (as service.protocols.outbound): a host the policy refuses
            # must not be told apart from one that is down, or the lookup would map the internal network.
            tried.append(f"{url}: could not be reached")
            continue
        if body is None:
            tried.append(f"{url}: no document")
            continue
        try:
            found = parse_autoconfig(
                body, email=address.email, local_part=address.local_part, domain=address.domain, where=url
            )
        except UnsafeDocument as exc:
            tried.append(f"{url}: not a usable autoconfig document ({exc})")
            continue
        # The servers the document names are anyone's words: held to the policy like SRV targets
        # (a large provider's own servers, from the built-in table, are known public names).
        known = [s for s in found if table.by_server(s.host) is not None]
        checked = await _reachable([s for s in found if s not in known], lookup=lookup, policy=policy, tried=tried)
        found = [s for s in found if s in known or s in checked]
        if found:
            tried.append(f"{url}: {len(found)} server(s)")
            return found
        tried.append(f"{url}: no usable server in the document")
    return []


async def _srv(address: Address, *, lookup: DnsLookup, policy: OutboundPolicy, tried: list[str]) -> list[FoundServer]:
    """The SRV servers whose targets the policy allows (checked here, alongside the autoconfig fetch,
    so a slow autoconfig host cannot use up the time the check needs)."""

    async def one(service: str) -> tuple[str, list[SrvRecord]]:
        try:
            return service, await lookup.srv(f"{service}.{address.domain}")
        except ServerUnavailable:
            tried.append(f"{service}.{address.domain}: no answer from DNS")
            return service, []

    records = dict(await asyncio.gather(*(one(service) for service, _, _ in SERVICES)))
    found = srv_servers(records, address.domain, email=address.email)
    tried.append(f"DNS SRV for {address.domain}: {len(found)} server(s)")
    return await _reachable(found, lookup=lookup, policy=policy, tried=tried)


async def _mx(
    address: Address, *, lookup: DnsLookup, policy: OutboundPolicy, tried: list[str], guess_tried: list[str]
) -> tuple[list[str], list[FoundServer]]:
    """The MX hosts, and the guess from them that the policy allows (its notes in `guess_tried`, used
    only when the guess is the answer). Both alongside the autoconfig fetch, as `_srv`."""
    try:
        hosts = await lookup.mx(address.domain)
    except ServerUnavailable:
        tried.append(f"MX for {address.domain}: no answer from DNS")
        return [], []
    tried.append(f"MX for {address.domain}: {len(hosts)} host(s)")
    if table.by_mx(hosts) is not None:
        return hosts, []
    for host in hosts[:MX_GUESSES]:  # most preferred first: one the policy refuses is passed over
        guessed = await _reachable(
            mx_guess([host], email=address.email), lookup=lookup, policy=policy, tried=guess_tried
        )
        if guessed:
            return hosts, guessed
    return hosts, []


async def _bounded(work: Awaitable[Any], deadline: float, empty: Any, what: str, tried: list[str]) -> Any:
    try:
        return await asyncio.wait_for(work, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
    except TimeoutError:
        tried.append(f"{what}: gave up after the time allowed")
        return empty


async def discover(
    *,
    email: str,
    settings: Settings,
    policy: OutboundPolicy,
    lookup: DnsLookup | None = None,
    tls: ssl.SSLContext | None = None,
    https_port: int = 443,
) -> Discovery:
    """What was found for `email` (InvalidInput for an address that is not one). `lookup`, `tls` and
    `https_port` are for tests: by default the configured resolvers, the system's CAs plus
    TRIBUTARY_EXTRA_CA_FILE, and port 443."""
    address = parse_address(email)
    provider = table.by_domain(address.domain)
    if provider is not None:
        servers = provider.found(Source.BUILT_IN, provider.label, address.email)
        return Discovery(
            address, servers, Source.BUILT_IN if servers else None, provider.label, provider.oauth2,
            provider.oauth2_required, advice=provider.advice, tried=(f"built-in table: {provider.label}",),
        )  # fmt: skip
    total = settings.discovery_timeout_seconds
    lookup = lookup or DnsLookup(nameservers(settings.discovery_nameservers), timeout=min(3.0, total / 2))
    tls = tls or client_context(verify=True, extra_ca_file=settings.extra_ca_file)
    tried: list[str] = ["built-in table: not listed"]
    deadline = asyncio.get_running_loop().time() + total
    auto_tried: list[str] = []
    guess_tried: list[str] = []
    # Every source, with the policy check of the names it gave, runs at once under one deadline:
    # nothing is left to do after it, so a tarpit on one source cannot starve the others.
    autoconfig, srv, (mx, guessed) = await asyncio.gather(
        _bounded(
            _autoconfig(address, lookup=lookup, policy=policy, tls=tls, seconds=total / 2, https_port=https_port,
                        tried=auto_tried),
            deadline, [], "autoconfig", auto_tried,
        ),
        _bounded(_srv(address, lookup=lookup, policy=policy, tried=tried), deadline, [], "DNS SRV", tried),
        _bounded(_mx(address, lookup=lookup, policy=policy, tried=tried, guess_tried=guess_tried),
                 deadline, ([], []), "MX", tried),
    )  # fmt: skip
    tried[1:1] = auto_tried
    if not autoconfig and not srv and table.by_mx(mx) is None:
        tried += guess_tried
        return Discovery(address, tuple(guessed), Source.MX_GUESS if guessed else None, tried=tuple(tried))
    return _choose(address, autoconfig, srv, mx, tuple(tried))


async def _reachable(
    servers: list[FoundServer], *, lookup: DnsLookup, policy: OutboundPolicy, tried: list[str]
) -> list[FoundServer]:
    """The servers whose host has an address the outbound policy allows: a host the user could not
    connect to is not offered, and DNS names that only lead to refused (internal) addresses are not
    shown. The names are resolved with the discovery resolver; one that does not resolve is left out."""
    hosts = {s.host for s in servers}

    async def allowed(host: str) -> tuple[str, bool]:
        try:
            addresses = [host] if _is_address(host) else await lookup.addresses(host)
            return host, any(policy.allows(ip, host) for ip in addresses)
        except (ServerUnavailable, ValueError):
            return host, False

    verdict = dict(await asyncio.gather(*(allowed(host) for host in hosts)))
    kept = [s for s in servers if verdict[s.host]]
    if len(kept) < len(servers):
        tried.append(f"{len(servers) - len(kept)} server(s) left out: they could not be reached")
    return kept


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _choose(
    address: Address, autoconfig: list[FoundServer], srv: list[FoundServer], mx: list[str], tried: tuple[str, ...]
) -> Discovery:
    """The first source, in order of trust, that found anything."""
    if autoconfig or srv:
        servers, source = (tuple(autoconfig), Source.AUTOCONFIG) if autoconfig else (tuple(srv), Source.DNS_SRV)
        known = next((p for s in servers if (p := table.by_server(s.host)) is not None), None)
        needs = known.oauth2_required if known else all(s.oauth2_only for s in servers)
        return Discovery(
            address, servers, source, known.label if known else None, known.oauth2 if known else None,
            needs, advice=known.advice if known else "", tried=tried,
        )  # fmt: skip
    recognised = table.by_mx(mx)
    if recognised is not None:
        provider, host = recognised
        servers = provider.found(Source.MX, host, address.email)
        return Discovery(
            address, servers, Source.MX if servers else None, provider.label, provider.oauth2,
            provider.oauth2_required, advice=provider.advice, tried=tried,
        )  # fmt: skip
    guessed = mx_guess(mx, email=address.email)
    return Discovery(address, tuple(guessed), Source.MX_GUESS if guessed else None, tried=tried)


def global_policy(settings: Settings) -> OutboundPolicy:
    """The policy without a user's domain: TRIBUTARY_OUTBOUND_ALLOW only (the CLI without --user)."""
    return build_policy(settings.outbound_allow, "")


async def discover_for_user(
    *,
    db: Database,
    settings: Settings,
    user_id: int,
    email: str,
    environ: Mapping[str, str] | None = None,
    lookup: DnsLookup | None = None,
    tls: ssl.SSLContext | None = None,
    https_port: int = 443,
) -> Discovery:
    """`discover` under the user's domain policy, with the OAuth2 sign-in the domain offers named.
    At most LOOKUPS_PER_MINUTE per user (TooManyAttempts): each look-up makes DNS queries and HTTPS
    requests on the user's behalf."""
    parse_address(email)  # a bad address is refused before the database is asked (and is not counted)
    check_lookups(db, user_id)
    async with db.read() as session:
        domain = (await session.exec(select(Domain).join(User).where(User.id == user_id))).one()
        policy, oauth_on = outbound_policy(settings, domain), domain.oauth_enabled
    found = await discover(email=email, settings=settings, policy=policy, lookup=lookup, tls=tls, https_port=https_port)
    return offered(found, settings=settings, environ=environ, enabled=oauth_on)


def offered(found: Discovery, *, settings: Settings, environ: Mapping[str, str] | None, enabled: bool) -> Discovery:
    """`found` with the label of its OAuth2 provider when this server offers that sign-in."""
    if not found.oauth2_provider or not enabled:
        return found
    providers, _problems = usable_providers(settings, os.environ if environ is None else environ)
    provider = providers.get(found.oauth2_provider)
    return dataclasses.replace(found, oauth2_label=provider.label) if provider else found
