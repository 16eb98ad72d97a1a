"""OAuth2 sign-in providers (issue 15): Google and Microsoft built in, others from the environment.

Pure values and rules, no I/O. `configured_providers(settings, environ)` answers
which providers the administrator configured; a provider without a client id is
not offered. The flow itself (authorization code with PKCE, RFC 6749 4.1 and
RFC 7636; refresh, RFC 6749 6) lives in `service.usecases.oauth`.

A provider is reached either through OpenID Connect discovery
(`TRIBUTARY_OAUTH_<NAME>_ISSUER`: the endpoints come from
`{issuer}/.well-known/openid-configuration`, fetched by the use cases) or
through explicit `_AUTHORIZE_URL`, `_TOKEN_URL` and `_USERINFO_URL`. The
mailbox address is the `email` claim of the ID token or of the userinfo
endpoint (OpenID Connect Core 5.3).

The mail servers' SASL mechanisms are XOAUTH2 (Google's and Microsoft's) and
OAUTHBEARER (RFC 7628); the scopes below are what those servers ask for:
Google's `https://mail.google.com/` (IMAP, POP3 and SMTP alike) and Microsoft's
per-protocol `https://outlook.office.com/...` scopes with `offline_access` for a
refresh token. `openid email` is added to both so the provider reports the
mailbox address the task or account is saved under.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from service.config import Settings
from service.domain.smtp_accounts import check_host
from service.domain.values import Protocol, Security, default_port
from service.errors import InvalidInput

ENV_PREFIX = "TRIBUTARY_OAUTH_"
GOOGLE = "google"
MICROSOFT = "microsoft"
BUILT_IN = (GOOGLE, MICROSOFT)
DEFAULT_SCOPES = ("openid", "email", "offline_access")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class AuthKind(StrEnum):
    """How a retrieval task or SMTP account signs in to its server."""

    PASSWORD = "password"  # noqa: S105 - a sign-in kind, not a password
    OAUTH2 = "oauth2"


class CredentialStatus(StrEnum):
    """Where an OAuth2 sign-in stands: consent not yet given, working, or refused by the provider."""

    PENDING = "pending"
    OK = "ok"
    RECONNECT = "reconnect"


class TargetKind(StrEnum):
    """What a sign-in is for: a retrieval task or an SMTP account (the `kind` of the use cases)."""

    RETRIEVAL = "retrieval"
    SMTP = "smtp"


@dataclass(frozen=True, slots=True)
class ServerDefaults:
    """A mail server a provider's accounts use, to fill the forms."""

    host: str
    port: int
    security: Security


@dataclass(frozen=True, slots=True)
class OAuthProvider:
    """One configured OAuth2 provider. With `issuer` set, endpoints left None come from discovery."""

    name: str
    label: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...]
    issuer: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    userinfo_url: str | None = None
    imap: ServerDefaults | None = None
    pop3: ServerDefaults | None = None
    smtp: ServerDefaults | None = None
    extra_authorize_params: tuple[tuple[str, str], ...] = ()

    @property
    def scope(self) -> str:
        """The scopes as the `scope` parameter spells them (RFC 6749 3.3: space-separated)."""
        return " ".join(self.scopes)

    def server(self, protocol: Protocol | str) -> ServerDefaults | None:
        """The defaults for "imap", "pop3" or "smtp"."""
        return {"imap": self.imap, "pop3": self.pop3, "smtp": self.smtp}.get(str(protocol))


def google(client_id: str, client_secret: str) -> OAuthProvider:
    """Google: Gmail and Google Workspace (https://developers.google.com/gmail/imap/xoauth2-protocol)."""
    return OAuthProvider(
        name=GOOGLE,
        label="Google",
        client_id=client_id,
        client_secret=client_secret,
        scopes=("https://mail.google.com/", "openid", "email"),
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",  # noqa: S106 - an endpoint, not a password
        userinfo_url="https://openidconnect.googleapis.com/v1/userinfo",
        imap=ServerDefaults("imap.gmail.com", 993, Security.SSL),
        pop3=ServerDefaults("pop.gmail.com", 995, Security.SSL),
        smtp=ServerDefaults("smtp.gmail.com", 587, Security.STARTTLS),
        # A refresh token is only issued with offline access; "consent" re-issues it on Reconnect.
        extra_authorize_params=(("access_type", "offline"), ("prompt", "consent")),
    )


