"""A valid access token for a task or account, refreshed when needed (RFC 6749 section 6).

`access_token_for` is what the retrieval runner, the sender and Test Connection
call before signing in with XOAUTH2 / OAUTHBEARER. It returns the stored
access token while it has more than a minute left; otherwise (or with
`force_refresh`, after a mail server refused the token: call it once, then
retry the sign-in once) it asks the token endpoint for a new one with the
refresh token.

- A provider that rotates refresh tokens returns a new one with each refresh;
  it is stored in the same transaction as the new access token and its expiry.
- `invalid_grant` (consent revoked, password changed, refresh token expired)
  sets `oauth_status = reconnect`, `needs_action` and `last_error`, and raises
  NeedsReconnect; later calls raise it at once, without asking the provider
  again, until the user runs Reconnect. If another caller refreshed (and so
  rotated) the token meanwhile, its fresh token is used instead.
- A network failure, a 5xx (or 429) answer or one that is not JSON (a proxy's
  page) is retried with backoff and then raises ServerUnavailable, leaving the
  status as it was: that is not "needs action".
- The provider refusing Tributary itself (`invalid_client`: Microsoft client
  secrets expire; any other RFC 6749 5.2 error but the ones above) or an
  unusable discovery document raises ProviderMisconfigured: the administrator
  must act, the user's sign-in is not at fault.

No database session is held across the token request; tokens are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from service.config import Settings
from service.domain.oauth import AuthKind, CredentialStatus, OAuthProvider, require_tls
from service.domain.outbound import OutboundPolicy
from service.errors import (
    InvalidInput,
    NeedsReconnect,
    OAuthFailed,
    ProviderMisconfigured,
    ServerUnavailable,
    TlsFailure,
)
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.types import utcnow
from service.usecases.domains import check_oauth_enabled
from service.usecases.oauth.endpoints import endpoints_for
from service.usecases.oauth.flow import expiry
from service.usecases.oauth.http import AuthlibOAuthError, oauth_client
from service.usecases.oauth.targets import Target, load_target, policy_for_user, provider_named, target_kind

log = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(seconds=60)
RETRY_DELAYS = (1.0, 4.0)  # seconds before the 2nd and 3rd attempt
_RECONNECT_ERRORS = frozenset({"invalid_grant", "invalid_scope"})
_RETRY_ERRORS = frozenset({"server_error", "temporarily_unavailable"})
_TELL_ADMIN = "the provider is misconfigured on this server, tell your administrator."

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

# Per-target refresh locks of this process; an entry lives while a caller holds or awaits it (or while a
# traceback still refers to it). An asyncio lock belongs to one event loop, so the loop is part of the key:
# a lock left over from an earlier `asyncio.run` (a CLI command, a test) is never awaited from another loop.
_locks: weakref.WeakValueDictionary[tuple[asyncio.AbstractEventLoop, str, int], asyncio.Lock] = (
    weakref.WeakValueDictionary()
)


def refresh_lock(kind: str, target_id: int) -> asyncio.Lock:
    """The lock that lets one caller at a time of this event loop refresh the target's token."""
    return _locks.setdefault((asyncio.get_running_loop(), kind, target_id), asyncio.Lock())


def reconnect_message(provider_label: str) -> str:
    return (
        f"{provider_label} no longer accepts Tributary's sign-in (access revoked or password changed): "
        "use Reconnect to sign in again."
    )


@dataclass(frozen=True, slots=True)
class _Stored:
    refresh_encrypted: str | None
    provider: str | None
    user_id: int
    policy: OutboundPolicy


