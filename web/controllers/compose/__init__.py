"""The compose page (write, answer, forward, send, the result) and the Outbox.

`pages`: GET/POST /compose. `outbox`: GET /outbox and "Send again". `forms`:
reading and checking the compose form. `render`: page or htmx fragment.
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from web.controllers.compose import outbox, pages

ROUTES: list[ControllerRouterHandler] = [*pages.ROUTES, *outbox.ROUTES]
