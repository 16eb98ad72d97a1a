"""CSRF protection for every state-changing request, bound to the session, checked before the body is read.

A token is an HMAC-SHA256, under a server secret, of what the request belongs to:

- a signed-in session: its id (`session:<id>`). The id is random, server-side,
  rotated at sign-in and deleted at sign-out (support.sessions), so a token
  planted in the browser from a sibling origin, or taken from an anonymous
  page, is worthless against a signed-in user, and every sign-in and sign-out
  changes the token;
- an anonymous visitor (the sign-in and first-run forms): a random nonce in
  the cookie `tributary_csrf` (`visitor:<nonce>`), replaced at sign-in and
  sign-out too.

The secret is derived with HKDF-SHA256 from the newest Fernet key
(TRIBUTARY_SECRET_KEY, or the key file in the data directory), with its own
label: every web process sharing the key accepts the others' tokens, knowing it
reveals nothing about the encryption key, and rotating the key rotates it.

Forms carry the token as the hidden field `_csrf_token` (`{{ csrf_input | safe }}`),
htmx and API clients in the X-CSRFToken header (hx-headers on <body>; GET
/api/v1/session returns it), and a form that uploads large files in its action
URL (`?_csrf_token=`), so it is checked before the body is read.

An unsafe request (POST, PUT, PATCH, DELETE) is refused (403) when:

- the browser says it comes from another origin: `Sec-Fetch-Site` other than
  `same-origin` or `none` (a sibling subdomain is `same-site`, and refused),
  or, from browsers that do not send that, an `Origin` other than this host.
  Requests with neither (non-browser clients) still need the token
  (the algorithm of Go's net/http CrossOriginProtection, plus the token);
- its token does not match the one bound to its session or visitor nonce.

Bodies (issue 14: a 95 MB anonymous upload was parsed before the refusal):
the token is looked for in the header and the query string first. A route that
accepts more than `FORM_TOKEN_MAX_BODY` (compose, with attachments) is for
signed-in users only (anything else is sent to sign in before a byte is read),
and gets its large limit only when that token verifies; otherwise the body is
read, to find `_csrf_token` in the form, up to `FORM_TOKEN_MAX_BODY`. Anonymous
requests may send at most `ANONYMOUS_MAX_BODY`. Limits apply to Content-Length
and to the bytes actually streamed (413).

With TRIBUTARY_SECURE_COOKIES the cookie is `__Host-tributary_csrf` (Secure,
Path=/, no Domain: a sibling origin cannot set or overwrite it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from litestar import Request
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import RequestEncodingType, ScopeType
from litestar.exceptions import PermissionDeniedException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from litestar.utils.scope.state import ScopeState

from service.config import Settings
from service.persistence.secrets import load_or_create_keys
from web.support.dependencies import SignInRequired
from web.support.sessions import loaded_session_id, session_changed, signed_in_user_id

CSRF_COOKIE = "tributary_csrf"
CSRF_HEADER = "x-csrftoken"
CSRF_FIELD = "_csrf_token"
ANONYMOUS_MAX_BODY = 64 * 1024
FORM_TOKEN_MAX_BODY = 10_000_000  # Litestar's default request body limit
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
EXCLUDED_PATHS = re.compile(r"^/(static/|health$|metrics$)")
CSRF_REFUSED = "CSRF token verification failed"
CROSS_SITE_REFUSED = "CSRF: a request from another site"
_HKDF_INFO = b"tributary web csrf v1"
_NONCE = re.compile(r"[0-9a-f]{64}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def csrf_cookie_name(*, secure: bool) -> str:
    return f"__Host-{CSRF_COOKIE}" if secure else CSRF_COOKIE


def derive_csrf_secret(settings: Settings) -> bytes:
    """The HMAC secret for CSRF tokens, derived from the newest encryption key."""
    newest = load_or_create_keys(settings)[0]
    try:
        key_material = base64.urlsafe_b64decode(newest)
    except ValueError:
        key_material = newest  # a malformed key is reported by SecretBox at start-up
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return hkdf.derive(key_material)


def token_for(secret: bytes, *, session_id: str | None, nonce: str) -> str:
    """The token bound to a signed-in session, else to an anonymous visitor's nonce."""
    binding = f"session:{session_id}" if session_id else f"visitor:{nonce}"
    return hmac.new(secret, binding.encode(), hashlib.sha256).hexdigest()


def _host_and_port(scheme: str, netloc: str) -> tuple[str | None, int | None]:
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        return parts.hostname, parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number
        return None, None


