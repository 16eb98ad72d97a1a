"""HTTP to OAuth2 providers under the outbound connection policy, and authlib's client.

Discovery, token and userinfo requests go out like mail-server connections do
(service/protocols/outbound.py): the host name is resolved once, every address
is judged by the domain's policy (TRIBUTARY_OUTBOUND_ALLOW plus the domain's
allowed hosts), and the connection is made to exactly a checked address. The
request keeps its Host header, and TLS its server name (SNI) and certificate
check, for the name, never the address. Redirects are not followed.

Each host name gets its own connection pool: httpcore pools connections by
(scheme, address, port) and ignores the TLS server name, so with one pool a
connection verified for one name would carry the requests (and tokens) meant
for another name that shares its address.

authlib 1.9 prefers the "httpx2" package and warns once, on import, when it
falls back to httpx; this is the one product module that imports its client.
"""

from __future__ import annotations

import socket
import ssl
import warnings

import httpx
from authlib.deprecate import AuthlibDeprecationWarning

from service.config import Settings
from service.domain.oauth import OAuthProvider
from service.domain.outbound import OutboundPolicy
from service.protocols.outbound import resolve_async
from service.protocols.tls import client_context

with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client
    from authlib.integrations.httpx_client import OAuthError as AuthlibOAuthError

__all__ = ["AsyncOAuth2Client", "AuthlibOAuthError", "PolicyTransport", "http_client", "oauth_client"]

TIMEOUT = httpx.Timeout(15.0)


class PolicyTransport(httpx.AsyncBaseTransport):
    """An httpx transport that connects only to addresses the outbound policy allows.

    A refused host raises service.errors.ConnectionNotAllowed (the same sentence as
    for mail servers); a name that does not resolve raises httpx.ConnectError.
    """

    def __init__(self, policy: OutboundPolicy, *, tls: ssl.SSLContext) -> None:
        self._policy = policy
        self._tls = tls
        self._pools: dict[str, httpx.AsyncHTTPTransport] = {}  # by host name (see the module docstring)

    def _pool(self, host: str) -> httpx.AsyncHTTPTransport:
        pool = self._pools.get(host)
        if pool is None:
            pool = self._pools[host] = httpx.AsyncHTTPTransport(verify=self._tls, retries=0)
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            targets = await resolve_async(host, port, self._policy)
        except socket.gaierror as exc:
            raise httpx.ConnectError(f"{host} could not be resolved", request=request) from exc
        error: httpx.ConnectError | None = None
        for target in targets:
            extensions = dict(request.extensions)
            if request.url.scheme == "https":
                extensions["sni_hostname"] = host
            pinned = httpx.Request(
                request.method,
                request.url.copy_with(host=target.ip),
                headers=request.headers,  # Host: stays the name
                stream=request.stream,
                extensions=extensions,
            )
            try:
                return await self._pool(host).handle_async_request(pinned)
            except httpx.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


def _transport(settings: Settings, policy: OutboundPolicy) -> PolicyTransport:
    return PolicyTransport(policy, tls=client_context(verify=True, extra_ca_file=settings.extra_ca_file))


def http_client(settings: Settings, policy: OutboundPolicy) -> httpx.AsyncClient:
    """A plain client (discovery documents) under the policy."""
    return httpx.AsyncClient(
        transport=_transport(settings, policy), timeout=TIMEOUT, follow_redirects=False, trust_env=False
    )


def oauth_client(settings: Settings, policy: OutboundPolicy, provider: OAuthProvider) -> AsyncOAuth2Client:
    """authlib's OAuth2 client for `provider`: PKCE S256, the redirect URI {PUBLIC_URL}/oauth/callback,
    client_secret_basic (RFC 6749 2.3.1; "none" for a public client without a secret). trust_env is off:
    a proxy from the environment would bypass the policy transport.

    The provider's scope goes with every refresh (RFC 6749 6 makes it optional, but Microsoft's v2
    endpoint answers a refresh without it with a token for a different resource, or refuses it)."""
    return AsyncOAuth2Client(
        client_id=provider.client_id,
        scope=provider.scope,
        client_secret=provider.client_secret or None,
        token_endpoint_auth_method="client_secret_basic" if provider.client_secret else "none",
        redirect_uri=settings.oauth_redirect_uri,
        code_challenge_method="S256",
        transport=_transport(settings, policy),
        timeout=TIMEOUT,
        follow_redirects=False,
        trust_env=False,
    )
