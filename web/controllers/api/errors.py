"""How the API answers errors: JSON {"error": "<sentence>"} with the status the pages use.

Installed on the /api/v1 router, so they replace the app's page-rendering handlers for
API routes only: an anonymous caller gets 401 (never a redirect to /login), a request
without a valid CSRF token (when it carries the session cookie) 403, another user's
object 404, invalid input 400, a clash 409.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, PermissionDeniedException, ValidationException
from litestar.types import ExceptionHandlersMap

from service.errors import TributaryError
from service.usecases.rate_limit import TooManyAttempts
from web.controllers.api.schemas import ErrorBody
from web.support.dependencies import SignInRequired
from web.support.errors import CSRF_FAILED, is_out_of_range_id
from web.support.rendering import status_for

SIGN_IN = "Sign in to continue."


def error(status_code: int, message: str, headers: dict[str, str] | None = None) -> Response[ErrorBody]:
    return Response(
        content=ErrorBody(error=message), status_code=status_code, media_type="application/json", headers=headers
    )


def _sign_in(_request: Request[Any, Any, Any], _exc: SignInRequired) -> Response[ErrorBody]:
    return error(401, SIGN_IN)


def _service(_request: Request[Any, Any, Any], exc: TributaryError) -> Response[ErrorBody]:
    if isinstance(exc, TooManyAttempts):  # RFC 9110 section 10.2.3: when to ask again, in seconds
        return error(status_for(exc), exc.message, {"Retry-After": str(exc.retry_after)})
    return error(status_for(exc), exc.message)


def _validation_text(exc: ValidationException) -> str:
    """Litestar's validation detail, as one sentence (which field, and what is wrong with it)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict) and item.get("message"):
            key = item.get("key")
            return f"{item['message']}" + (f" ({key})." if key else ".")
    return "The request is not valid JSON of the expected shape."


def _http(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc, PermissionDeniedException) and "CSRF" in str(exc.detail):
        return error(403, CSRF_FAILED)
    if isinstance(exc, ValidationException):
        return error(400, _validation_text(exc))
    if exc.status_code == 404:
        return error(404, "There is nothing at this address.")
    if exc.status_code == 405:
        return error(405, "This method is not allowed here.")
    if exc.status_code >= 500:
        return error(exc.status_code, "Tributary could not answer. Try again later.")
    return error(exc.status_code, str(exc.detail))


def _unexpected(_request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    if is_out_of_range_id(exc):  # an id no row can have slipped past validation: simply not found
        return error(404, "There is nothing at this address.")
    return error(500, "Tributary hit an unexpected error. Try again later.")


API_EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    SignInRequired: _sign_in,
    TributaryError: _service,
    HTTPException: _http,
    Exception: _unexpected,
}
