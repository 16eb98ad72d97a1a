"""The compose page (write, answer, forward, send, the result) and the Outbox.

`pages`: GET/POST /compose. `drafts`: POST /compose/draft ("Save draft", autosave).
`outbox`: GET /outbox, "Send again" and "Cancel" (back to Drafts). `forms`:
reading and checking the compose form. `render`: page or htmx fragment.
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from web.controllers.compose import drafts, outbox, pages

ROUTES: list[ControllerRouterHandler] = [*pages.ROUTES, *drafts.ROUTES, *outbox.ROUTES]
