"""Small ASGI middlewares: the request's log context, security headers on every response, and a request log line.

The request context (service.observability) gives every log line written while a
request is answered its request id (also sent back as X-Request-ID), the client
address Litestar sees (the forwarded one only behind TRIBUTARY_TRUSTED_PROXIES)
and, once the session is loaded, the signed-in user's id.

The request log records method, path (never the query string), status and
duration; it never reads bodies, headers or cookies, so passwords and session
ids cannot reach the logs through it. (Litestar's own LoggingMiddleware would
log bodies and cookies by default; it is not used.)
"""

from __future__ import annotations

import logging
import secrets
import time

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.observability import RequestContext, bind_request, unbind_request
from web.support.sessions import signed_in_user_id

access_log = logging.getLogger("web.access")

# No inline scripts or styles anywhere: htmx is loaded from /static and configured by a <meta> tag.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def add_security_headers(headers: MutableScopeHeaders) -> None:
    """Set the security headers a response lacks; HTML pages are also never cached (they show mail)."""
    for name, value in SECURITY_HEADERS.items():
        if name not in headers:
            headers[name] = value
    if (headers.get("content-type") or "").startswith("text/html") and "cache-control" not in headers:
        headers["Cache-Control"] = "no-store"


REQUEST_ID_HEADER = "X-Request-ID"
QUIET_PATHS = frozenset({"/mail/pulse", "/health", "/metrics"})
"""Requests logged at DEBUG only: polled every few seconds, they would drown the other lines."""


class RequestContextMiddleware:
    """Binds the request's id, client address and (read late) user id to every log line written under it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        client = scope.get("client")
        token = bind_request(
            RequestContext(
                request_id=request_id,
                client=client[0] if client else None,
                user_id=lambda: signed_in_user_id(scope),
            )
        )

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                if REQUEST_ID_HEADER not in headers:
                    headers[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            unbind_request(token)


class SecurityHeadersMiddleware:
    """Adds `SECURITY_HEADERS` to every HTTP response that passes through it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_security_headers(MutableScopeHeaders.from_message(message))
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AccessLogMiddleware:
    """Logs one line per request: method, path, status, milliseconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        except Exception as exc:
            # Raised past the route (CSRF refusal, a bug): the app's exception handlers answer outside us.
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            raise
        finally:
            # Static files, the open mail page's pulse (every few seconds per tab) and the probes of load
            # balancers and Prometheus (every few seconds) only at DEBUG.
            quiet = scope["path"].startswith("/static/") or scope["path"] in QUIET_PATHS
            level = logging.DEBUG if quiet else logging.INFO
            elapsed_ms = (time.perf_counter() - started) * 1000
            access_log.log(level, "%s %s %d %.1fms", scope["method"], scope["path"], status, elapsed_ms)
