"""/api/v1/messages/search: the search box as JSON (service.usecases.search).

GET /messages/search?q=...&page=1&per_page=50   the user's matching messages, newest first

`q` is the query language of the search box (words, "phrases", from:, to:, subject:,
has:attachment, is:unread, in:FOLDER, before:/after:YYYY-MM-DD). Each result is a row as in
a folder's message list (MessageSummaryOut's fields) plus its folder's id and name. Any
text in `q` is answered 200 (a query with nothing to look for finds nothing); only a
page number or size out of range is 400.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, Parameter

from service.domain.users import UserView
from service.persistence.database import Database
from service.usecases import search
from web.controllers.api.contract import reads


class SearchHitOut(msgspec.Struct):
    """A message found: a message-list row's fields (`folder` is its folder's path), and the folder's id and name."""

    id: int
    folder: str
    folder_id: int
    folder_name: str
    subject: str
    from_address: str
    date: datetime | None
    size: int
    seen: bool
    flagged: bool
    has_attachments: bool

    @classmethod
    def from_hit(cls, hit: search.SearchHit) -> SearchHitOut:
        m, f = hit.message, hit.folder
        return cls(m.id, f.path, f.id, f.name, m.subject, m.from_address, m.date, m.size, m.seen, m.flagged,
                   m.has_attachments)  # fmt: skip


class SearchPageOut(msgspec.Struct):
    """A page of results, newest first. Ask for `next_page` (or `previous_page`) as ?page= for the next one."""

    query: str
    page: int
    per_page: int
    messages: list[SearchHitOut]
    next_page: int | None
    previous_page: int | None
    indexing: int = 0  # the user's messages still being indexed for search: they may be missing from the results


class SearchController(Controller):
    path = "/messages/search"
    tags = ["Mail"]

    @get("/", **reads(400))
    async def search_messages(
        self,
        db: NamedDependency[Database],
        user: NamedDependency[UserView],
        q: FromQuery[str] = "",
        page: FromQuery[Annotated[int, Parameter(ge=1, le=search.MAX_PAGE)]] = 1,
        per_page: FromQuery[Annotated[int, Parameter(ge=1, le=search.MAX_PER_PAGE)]] = search.PAGE_SIZE,
    ) -> SearchPageOut:
        results = await search.search(db=db, user_id=user.id, query=q, page=page, per_page=per_page)
        return SearchPageOut(
            query=results.query,
            page=results.page,
            per_page=results.per_page,
            messages=[SearchHitOut.from_hit(h) for h in results.hits],
            next_page=results.next_page,
            previous_page=results.previous_page,
            indexing=results.indexing,
        )