def microsoft(client_id: str, client_secret: str, tenant: str = "common") -> OAuthProvider:
    """Microsoft 365 and Outlook.com (Microsoft identity platform v2.0).

    Its access tokens are for outlook.office.com, so Graph's userinfo would refuse
    them: the address comes from the ID token the token endpoint returns (`email`,
    else `preferred_username`).
    """
    base = f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
    return OAuthProvider(
        name=MICROSOFT,
        label="Microsoft",
        client_id=client_id,
        client_secret=client_secret,
        scopes=(
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "https://outlook.office.com/POP.AccessAsUser.All",
            "https://outlook.office.com/SMTP.Send",
            "offline_access",
            "openid",
            "email",
        ),
        authorize_url=f"{base}/authorize",
        token_url=f"{base}/token",
        userinfo_url=None,
        imap=ServerDefaults("outlook.office365.com", 993, Security.SSL),
        pop3=ServerDefaults("outlook.office365.com", 995, Security.SSL),
        smtp=ServerDefaults("smtp.office365.com", 587, Security.STARTTLS),
    )


def configured_providers(settings: Settings, environ: Mapping[str, str]) -> dict[str, OAuthProvider]:
    """Every offered provider by name: Google and Microsoft when their client id is set, then
    each name of TRIBUTARY_OAUTH_PROVIDERS (the setting, and the same variable in `environ`) that has
    a client id. `environ` is where TRIBUTARY_OAUTH_<NAME>_* are read (normally os.environ).

    An invalid value raises InvalidInput with one sentence naming the variable (a strict check;
    what users are offered is `usable_providers`).
    """
    return _providers(settings, environ, None)


def usable_providers(settings: Settings, environ: Mapping[str, str]) -> tuple[dict[str, OAuthProvider], list[str]]:
    """The providers users are offered, and one sentence per provider left out for an invalid value:
    one mistyped TRIBUTARY_OAUTH_<NAME>_* variable takes away that provider only, not Google and
    Microsoft and every other one."""
    problems: list[str] = []
    return _providers(settings, environ, problems), problems


def _providers(settings: Settings, environ: Mapping[str, str], problems: list[str] | None) -> dict[str, OAuthProvider]:
    """configured_providers; with `problems`, an invalid provider is skipped and its sentence added there."""
    providers: dict[str, OAuthProvider] = {}
    if settings.oauth_google_client_id.strip():
        secret = settings.oauth_google_client_secret
        providers[GOOGLE] = google(settings.oauth_google_client_id.strip(), secret.get_secret_value() if secret else "")
    if settings.oauth_microsoft_client_id.strip():
        secret = settings.oauth_microsoft_client_secret
        providers[MICROSOFT] = microsoft(
            settings.oauth_microsoft_client_id.strip(),
            secret.get_secret_value() if secret else "",
            settings.oauth_microsoft_tenant,
        )
    # The Settings field and the environment mapping normally hold the same TRIBUTARY_OAUTH_PROVIDERS;
    # a caller that passes its own mapping (tests, a reload) may name providers there too.
    listed = f"{settings.oauth_providers},{environ.get(ENV_PREFIX + 'PROVIDERS', '')}"
    seen: set[str] = set()
    for raw in listed.split(","):
        name = raw.strip().lower()
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            provider = _listed(name, raw, environ)
        except InvalidInput as exc:
            if problems is None:
                raise
            problems.append(exc.message)
            continue
        if provider is not None:
            providers[name] = provider
    return providers


def _listed(name: str, raw: str, environ: Mapping[str, str]) -> OAuthProvider | None:
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"TRIBUTARY_OAUTH_PROVIDERS has {raw.strip()!r}: a provider name is letters, digits and _, "
            "starting with a letter."
        )
    if name in BUILT_IN:
        raise InvalidInput(
            f"TRIBUTARY_OAUTH_PROVIDERS names {name}, which is built in: set only "
            f"TRIBUTARY_OAUTH_{name.upper()}_CLIENT_ID and _CLIENT_SECRET for it."
        )
    return _custom(name, environ)


