"""The search results page: the user's messages matching a query, as a list like a folder's.

GET /mail/search?q=...&page=N   results newest first, each with its folder; a search form on top

The page stands on its own (it has its own search form, so it works before the mail layout
gets its search box) inside the mail layout: the folder tree, then the results. The query
language is service.domain.search_query; `service.usecases.search` does the work. Any
text is a query (one with nothing to look for finds nothing); a page number out of range
shows the nearest page there can be.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Response

from service.domain.users import UserView
from service.persistence.database import Database
from service.usecases import search
from service.usecases.reading import list_folders
from service.usecases.reading.pulse import pulse_of
from web.controllers.mail.present import folder_children, list_rows, move_targets
from web.support.rendering import page as render_page


def _page_url(query: str, number: int | None) -> str | None:
    return None if number is None else "/mail/search?" + urlencode({"q": query, "page": number})


@get("/mail/search", name="mail-search")
async def search_page(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    user: NamedDependency[UserView],
    q: FromQuery[str] = "",
    page: FromQuery[str] = "1",
) -> Response[Any]:
    query = q.strip()
    number = int(page) if page.isascii() and page.isdigit() and len(page) < 6 else 1
    number = min(max(number, 1), search.last_page())
    folders = await list_folders(db=db, user_id=user.id)
    results = await search.search(db=db, user_id=user.id, query=query, page=number) if query else None
    hits = results.hits if results else ()
    rows = list(zip(list_rows([h.message for h in hits], datetime.now(UTC)), [h.folder for h in hits], strict=True))
    own = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return render_page(
        "mail/search.html",
        viewer=user,
        nav="mail",
        folders=folders,
        children=folder_children(folders),
        current_folder=None,
        move_targets=move_targets(folders, 0),
        pulse=pulse_of(folders),
        live_url=own,
        query=query,
        results=results,
        rows=rows,
        newer_url=_page_url(query, results.previous_page if results else None),
        older_url=_page_url(query, results.next_page if results else None),
        narrow_hint=search.NARROW_HINT,
    )


ROUTES = [search_page]