async def access_token_for(
    *,
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    kind: str,
    target_id: int,
    force_refresh: bool = False,
    environ: Mapping[str, str] | None = None,
    clock: Clock = utcnow,
    sleep: Sleep = asyncio.sleep,
) -> str:
    """The access token to sign in to the task's or account's server with (see the module docstring).

    Raises NotFound, InvalidInput (a password target), NeedsReconnect (pending,
    or the provider refused the refresh), ServerUnavailable (token endpoint
    unreachable after retries), ConnectionNotAllowed (the outbound policy
    refuses the provider), FeatureDisabled (provider no longer configured, or the
    domain's administrator turned OAuth2 sign-in off),
    ProviderMisconfigured (the provider refused Tributary's client credentials, or its
    discovery document is unusable), TlsFailure (the target's settings lack verified TLS).
    `clock`, `sleep` and `environ` are for tests.
    """
    which = target_kind(kind)
    environ = os.environ if environ is None else environ
    # One refresh at a time per target in this process: a second caller waits, then finds the new token.
    async with refresh_lock(which.value, target_id):
        async with db.read() as session:
            row = await load_target(session, which, target_id, None)
            await check_oauth_enabled(session, row.user_id)  # the domain's "OAuth2 sign-in" switch
            _check_tls(row)
            fresh = _usable_access_token(row, secret_box, clock(), force_refresh)
            if fresh is not None:
                return fresh
            stored = _Stored(
                row.oauth_refresh_token_encrypted,
                row.oauth_provider,
                row.user_id,
                await policy_for_user(session, settings, row.user_id),
            )
        provider = provider_named(settings, environ, stored.provider)
        if stored.refresh_encrypted is None:
            await _mark_reconnect(db, secret_box, which, target_id, provider, stored, clock())
            raise NeedsReconnect(reconnect_message(provider.label))
        refresh_token = secret_box.decrypt(stored.refresh_encrypted)
        try:
            token = await _refresh_with_retries(settings, stored.policy, provider, refresh_token, sleep)
        except NeedsReconnect:
            other = await _mark_reconnect(db, secret_box, which, target_id, provider, stored, clock())
            if other is not None:
                return other
            raise
        return await _store_refreshed(db, secret_box, which, target_id, token, clock())


def _check_tls(row: Target) -> None:
    """Never hand out a token for a connection without verified TLS (RFC 7628 section 4): the faces
    refuse such settings, and a row saved otherwise (older data, a direct edit) fails here, before
    the token leaves the database."""
    try:
        require_tls(row.security, row.verify_certificate)
    except InvalidInput as exc:
        raise TlsFailure(exc.message) from None


def _usable_access_token(row: Target, secret_box: SecretBox, now: datetime, force_refresh: bool) -> str | None:
    """The stored access token if it may be used as is; None when it needs a refresh."""
    if row.auth is not AuthKind.OAUTH2:
        raise InvalidInput("This one signs in with a password, not with a provider.")
    if row.oauth_status is CredentialStatus.PENDING:
        raise NeedsReconnect("The sign-in with the provider was not finished: follow its sign-in link again.")
    if row.oauth_status is CredentialStatus.RECONNECT:
        raise NeedsReconnect(row.last_error or "The provider refused the sign-in: use Reconnect to sign in again.")
    if force_refresh or row.oauth_access_token_encrypted is None:
        return None
    if row.oauth_expires_at is not None and row.oauth_expires_at - now <= REFRESH_MARGIN:
        return None
    return secret_box.decrypt(row.oauth_access_token_encrypted)


async def _refresh_with_retries(
    settings: Settings, policy: OutboundPolicy, provider: OAuthProvider, refresh_token: str, sleep: Sleep
) -> dict[str, object]:
    """The token endpoint's answer to a refresh grant; retried on network failures and 5xx."""
    unreachable = f"{provider.label}'s sign-in service could not be reached to renew the access; try again later."
    attempt = 0
    while True:
        try:
            return await _refresh_once(settings, policy, provider, refresh_token)
        except (httpx.TransportError, ServerUnavailable) as exc:
            reason = type(exc).__name__
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code < 500 and exc.response.status_code != 429:
                raise ProviderMisconfigured(
                    f"{provider.label} refused to renew the access (HTTP {exc.response.status_code}): {_TELL_ADMIN}"
                ) from exc
            reason = f"HTTP {exc.response.status_code}"
        except AuthlibOAuthError as exc:
            if exc.error in _RECONNECT_ERRORS:
                raise NeedsReconnect(reconnect_message(provider.label)) from exc
            if exc.error not in _RETRY_ERRORS:
                raise ProviderMisconfigured(
                    f"{provider.label} refused Tributary's sign-in ({exc.error}): {_TELL_ADMIN}"
                ) from exc
            reason = str(exc.error)
        except ValueError:  # authlib parses the answer as JSON: a proxy's or load balancer's page
            reason = "an answer that is not JSON"
        if attempt >= len(RETRY_DELAYS):
            raise ServerUnavailable(unreachable)
        log.warning("token refresh at %s failed (%s); retrying", provider.name, reason)
        await sleep(RETRY_DELAYS[attempt])
        attempt += 1


