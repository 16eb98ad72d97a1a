"""Exception handlers: every error becomes a page (or a redirect to sign in), and
unexpected ones are logged with a traceback, never with the request's data.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.response import Redirect
from litestar.types import ExceptionHandlersMap, Scope
from sqlalchemy.exc import DataError, StatementError

from service.errors import TributaryError
from web.support.dependencies import SignInRequired
from web.support.middleware import SECURITY_HEADERS
from web.support.rendering import page, status_for

log = logging.getLogger("web.errors")

CSRF_FAILED = "This form has expired or did not come from Tributary. Reload the page and try again."


def _error_page(status_code: int, title: str, message: str) -> Response[Any]:
    response = page("error.html", viewer=None, status_code=status_code, title=title, message=message)
    response.headers.update(SECURITY_HEADERS)  # errors raised before routing skip the middleware
    return response


def _is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def handle_sign_in_required(request: Request[Any, Any, Any], _exc: SignInRequired) -> Response[Any]:
    if _is_htmx(request):
        return Response(content=b"", status_code=401, headers={"HX-Redirect": "/login", **SECURITY_HEADERS})
    return Redirect(path="/login", status_code=303)


def handle_service_error(_request: Request[Any, Any, Any], exc: TributaryError) -> Response[Any]:
    """A service error that no form caught: its own words, with the status its kind maps to."""
    status = status_for(exc)
    return _error_page(status, "Something is not right" if status < 500 else "Something went wrong", exc.message)


def _is_api(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith("/api/")


def handle_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if _is_api(request):  # raised before any API handler ran (no route, wrong method): still JSON
        detail = "There is nothing at this address." if exc.status_code == 404 else str(exc.detail)
        return Response({"error": detail}, status_code=exc.status_code, headers=SECURITY_HEADERS)
    if isinstance(exc, PermissionDeniedException) and "CSRF" in str(exc.detail):
        return _error_page(403, "Please try again", CSRF_FAILED)
    if exc.status_code == 404:
        return _error_page(404, "Not found", "There is nothing at this address.")
    if exc.status_code >= 500:
        return _error_page(exc.status_code, "Something went wrong", "Tributary could not answer. Try again later.")
    return _error_page(exc.status_code, "Something is not right", str(exc.detail))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if is_out_of_range_id(exc):  # an id no row can have (beyond the id column): simply not found
        if _is_api(request):
            return Response({"error": "There is nothing at this address."}, status_code=404, headers=SECURITY_HEADERS)
        return _error_page(404, "Not found", "There is nothing at this address.")
    if _is_api(request):
        return Response({"error": "Tributary hit an unexpected error."}, status_code=500, headers=SECURITY_HEADERS)
    return _error_page(500, "Something went wrong", "Tributary hit an unexpected error. Try again later.")


def is_out_of_range_id(exc: BaseException) -> bool:
    """SQLite raises OverflowError, PostgreSQL a numeric-out-of-range DataError, for a giant id."""
    if isinstance(exc, OverflowError):
        return True
    if isinstance(exc, DataError) and "out of range" in str(exc.orig):
        return True
    return isinstance(exc, StatementError) and isinstance(exc.orig, OverflowError)


async def log_unexpected(exc: Exception, scope: Scope) -> None:
    """after_exception hook: a traceback for bugs; expected errors are the user's to read, not the log's."""
    if isinstance(exc, HTTPException | TributaryError) or is_out_of_range_id(exc):
        return
    log.error("unhandled error on %s %s", scope.get("method", "-"), scope["path"], exc_info=exc)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    SignInRequired: handle_sign_in_required,
    TributaryError: handle_service_error,
    HTTPException: handle_http_error,
    Exception: handle_unexpected,
}
