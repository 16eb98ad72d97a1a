"""The Mail pages: folders with unread counts, message lists, reading a message, and changing them.

`pages`: the list and the message (HTML pages). `content`: the message's body
frame, inline images and downloads, each with its own strict headers.
`actions`: mark read/unread, move, delete. `pulse`: the cheap "did my mail change?"
endpoint the open page polls (static/js/live.js). `present`: formatting for the
templates. `links`: signed URLs for inline images (the sandboxed frame sends
no cookies). The work itself is in service.usecases.reading and .mailbox.
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from web.controllers.mail import actions, content, download, pages, pulse, search

ROUTES: list[ControllerRouterHandler] = [
    *pages.ROUTES,
    *content.ROUTES,
    *download.ROUTES,
    *actions.ROUTES,
    *pulse.ROUTES,
    *search.ROUTES,
]
