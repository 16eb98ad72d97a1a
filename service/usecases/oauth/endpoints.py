"""A provider's endpoints: configured ones, or OpenID Connect Discovery 1.0 for an issuer.

`{issuer}/.well-known/openid-configuration` is fetched once per process and
cached (the endpoints of a provider do not move while a process runs); a failed
fetch is not cached. The document must name the same issuer (Discovery 4.3),
so a document from somewhere else cannot redirect the token requests, and the
endpoints it names are held to the https-only rule of configured ones
(`endpoint_url_allowed`): a plain-http token endpoint would carry the client
secret and the tokens in clear.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from service.config import Settings
from service.domain.oauth import OAuthProvider, endpoint_url_allowed
from service.domain.outbound import OutboundPolicy
from service.errors import OAuthFailed, ServerUnavailable
from service.usecases.oauth.http import http_client

DISCOVERY_PATH = "/.well-known/openid-configuration"
_discovered: dict[str, dict[str, object]] = {}


@dataclass(frozen=True, slots=True)
class Endpoints:
    authorize_url: str
    token_url: str
    userinfo_url: str | None


def forget_discovery() -> None:
    """Drop the cached discovery documents (tests; a changed configuration)."""
    _discovered.clear()


async def endpoints_for(provider: OAuthProvider, *, settings: Settings, policy: OutboundPolicy) -> Endpoints:
    """The provider's endpoints; explicit URLs win over discovered ones.

    Raises ServerUnavailable when the discovery document cannot be fetched,
    OAuthFailed when it is unusable, ConnectionNotAllowed when the policy refuses the issuer.
    """
    metadata: dict[str, object] = {}
    if provider.issuer and not (provider.authorize_url and provider.token_url):
        metadata = await _discover(provider, settings=settings, policy=policy)

    def pick(explicit: str | None, key: str) -> str | None:
        found = metadata.get(key)
        return explicit or (found if isinstance(found, str) and found else None)

    authorize_url = pick(provider.authorize_url, "authorization_endpoint")
    token_url = pick(provider.token_url, "token_endpoint")
    if authorize_url is None or token_url is None:
        raise OAuthFailed(f"{provider.label}'s sign-in is not set up completely: its endpoints are unknown.")
    return Endpoints(authorize_url, token_url, pick(provider.userinfo_url, "userinfo_endpoint"))


async def _discover(provider: OAuthProvider, *, settings: Settings, policy: OutboundPolicy) -> dict[str, object]:
    assert provider.issuer is not None
    cached = _discovered.get(provider.issuer)
    if cached is not None:
        return cached
    unreachable = f"{provider.label} could not be reached; try again in a few minutes."
    try:
        async with http_client(settings, policy) as http:
            response = await http.get(provider.issuer + DISCOVERY_PATH, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise ServerUnavailable(unreachable) from exc
    if response.status_code >= 500:
        raise ServerUnavailable(unreachable)
    try:
        document = response.json() if response.status_code == 200 else None
    except ValueError:
        document = None
    if not isinstance(document, dict) or str(document.get("issuer", "")).rstrip("/") != provider.issuer:
        raise OAuthFailed(f"{provider.label}'s sign-in is not set up correctly: its discovery document is unusable.")
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint"):
        value = document.get(key)
        if value is not None and not (isinstance(value, str) and endpoint_url_allowed(value)):
            raise OAuthFailed(
                f"{provider.label}'s sign-in is not set up correctly: its discovery document names an {key} "
                "that is not an https:// address."
            )
    _discovered[provider.issuer] = document
    return document