def _custom(name: str, environ: Mapping[str, str]) -> OAuthProvider | None:
    prefix = f"{ENV_PREFIX}{name.upper()}_"

    def get(key: str) -> str:
        return environ.get(prefix + key, "").strip()

    client_id = get("CLIENT_ID")
    if not client_id:
        return None
    issuer = _url(prefix + "ISSUER", get("ISSUER"))
    authorize_url = _url(prefix + "AUTHORIZE_URL", get("AUTHORIZE_URL"))
    token_url = _url(prefix + "TOKEN_URL", get("TOKEN_URL"))
    userinfo_url = _url(prefix + "USERINFO_URL", get("USERINFO_URL"))
    if issuer is None:
        for key, value in (("AUTHORIZE_URL", authorize_url), ("TOKEN_URL", token_url)):
            if value is None:
                raise InvalidInput(f"{prefix}{key} is needed when {prefix}ISSUER is not set.")
    scopes = tuple(get("SCOPES").replace(",", " ").split()) or DEFAULT_SCOPES
    return OAuthProvider(
        name=name,
        label=get("LABEL") or name.replace("_", " ").title(),
        client_id=client_id,
        client_secret=get("CLIENT_SECRET"),
        scopes=scopes,
        issuer=issuer.rstrip("/") if issuer else None,
        authorize_url=authorize_url,
        token_url=token_url,
        userinfo_url=userinfo_url,
        imap=_server(prefix, "IMAP", environ, Protocol.IMAP),
        pop3=_server(prefix, "POP3", environ, Protocol.POP3),
        smtp=_server(prefix, "SMTP", environ, "smtp"),
    )


def endpoint_url_allowed(value: str) -> bool:
    """Whether `value` may be an OAuth2 endpoint: https, or http to a loopback address (a local test
    server). Configured endpoints and those an issuer's discovery document names are held to it alike:
    tokens and client secrets travel to them (RFC 6749 3.1 and 3.2 require TLS)."""
    parts = urlsplit(value)
    host = parts.hostname or ""
    return (parts.scheme == "https" and bool(host)) or (parts.scheme == "http" and _loopback(host))


def _url(variable: str, value: str) -> str | None:
    """An endpoint URL (endpoint_url_allowed), None when unset."""
    if not value:
        return None
    if endpoint_url_allowed(value):
        return value
    raise InvalidInput(f"{variable} must be an https:// address (http:// only for localhost), not {value!r}.")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _server(prefix: str, part: str, environ: Mapping[str, str], protocol: Protocol | str) -> ServerDefaults | None:
    """`_<PART>_HOST`, `_PORT` (and for SMTP `_SECURITY`) as form defaults; None without a host."""
    host_text = environ.get(f"{prefix}{part}_HOST", "").strip()
    port_text = environ.get(f"{prefix}{part}_PORT", "").strip()
    security_text = environ.get(f"{prefix}{part}_SECURITY", "").strip().lower() if part == "SMTP" else ""
    if not host_text:
        return None
    try:
        host = check_host(host_text)
    except InvalidInput:
        raise InvalidInput(f"{prefix}{part}_HOST is not a host name or IP address: {host_text!r}.") from None
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise InvalidInput(f"{prefix}{part}_PORT must be a port number from 1 to 65535, not {port_text!r}.")
        port = int(port_text)
    if security_text:
        try:
            security = Security(security_text)
        except ValueError:
            security = Security.NONE
        if security is Security.NONE:  # a token is sent only over TLS (require_tls)
            raise InvalidInput(f"{prefix}SMTP_SECURITY must be starttls or ssl, not {security_text!r}.")
    else:
        security = _security_for_port(protocol, port)
    return ServerDefaults(host, port or default_port(protocol, security), security)


TLS_REQUIRED = (
    "Sign-in with a provider sends an access token, so it needs TLS with a verified certificate: "
    "choose SSL/TLS or STARTTLS and keep certificate verification on."
)


def require_tls(security: Security, verify_certificate: bool) -> None:
    """A task or account that signs in with an OAuth2 token must use TLS and verify the server's
    certificate (RFC 7628 section 4 / RFC 6750 section 5.3: a bearer token is a password anyone who reads
    it can use). Raises InvalidInput with one sentence otherwise."""
    if security is Security.NONE or not verify_certificate:
        raise InvalidInput(TLS_REQUIRED)


def _security_for_port(protocol: Protocol | str, port: int | None) -> Security:
    """The security a port implies: the plain-text ports (143, 110, 25, 587) STARTTLS, others implicit
    TLS; no port: TLS (STARTTLS on SMTP's submission port 587)."""
    if port is None:
        return Security.STARTTLS if str(protocol) == "smtp" else Security.SSL
    return Security.STARTTLS if port in (143, 110, 25, 587) else Security.SSL
