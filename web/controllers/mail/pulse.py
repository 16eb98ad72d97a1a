"""GET /mail/pulse?since=<fingerprint>: has the signed-in user's mail changed since the page was built?

The open mail page (static/js/live.js) asks every few seconds with the
fingerprint its #mail-layout carries (service.usecases.reading.pulse):

- 204 No Content: nothing changed (one indexed query over the user's folder
  rows; no template, no body);
- 200 with {"fingerprint": "...", "unread": n}: something did; the page fetches
  its own URL again and swaps in the folder tree and the list;
- 401: nobody (or a disabled user) is signed in; the page stops asking.

Who is signed in is decided as for every page (the `viewer` dependency: a
disabled user or a changed password ends the session), in one short read (the
user by primary key, the header badge's count); then one indexed query over
that user's folder rows, and only theirs. The
request neither renews nor rewrites the session (support.sessions
BACKGROUND_PATHS): a tab left open must not keep an idle session alive.
"""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Response

from service.domain.users import UserView
from service.errors import NotFound
from service.persistence.database import Database
from service.usecases.reading.pulse import mail_pulse

NO_STORE = {"Cache-Control": "no-store"}


@get("/mail/pulse", name="mail-pulse", include_in_schema=False)
async def pulse(
    db: NamedDependency[Database],
    viewer: NamedDependency[UserView | None],
    since: FromQuery[str | None] = None,
) -> Response[Any]:
    if viewer is None:
        return Response(content=b"", status_code=401, headers=NO_STORE)
    try:
        now = await mail_pulse(db=db, user_id=viewer.id)
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