def is_cross_site(scope: Scope, headers: Any) -> bool:
    """True when the browser says the request comes from another origin (see the module)."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False
    parts = urlsplit(origin)
    scheme = str(scope.get("scheme", "http"))
    # Behind a TLS-terminating proxy the app may see http while the page was https; never the reverse.
    if parts.scheme not in (scheme, "https") or not parts.netloc:
        return True
    origin_host = _host_and_port(parts.scheme, parts.netloc)
    return origin_host[0] is None or origin_host != _host_and_port(parts.scheme, headers.get("host") or "")


def _matches(token: str, expected: str) -> bool:
    """Constant-time comparison that also copes with non-ASCII input (compare_digest refuses such str)."""
    return hmac.compare_digest(token.encode("utf-8", "replace"), expected.encode())


def _limited(receive: Receive, limit: float) -> Receive:
    """`receive`, refusing (413) once more than `limit` body bytes have streamed in."""
    seen = 0

    async def limited_receive() -> ReceiveMessage:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise RequestEntityTooLarge
        return message

    return limited_receive


class CSRFMiddleware:
    """Checks origin and token of unsafe requests before their body is read; exposes the token to pages."""

    def __init__(self, app: ASGIApp, *, secret: bytes, secure: bool) -> None:
        self.app = app
        self.secret = secret
        self.secure = secure
        self.cookie_name = csrf_cookie_name(secure=secure)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or EXCLUDED_PATHS.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        request: Request[Any, Any, Any] = Request(scope, receive)
        nonce = request.cookies.get(self.cookie_name, "")
        fresh_nonce = not _NONCE.fullmatch(nonce)
        if fresh_nonce:
            nonce = secrets.token_hex(32)
        session_id = loaded_session_id(scope)
        expected = token_for(self.secret, session_id=session_id, nonce=nonce)
        ScopeState.from_scope(scope).csrf_token = expected
        if request.method not in SAFE_METHODS:
            signed_in = signed_in_user_id(scope) is not None  # a user, not merely a stored session
            receive = await self._check(scope, request, receive, expected=expected, signed_in=signed_in)

        async def send_with_cookie(message: Message) -> None:
            # A new visitor gets a nonce; signing in or out replaces it (the old one may have been seen).
            rotate = session_changed(scope)
            if message["type"] == "http.response.start" and (fresh_nonce or rotate):
                cookie = Cookie(
                    key=self.cookie_name,
                    value=secrets.token_hex(32) if rotate else nonce,
                    path="/",
                    secure=self.secure,
                    httponly=True,
                    samesite="lax",
                )
                MutableScopeHeaders.from_message(message).add("set-cookie", cookie.to_header(header=""))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    async def _check(
        self, scope: Scope, request: Request[Any, Any, Any], receive: Receive, *, expected: str, signed_in: bool
    ) -> Receive:
        """Refuse a cross-site request or a wrong token, reading no more of the body than the sender may send."""
        if is_cross_site(scope, request.headers):
            raise PermissionDeniedException(CROSS_SITE_REFUSED)
        handler = scope["route_handler"]
        route_limit: float = (
            handler.resolve_request_max_body_size() if isinstance(handler, HTTPRouteHandler) else None
        ) or math.inf
        early_token = request.headers.get(CSRF_HEADER) or request.query_params.get(CSRF_FIELD)
        if not signed_in and route_limit > FORM_TOKEN_MAX_BODY:
            raise SignInRequired("Sign in to continue.")
        if early_token is not None and not _matches(early_token, expected):
            raise PermissionDeniedException(CSRF_REFUSED)
        if not signed_in:
            limit = min(route_limit, ANONYMOUS_MAX_BODY)
        elif early_token is None:
            limit = min(route_limit, FORM_TOKEN_MAX_BODY)
        else:
            limit = route_limit
        if (request.content_length or 0) > limit:
            raise RequestEntityTooLarge
        receive = _limited(receive, limit)
        if early_token is None:
            content_type, _ = request.content_type
            if content_type not in (RequestEncodingType.URL_ENCODED, RequestEncodingType.MULTI_PART):
                raise PermissionDeniedException(CSRF_REFUSED)
            reader: Request[Any, Any, Any] = Request(scope, receive)
            await reader.body()  # all of it (bounded) before parsing: an oversized body leaves no temporary files
            form = await reader.form()
            token = form.get(CSRF_FIELD)
            if not isinstance(token, str) or not _matches(token, expected):
                raise PermissionDeniedException(CSRF_REFUSED)
        return receive


def csrf_middleware(settings: Settings) -> DefineMiddleware:
    """The middleware for the app's list (after the session middleware, which it reads)."""
    return DefineMiddleware(CSRFMiddleware, secret=derive_csrf_secret(settings), secure=settings.secure_cookies)
