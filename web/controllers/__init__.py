"""The web face's route handlers, thin: parse input, call one use case, render one template.

`web/support/` holds the HTTP plumbing they share (sessions, CSRF, dependencies, errors).
"""

from __future__ import annotations

from litestar import Router
from litestar.types import ControllerRouterHandler

from web.controllers import admin, api, auth, compose, health, mail, settings

# The pages are not part of the API's OpenAPI schema; only /api/v1 is.
PAGES = Router(
    path="/",
    route_handlers=[
        *auth.ROUTES,
        *mail.ROUTES,
        *compose.ROUTES,
        *settings.ROUTES,
        *admin.ROUTES,
        *health.ROUTES,
    ],
    include_in_schema=False,
)

ROUTE_HANDLERS: list[ControllerRouterHandler] = [PAGES, *api.ROUTES]
"""Every route but /metrics, which web.app adds when TRIBUTARY_METRICS is on (controllers.metrics)."""
