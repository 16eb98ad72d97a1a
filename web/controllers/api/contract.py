"""What the OpenAPI document promises about sign-in and errors, declared beside each operation.

Sign-in (two security schemes, OpenAPI 3.1 section 4.8.27):

- `session`: the page session's cookie, set by signing in at /login (HttpOnly; named
  `__Host-tributary_session` when TRIBUTARY_SECURE_COOKIES is on). Every operation needs it;
  without it the answer is 401.
- `csrf`: the token from GET /api/v1/session, sent in the X-CSRFToken header with every
  POST, PUT and DELETE; without it, or with a token of another session, the answer is 403.

Errors are always `{"error": "<one sentence>"}` (ErrorBody), whatever raised them (errors):

- 400 invalid input: a body of the wrong shape, a path or query parameter out of range,
  settings the use case refuses;
- 401 not signed in;
- 403 a missing or wrong CSRF token, a request from another site, or a feature the
  domain's administrator turned off;
- 404 nothing with that id for this user (another user's looks the same);
- 409 a clash with what exists (a duplicate address, the account limit);
- 413 a body larger than the server accepts;
- 429 too many Test Connections or address look-ups (the Retry-After header says how many seconds to wait);
- 502 a remote server could not be used (an OAuth2 provider's discovery, for a sign-in start).

Each route declares its own with `reads(...)` or `writes(...)`: those add 401, and for
writes 403 (and 413 when the operation takes a body), plus the statuses named.
"""

from __future__ import annotations

from typing import Any

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme

from web.controllers.api.schemas import ErrorBody

SESSION = "session"
CSRF = "csrf"
SESSION_COOKIE = "tributary_session"  # web.support.sessions; __Host- prefixed with secure cookies
CSRF_HEADER = "X-CSRFToken"  # web.support.csrf.CSRF_HEADER (header names are case-insensitive)

SECURITY_SCHEMES = Components(
    security_schemes={
        SESSION: SecurityScheme(
            type="apiKey",
            name=SESSION_COOKIE,
            security_scheme_in="cookie",
            description="The session cookie that signing in at /login sets "
            "(`__Host-tributary_session` when Tributary runs with TRIBUTARY_SECURE_COOKIES).",
        ),
        CSRF: SecurityScheme(
            type="apiKey",
            name=CSRF_HEADER,
            security_scheme_in="header",
            description="The CSRF token of the session (`csrf_token` from GET /api/v1/session), "
            "required with every POST, PUT and DELETE.",
        ),
    }
)

READ: list[SecurityRequirement] = [{SESSION: []}]
WRITE: list[SecurityRequirement] = [{SESSION: [], CSRF: []}]

_MEANING = {
    400: "Invalid input: the sentence says what to correct.",
    401: "Not signed in.",
    403: "The CSRF token is missing or wrong, the request came from another site, "
    "or the domain's administrator turned this feature off.",
    404: "Nothing with this id belongs to the signed-in user.",
    409: "The request clashes with what exists.",
    413: "The request body is larger than Tributary accepts.",
    429: "Too many Test Connections or address look-ups just now; the Retry-After header says how many seconds "
    "to wait.",
    502: "A remote server (an OAuth2 provider) could not be reached or refused; the sentence says what to do.",
}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """The error responses of an operation: each an ErrorBody, described by what it means."""
    return {
        status: ResponseSpec(data_container=ErrorBody, description=_MEANING[status], generate_examples=False)
        for status in sorted(set(statuses))
    }


def reads(*statuses: int) -> dict[str, Any]:
    """Route options for a GET: the session cookie, and 401 plus `statuses`."""
    return {"security": READ, "responses": errors(401, *statuses)}


def writes(*statuses: int, body: bool = False) -> dict[str, Any]:
    """Route options for a POST, PUT or DELETE: the session cookie and the CSRF header, and 401,
    403 (and 413 with a `body`) plus `statuses`."""
    return {"security": WRITE, "responses": errors(401, 403, *statuses, *((413,) if body else ()))}
