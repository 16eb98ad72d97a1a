"""Building responses: a page from a template, a redirect after a form, and HTTP statuses
for service errors (the one place where `service.errors` meet status codes).
"""

from __future__ import annotations

from typing import Any

from litestar.enums import MediaType
from litestar.response import Redirect, Template

from service.domain.users import UserView
from service.errors import (
    AuthenticationFailed,
    Conflict,
    FeatureDisabled,
    InvalidInput,
    NotFound,
    OAuthSignInError,
    RemoteError,
    TributaryError,
)
from service.usecases.rate_limit import TooManyAttempts

STATUS_BY_ERROR: dict[type[TributaryError], int] = {
    TooManyAttempts: 429,
    OAuthSignInError: 400,  # a sign-in at a provider that did not complete: start again
    InvalidInput: 400,
    AuthenticationFailed: 401,
    FeatureDisabled: 403,
    NotFound: 404,
    Conflict: 409,
    RemoteError: 502,
}


def status_for(error: TributaryError) -> int:
    """The HTTP status for a service error: the nearest class in STATUS_BY_ERROR, else 500."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def page(template_name: str, *, viewer: UserView | None, status_code: int = 200, **context: Any) -> Template:
    """A full HTML page (or an htmx fragment of one); `viewer` (the signed-in user or None) fills the header.

    The media type is set here, not left to Litestar: a handler annotated `-> Any` (or a dict) is
    given application/json as its default, and a Template without its own media type takes the
    handler's, so the browser would show the page's HTML as text (issue 17, Settings, Filters).
    """
    return Template(
        template_name=template_name,
        context={"viewer": viewer, **context},
        status_code=status_code,
        media_type=MediaType.HTML,
    )


def see_other(path: str) -> Redirect:
    """303 See Other: after a form POST the browser GETs the next page."""
    return Redirect(path=path, status_code=303)
