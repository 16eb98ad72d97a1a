"""The web face's route handlers, thin: parse input, call one use case, render one template.

`web/support/` holds the HTTP plumbing they share (sessions, CSRF, dependencies, errors).
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from web.controllers import admin, api, auth, compose, health, mail, metrics, settings

ROUTE_HANDLERS: list[ControllerRouterHandler] = [
    *auth.ROUTES,
    *mail.ROUTES,
    *compose.ROUTES,
    *settings.ROUTES,
    *admin.ROUTES,
    *health.ROUTES,
    *metrics.ROUTES,
    *api.ROUTES,
]
