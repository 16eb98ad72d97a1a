"""GET /mail/pulse?since=<fingerprint>: has the signed-in user's mail changed since the page was built?

The open mail page (static/js/live.js) asks every few seconds with the
fingerprint its #mail-layout carries (service.usecases.reading.pulse):

- 204 No Content: nothing changed (one indexed query over the user's folder
  rows; no template, no body);
- 200 with {"fingerprint": "...", "unread": n}: something did; the page fetches
  its own URL again and swaps in the folder tree and the list;
- 401: nobody (or a disabled user) is signed in; the page stops asking.

The user comes from the session directly rather than the `user` dependency,
which would also load the header's badge: a request every few seconds per open
tab should cost one query. Only the signed-in user's folders are read.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Response

from service.errors import NotFound
from service.persistence.database import Database
from service.usecases.reading.pulse import mail_pulse
from web.support.sessions import session_user_id

NO_STORE = {"Cache-Control": "no-store"}


@get("/mail/pulse", name="mail-pulse", include_in_schema=False)
async def pulse(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    since: FromQuery[str | None] = None,
) -> Response[Any]:
    user_id = session_user_id(request)
    if user_id is None:
        return Response(content=b"", status_code=401, headers=NO_STORE)
    try:
        now = await mail_pulse(db=db, user_id=user_id)
    except NotFound:
        return Response(content=b"", status_code=401, headers=NO_STORE)
    if since == now.fingerprint:
        return Response(content=b"", status_code=204, headers=NO_STORE)
    return Response(
        content={"fingerprint": now.fingerprint, "unread": now.unread},
        media_type="application/json",
        headers=NO_STORE,
    )


ROUTES = [pulse]
