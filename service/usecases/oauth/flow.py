"""The authorization code flow with PKCE (RFC 6749 4.1, RFC 7636 S256): start, and the callback.

`start_authorization` makes the provider's consent URL for a task or account
that already exists with `auth = oauth2` and `oauth_provider` set (pending, or
one to reconnect). It stores a row in oauth_state: the SHA-256 of a random
`state` (secrets.token_urlsafe), the encrypted PKCE code verifier, the user,
the browser session's binding (None for a flow started by the CLI), and an
expiry ten minutes on.

`complete_authorization` handles the browser's return to
{PUBLIC_URL}/oauth/callback. The state is consumed first, in its own short
transaction (an UPDATE that only succeeds while `used_at` is NULL, so of two
racing callbacks one wins and a replay fails); the code is then exchanged and
the mailbox address read with no database session open; the tokens are stored
in a second transaction. A callback whose state is unknown, used, expired or
bound to another session, or that carries a provider error, saves nothing.

The mailbox address is the `email` claim of the ID token the token endpoint
returned (OpenID Connect Core 3.1.3.7: received directly from the token
endpoint over TLS, its signature need not be checked), else of the userinfo
endpoint (Core 5.3); Microsoft's tokens are for outlook.office.com, so for it
only the ID token can say (`preferred_username` when `email` is absent).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

import httpx
from authlib.common.encoding import urlsafe_b64decode
from authlib.common.security import generate_token
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, update
from sqlmodel import col, select

from service.config import Settings
from service.domain.oauth import AuthKind, CredentialStatus, OAuthProvider, TargetKind
from service.domain.outbound import NOT_ALLOWED, OutboundPolicy
from service.domain.values import RetrievalMethod
from service.errors import (
    ConnectionNotAllowed,
    FeatureDisabled,
    InvalidInput,
    NotFound,
    OAuthDenied,
    OAuthFailed,
    OAuthStateInvalid,
    ServerUnavailable,
)
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import OAuthState, RetrievalTask, SmtpAccount
from service.persistence.types import utcnow
from service.usecases.domains import check_oauth_enabled
from service.usecases.oauth.endpoints import endpoints_for
from service.usecases.oauth.http import AsyncOAuth2Client, AuthlibOAuthError, oauth_client
from service.usecases.oauth.targets import (
    Target,
    load_target,
    policy_for_user,
    provider_named,
    sign_in_name,
    target_kind,
)

log = logging.getLogger(__name__)

STATE_LIFETIME = timedelta(minutes=10)
VERIFIER_LENGTH = 64  # RFC 7636 4.1: 43 to 128 unreserved characters
STATE_INVALID = "This sign-in link is not valid any more (used, expired or from another browser): start again."
NO_PUBLIC_URL = (
    "OAuth2 sign-in needs TRIBUTARY_PUBLIC_URL (the address users reach Tributary at): ask your administrator."
)
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")

Clock = Callable[[], datetime]


class _Where(TypedDict):
    kind: str
    target_id: int


@dataclass(frozen=True, slots=True)
class CompletedAuthorization:
    """A finished sign-in: which task or account now holds tokens, and the mailbox address it signs in as."""

    kind: TargetKind
    target_id: int
    email: str


def _what(kind: TargetKind) -> str:
    return "retrieval task" if kind is TargetKind.RETRIEVAL else "SMTP account"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


async def start_authorization(
    *,
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    user_id: int,
    kind: str,
    target_id: int,
    session_binding: str | None,
    environ: Mapping[str, str] | None = None,
    clock: Clock = utcnow,
) -> str:
    """The provider's authorization URL to send the browser to, for the user's task or account.

    The target must exist, belong to `user_id` and sign in with OAuth2 (its
    `oauth_provider` names the provider). `session_binding` is an opaque string
    the web face derives from the browser's session id (only its SHA-256 is
    stored), or None for a flow started by the CLI. `environ` (default
    os.environ) holds the TRIBUTARY_OAUTH_<NAME>_* variables.

    Raises NotFound, InvalidInput (not an OAuth2 target, no TRIBUTARY_PUBLIC_URL),
    FeatureDisabled (provider not configured), ServerUnavailable (discovery
    failed), ConnectionNotAllowed (the policy refuses the provider).
    """
    which = target_kind(kind)
    if not settings.public_url:
        raise InvalidInput(NO_PUBLIC_URL)
    async with db.read() as session:
        row = await load_target(session, which, target_id, user_id)
        if row.auth is not AuthKind.OAUTH2:
            raise InvalidInput("This one signs in with a password, not with a provider.")
        provider = provider_named(settings, environ, row.oauth_provider)
        policy = await policy_for_user(session, settings, user_id)
        login_hint = sign_in_name(row)
    endpoints = await endpoints_for(provider, settings=settings, policy=policy)
    state = secrets.token_urlsafe(32)
    verifier = generate_token(VERIFIER_LENGTH)
    params = dict(provider.extra_authorize_params)
    if login_hint:
        params["login_hint"] = login_hint
    async with oauth_client(settings, policy, provider) as client:
        url, _ = client.create_authorization_url(
            endpoints.authorize_url, state=state, code_verifier=verifier, scope=provider.scope, **params
        )
    now = clock()
    async with db.write() as session:
        # Housekeeping: requests that can no longer complete.
        await session.exec(delete(OAuthState).where(col(OAuthState.expires_at) < now - timedelta(days=1)))
        session.add(
            OAuthState(
                state_hash=_digest(state),
                user_id=user_id,
                session_binding=None if session_binding is None else _digest(session_binding),
                kind=str(which),
                target_id=target_id,
                provider=provider.name,
                code_verifier_encrypted=secret_box.encrypt(verifier),
                created_at=now,
                expires_at=now + STATE_LIFETIME,
            )
        )
    return str(url)


@dataclass(frozen=True, slots=True)
class _Consumed:
    user_id: int
    kind: TargetKind
    target_id: int
    provider: str
    verifier: str
    policy: OutboundPolicy

    @property
    def where(self) -> _Where:
        """The keyword arguments that let a sign-in error name its task or account."""
        return {"kind": self.kind.value, "target_id": self.target_id}


async def _consume_state(
    db: Database, settings: Settings, secret_box: SecretBox, state: str, session_binding: str | None, now: datetime
) -> _Consumed:
    """Mark the state used (single use) and return what it was for; OAuthStateInvalid if it cannot be used.

    The state is looked up in a read transaction first: the callback is reachable without signing in, and
    a write transaction (BEGIN IMMEDIATE on SQLite) for every bogus state would let a flood of them hold
    off every writer. Only a usable state takes the write transaction, which claims it atomically."""
    async with db.read() as session:
        found = (await session.exec(select(OAuthState).where(OAuthState.state_hash == _digest(state)))).first()
        if found is None or found.used_at is not None or found.expires_at <= now:
            raise OAuthStateInvalid(STATE_INVALID)
        if found.session_binding is not None and not (
            session_binding is not None and hmac.compare_digest(found.session_binding, _digest(session_binding))
        ):
            raise OAuthStateInvalid(STATE_INVALID)
        state_id = found.id
        try:
            await check_oauth_enabled(session, found.user_id)  # the domain's "OAuth2 sign-in" switch
        except FeatureDisabled as exc:
            raise OAuthFailed(exc.message, kind=found.kind, target_id=found.target_id) from exc
    async with db.write() as session:
        claimed = await session.exec(
            update(OAuthState)
            .where(col(OAuthState.id) == state_id, col(OAuthState.used_at).is_(None))
            .values(used_at=now)
        )
        if claimed.rowcount != 1:  # a concurrent callback with the same state won
            raise OAuthStateInvalid(STATE_INVALID)
        row = await session.get(OAuthState, state_id)
        assert row is not None
        return _Consumed(
            user_id=row.user_id,
            kind=TargetKind(row.kind),
            target_id=row.target_id,
            provider=row.provider,
            verifier=secret_box.decrypt(row.code_verifier_encrypted),
            policy=await policy_for_user(session, settings, row.user_id),
        )


async def complete_authorization(
    *,
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    state: str | None,
    code: str | None,
    error: str | None,
    session_binding: str | None,
    environ: Mapping[str, str] | None = None,
    clock: Clock = utcnow,
) -> CompletedAuthorization:
    """Finish a sign-in from the callback's `state`, `code` and `error` query parameters.

    `session_binding` is derived from the returning browser's session as for
    `start_authorization` (None when it has no session: then only a CLI-started
    flow can complete). On success the target holds the encrypted tokens, their
    expiry and status ok; a pending target with no username (or address) takes
    the address the provider reports, and an automatic retrieval task is due at once.

    Raises OAuthStateInvalid (unknown, used, expired or foreign state),
    OAuthDenied (access_denied), OAuthFailed (any other failure); each saves
    nothing but the state's use.
    """
    now = clock()
    if not state:
        raise OAuthStateInvalid(STATE_INVALID)
    consumed = await _consume_state(db, settings, secret_box, state, session_binding, now)
    where = consumed.where
    try:
        provider = provider_named(settings, environ, consumed.provider)
    except (InvalidInput, FeatureDisabled) as exc:
        raise OAuthFailed(exc.message, **where) from exc
    if error:
        if error == "access_denied":
            raise OAuthDenied(f"Sign-in with {provider.label} was cancelled: nothing was saved.", **where)
        shown = error if _ERROR_CODE.fullmatch(error) else "an unknown error"
        raise OAuthFailed(f"{provider.label} refused the sign-in ({shown}): nothing was saved.", **where)
    if not code:
        raise OAuthFailed(f"{provider.label} returned no authorization code: start the sign-in again.", **where)

    token, email = await _exchange(provider, settings, consumed, code)
    expires_in = token.get("expires_in")
    async with db.write() as session:
        try:
            row = await load_target(session, consumed.kind, consumed.target_id, consumed.user_id)
        except NotFound as exc:  # deleted while the user was at the provider
            raise OAuthFailed(f"The {_what(consumed.kind)} was deleted during the sign-in.", **where) from exc
        if row.auth is not AuthKind.OAUTH2 or row.oauth_provider != provider.name:
            raise OAuthFailed(
                f"The {_what(consumed.kind)}'s sign-in method changed during the sign-in: nothing was saved.", **where
            )
        expected = sign_in_name(row)  # also a pending target's, when the user gave the username or address
        if expected and expected.lower() != email.lower():
            again = "sign in" if row.oauth_status is CredentialStatus.PENDING else "reconnect"
            raise OAuthFailed(
                f"You signed in as {email}, but this {_what(consumed.kind)} is for {expected}: {again} as {expected}.",
                **where,
            )
        if isinstance(row, SmtpAccount) and not row.email_address:
            taken = select(SmtpAccount.id).where(
                SmtpAccount.user_id == row.user_id,
                func.lower(SmtpAccount.email_address) == email.lower(),
                SmtpAccount.id != row.id,
            )
            if (await session.exec(taken)).first() is not None:
                raise OAuthFailed(f"You already have an SMTP account for {email}: nothing was saved.", **where)
        _store_tokens(row, secret_box, token, expires_in, now)
        _fill_address(row, email)
        _resume(row, now)
        session.add(row)
    log.info("OAuth2 sign-in with %s completed for %s %s", provider.name, consumed.kind, consumed.target_id)
    return CompletedAuthorization(consumed.kind, consumed.target_id, email)


async def _exchange(
    provider: OAuthProvider, settings: Settings, consumed: _Consumed, code: str
) -> tuple[dict[str, object], str]:
    """The token request (RFC 6749 4.1.3, with the PKCE verifier) and the mailbox address; no session open."""
    unreachable = f"{provider.label} could not be reached to finish the sign-in: start it again in a few minutes."
    kind_target = consumed.where
    try:
        endpoints = await endpoints_for(provider, settings=settings, policy=consumed.policy)
        async with oauth_client(settings, consumed.policy, provider) as client:
            token = dict(
                await client.fetch_token(
                    endpoints.token_url, grant_type="authorization_code", code=code, code_verifier=consumed.verifier
                )
            )
            if not isinstance(token.get("access_token"), str):
                raise OAuthFailed(f"{provider.label} returned no access token: start the sign-in again.", **kind_target)
            email = _id_token_email(token) or await _userinfo_email(client, endpoints.userinfo_url)
    except AuthlibOAuthError as exc:
        shown = exc.error if isinstance(exc.error, str) and _ERROR_CODE.fullmatch(exc.error) else "error"
        raise OAuthFailed(
            f"{provider.label} did not accept the sign-in ({shown}): start it again.", **kind_target
        ) from exc
    except (httpx.HTTPError, ServerUnavailable, ValueError) as exc:
        raise OAuthFailed(unreachable, **kind_target) from exc
    except ConnectionNotAllowed as exc:
        raise OAuthFailed(NOT_ALLOWED, **kind_target) from exc
    except OAuthFailed as exc:
        raise OAuthFailed(exc.message, **kind_target) from exc
    if not email:
        raise OAuthFailed(f"{provider.label} did not report the mailbox address: nothing was saved.", **kind_target)
    try:
        address = validate_email(email, check_deliverability=False, test_environment=True).normalized
    except EmailNotValidError as exc:
        raise OAuthFailed(
            f"{provider.label} reported a mailbox address that is not valid: nothing was saved.", **kind_target
        ) from exc
    return token, address


def _id_token_email(token: Mapping[str, object]) -> str | None:
    """`email` (else an address-shaped `preferred_username`) of the ID token, if the token response has one."""
    id_token = token.get("id_token")
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return None
    try:
        claims = json.loads(urlsafe_b64decode(id_token.split(".")[1].encode("ascii")))
    except (ValueError, UnicodeError):
        return None
    if not isinstance(claims, dict):
        return None
    for key in ("email", "preferred_username"):
        value = claims.get(key)
        if isinstance(value, str) and "@" in value:
            return value
    return None


async def _userinfo_email(client: AsyncOAuth2Client, userinfo_url: str | None) -> str | None:
    """The userinfo endpoint's `email` claim (OpenID Connect Core 5.3), with the new access token."""
    if userinfo_url is None:
        return None
    access = client.token["access_token"] if client.token else ""
    # withhold_token: authlib would otherwise try to refresh a token that expires within its leeway.
    response = await client.request(
        "GET",
        userinfo_url,
        headers={"Accept": "application/json", "Authorization": f"Bearer {access}"},
        withhold_token=True,
    )
    if response.status_code >= 500:
        raise ServerUnavailable("userinfo is unavailable")
    if response.status_code != 200:
        return None
    info = response.json()
    email = info.get("email") if isinstance(info, dict) else None
    return email if isinstance(email, str) else None


