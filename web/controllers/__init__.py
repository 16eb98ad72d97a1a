"""The web face's route handlers, thin: parse input, call one use case, render one template.

`web/support/` holds the HTTP plumbing they share (sessions, CSRF, dependencies, errors).
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from web.controllers import auth, health, mail, metrics

ROUTE_HANDLERS: list[ControllerRouterHandler] = [*auth.ROUTES, *mail.ROUTES, *health.ROUTES, *metrics.ROUTES]