async def _refresh_once(
    settings: Settings, policy: OutboundPolicy, provider: OAuthProvider, refresh_token: str
) -> dict[str, object]:
    try:
        endpoints = await endpoints_for(provider, settings=settings, policy=policy)
    except OAuthFailed as exc:  # the discovery document is unusable: nothing the user can do
        raise ProviderMisconfigured(f"{exc.message.rstrip('.')}: {_TELL_ADMIN}") from exc
    async with oauth_client(settings, policy, provider) as client:
        token = dict(await client.refresh_token(endpoints.token_url, refresh_token=refresh_token))
    if not isinstance(token.get("access_token"), str):
        raise ServerUnavailable("the token endpoint returned no access token")
    if token.get("refresh_token") == refresh_token:
        token.pop("refresh_token")  # authlib copies the old one in when the provider did not rotate
    return token


async def _store_refreshed(
    db: Database, secret_box: SecretBox, kind: str, target_id: int, token: Mapping[str, object], now: datetime
) -> str:
    """The new access token, its expiry and a rotated refresh token, in one transaction."""
    access = token["access_token"]
    assert isinstance(access, str)
    async with db.write() as session:
        row = await load_target(session, target_kind(kind), target_id, None)
        row.oauth_access_token_encrypted = secret_box.encrypt(access)
        row.oauth_expires_at = expiry(token.get("expires_in"), now)
        refresh = token.get("refresh_token")
        if isinstance(refresh, str) and refresh:
            row.oauth_refresh_token_encrypted = secret_box.encrypt(refresh)
        if row.oauth_status is CredentialStatus.RECONNECT:
            # Another process saw its refresh refused because this one had just rotated the token.
            row.oauth_status = CredentialStatus.OK
            row.needs_action = False
            row.last_error = None
        session.add(row)
    return access


def _plain(secret_box: SecretBox, encrypted: str | None) -> str | None:
    return None if encrypted is None else secret_box.decrypt(encrypted)


async def _mark_reconnect(
    db: Database,
    secret_box: SecretBox,
    kind: str,
    target_id: int,
    provider: OAuthProvider,
    stored: _Stored,
    now: datetime,
) -> str | None:
    """Set reconnect, needs action and the reason, and return None; but when another caller stored a new
    refresh token meanwhile (this refresh failed only because that one rotated it), return its access token."""
    async with db.write() as session:
        row = await load_target(session, target_kind(kind), target_id, None)
        # Compare the tokens, not their ciphertexts: `secrets rotate` re-encrypts them without rotating.
        rotated = _plain(secret_box, row.oauth_refresh_token_encrypted) != _plain(secret_box, stored.refresh_encrypted)
        if rotated and row.oauth_status is CredentialStatus.OK and row.oauth_access_token_encrypted is not None:
            return secret_box.decrypt(row.oauth_access_token_encrypted)
        message = reconnect_message(provider.label)
        row.oauth_status = CredentialStatus.RECONNECT
        row.needs_action = True
        row.last_error = message
        row.failing_since = row.failing_since or now
        session.add(row)
    log.warning("OAuth2 sign-in for %s %s needs Reconnect: %s refused the refresh", kind, target_id, provider.name)
    return None