def _store_tokens(
    row: Target, secret_box: SecretBox, token: Mapping[str, object], expires_in: object, now: datetime
) -> None:
    access = token["access_token"]
    assert isinstance(access, str)
    row.oauth_access_token_encrypted = secret_box.encrypt(access)
    refresh = token.get("refresh_token")
    # No refresh token this time: the one kept from an earlier sign-in is the one the provider stopped
    # accepting (this is Reconnect), so it goes; the target asks for Reconnect once the access expires.
    has_refresh = isinstance(refresh, str) and bool(refresh)
    row.oauth_refresh_token_encrypted = secret_box.encrypt(str(refresh)) if has_refresh else None
    row.oauth_expires_at = expiry(expires_in, now)
    row.oauth_status = CredentialStatus.OK


def expiry(expires_in: object, now: datetime) -> datetime | None:
    """When an access token expires, from the token response's `expires_in` (RFC 6749 5.1); None if unsaid."""
    try:
        seconds = int(str(expires_in))
    except ValueError:
        return None
    return now + timedelta(seconds=max(seconds, 0))


def _fill_address(row: Target, email: str) -> None:
    """A target the user gave no username (or address) signs in as the address the provider reported."""
    if isinstance(row, RetrievalTask):
        if not row.username:
            row.username = email
        return
    if not row.email_address:
        row.email_address = email
    if not row.username:
        row.username = email


def _resume(row: Target, now: datetime) -> None:
    """A fresh sign-in clears what the old one's failure set; an automatic task runs at once."""
    row.needs_action = False
    row.last_error = None
    row.failing_since = None
    row.updated_at = now
    if isinstance(row, RetrievalTask):
        row.auth_failures = 0
        row.paused_reason = None
        row.next_run_at = now if row.method is RetrievalMethod.AUTOMATIC and row.is_active else None
