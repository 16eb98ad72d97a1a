"""The JSON API under /api/v1: everything the pages do, for scripts and other clients.

Controllers are as thin as the pages' and call the same use cases, scoped to the
signed-in user (another user's account, task, folder, message, attachment or
outbox entry answers 404). Authentication is the page session's cookie; an
anonymous call answers 401 JSON. CSRF applies as on the pages: an unsafe method
(POST, PUT, DELETE) needs the token in the X-CSRFToken header; GET /api/v1/session
returns it (the cookie itself is HttpOnly). Errors are {"error": "<sentence>"}
(see errors). Request and response shapes are their own classes (schemas, and
the In/Out classes beside each controller): never table models, never a password.
Each operation declares its sign-in (session cookie, and the CSRF header for writes) and
the errors it can answer (contract), so the OpenAPI document says what the API does; a
schemathesis run over every operation holds it to that (tests/test_openapi_contract.py).

The OpenAPI schema is JSON only, at /api/v1/schema/openapi.json: Litestar's UIs
load their scripts from CDNs, which Tributary does not.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Router, get, route
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.params import FromPath
from litestar.types import ControllerRouterHandler
from litestar.utils.scope.state import ScopeState

from service.domain.users import UserView
from web.controllers.api.contract import SECURITY_SCHEMES, reads
from web.controllers.api.discover import ROUTES as DISCOVER_ROUTES
from web.controllers.api.errors import API_EXCEPTION_HANDLERS
from web.controllers.api.filters import FiltersController
from web.controllers.api.folders_manage import FolderAdminController
from web.controllers.api.mail import FoldersController, MessagesController
from web.controllers.api.oauth import ROUTES as OAUTH_ROUTES
from web.controllers.api.retrieval import RetrievalTasksController
from web.controllers.api.search import SearchController
from web.controllers.api.sending import LogsController, OutboxController, SendController
from web.controllers.api.smtp import SmtpAccountsController

API_PATH = "/api/v1"
SCHEMA_PATH = f"{API_PATH}/schema"


class SessionOut(msgspec.Struct):
    """Who is signed in, and the CSRF token to send in X-CSRFToken with POST, PUT and DELETE."""

    user_id: int
    email: str
    display_name: str
    is_admin: bool
    csrf_token: str


@get("/session", tags=["Session"], **reads())
async def session_info(request: Request[Any, Any, Any], user: NamedDependency[UserView]) -> SessionOut:
    token = ScopeState.from_scope(request.scope).csrf_token
    return SessionOut(
        user_id=user.id,
        email=user.email,
        display_name=user.display_name,
        is_admin=user.is_admin,
        csrf_token=token if isinstance(token, str) else "",
    )


@route(
    "/{rest:path}",
    http_method=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
    sync_to_thread=False,
)
def nothing_here(rest: FromPath[str]) -> None:
    """Any other path under /api/v1 whose first segment names no API resource: a JSON 404.

    (A path that goes astray deeper, or a method a route lacks, is answered by the router, before any
    handler: the app's HTML 404 or 405.)
    """
    raise NotFoundException()


API_ROUTER = Router(
    path=API_PATH,
    route_handlers=[
        session_info,
        SmtpAccountsController,
        RetrievalTasksController,
        FiltersController,
        FoldersController,
        FolderAdminController,
        SearchController,
        MessagesController,
        SendController,
        OutboxController,
        LogsController,
        *OAUTH_ROUTES,
        *DISCOVER_ROUTES,
        nothing_here,
    ],
    exception_handlers=API_EXCEPTION_HANDLERS,
)

ROUTES: list[ControllerRouterHandler] = [API_ROUTER]

OPENAPI_CONFIG = OpenAPIConfig(
    title="Tributary API",
    version="1",
    description="The JSON API of Tributary. Sign in through /login (the session cookie); send the CSRF token "
    "from /api/v1/session in the X-CSRFToken header with every POST, PUT and DELETE. Every error is "
    '{"error": "<one sentence>"}.',
    path=SCHEMA_PATH,
    render_plugins=[JsonRenderPlugin()],
    components=SECURITY_SCHEMES,
)
