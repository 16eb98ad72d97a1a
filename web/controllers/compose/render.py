"""Answering a compose or outbox request: the whole page for a plain form, the fragment for htmx.

htmx (2.x) does not swap 4xx responses in, so a form with mistakes answers an
htmx request with 200 and its fragment; a plain form gets 400 and the page.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.response import Template

from service.domain.outbox import OutboxStatus
from service.domain.users import UserView
from web.support.rendering import page

RESULT_TITLES = {
    OutboxStatus.SENT: "Message sent",
    OutboxStatus.QUEUED: "Message queued",
    OutboxStatus.SENDING: "Message being sent",
    OutboxStatus.FAILED: "Message not sent",
    OutboxStatus.UNKNOWN: "Delivery unknown",
}
STATUS_NAMES = {
    OutboxStatus.SENT: "Sent",
    OutboxStatus.QUEUED: "Queued",
    OutboxStatus.SENDING: "Sending",
    OutboxStatus.FAILED: "Failed",
    OutboxStatus.UNKNOWN: "Delivery unknown",
}


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def respond(
    request: Request[Any, Any, Any],
    *,
    page_template: str,
    fragment_template: str,
    viewer: UserView,
    status: int = 200,
    **context: Any,
) -> Template:
    """The page, or for htmx its fragment (always 200, so that htmx swaps it in)."""
    context = {"nav": "compose", "result_titles": RESULT_TITLES, "status_names": STATUS_NAMES, **context}
    if is_htmx(request):
        response = page(fragment_template, viewer=viewer, **context)
    else:
        response = page(page_template, viewer=viewer, status_code=status, **context)
    response.headers["Vary"] = "HX-Request"
    return response
