"""GET /settings/logs: the user's log entries, newest first, filtered by source, level and
account (a GET form, so a filtered view can be bookmarked), a page at a time ("Older entries"
follows the last entry's id: keyset paging, fast however long the log)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from service.domain.users import UserView
from service.domain.values import LogLevel, LogSource
from service.errors import FeatureDisabled
from service.persistence.database import Database
from service.persistence.types import utcnow
from service.usecases.logs import list_logs
from service.usecases.retrieval_tasks import list_tasks
from service.usecases.smtp_accounts import list_smtp_accounts
from web.controllers.settings import present
from web.support.rendering import page

PAGE_SIZE = 50


async def _accounts(db: Database, user: UserView) -> list[tuple[str, str]]:
    """The account filter's choices: ("task:<id>" | "smtp:<id>", label)."""
    choices = [(f"task:{t.id}", f"Retrieval: {t.name or t.username}") for t in await list_tasks(db=db, user_id=user.id)]
    try:
        accounts = await list_smtp_accounts(db=db, user_id=user.id)
    except FeatureDisabled:
        accounts = []
    return choices + [(f"smtp:{a.id}", f"SMTP: {a.email_address}") for a in accounts]


def _account_ids(account: str) -> tuple[int | None, int | None]:
    kind, _, number = account.partition(":")
    if not number.isdigit():
        return None, None
    return (int(number), None) if kind == "smtp" else (None, int(number)) if kind == "task" else (None, None)


@get("/settings/logs", name="settings-logs")
async def logs_page(
    db: NamedDependency[Database],
    user: NamedDependency[UserView],
    source: FromQuery[str] = "",
    level: FromQuery[str] = "",
    account: FromQuery[str] = "",
    before: FromQuery[int | None] = None,
) -> Response[Any]:
    chosen_source = next((s for s in LogSource if s.value == source), None)
    chosen_level = next((lv for lv in LogLevel if lv.value == level), None)
    smtp_id, task_id = _account_ids(account)
    entries = await list_logs(
        db=db,
        user_id=user.id,
        source=chosen_source,
        level=chosen_level,
        smtp_account_id=smtp_id,
        retrieval_task_id=task_id,
        limit=PAGE_SIZE + 1,
        before_id=before,
    )
    more = len(entries) > PAGE_SIZE
    entries = entries[:PAGE_SIZE]
    filters = {
        "source": chosen_source.value if chosen_source else "",
        "level": chosen_level.value if chosen_level else "",
        "account": account if smtp_id or task_id else "",
    }
    active = {name: value for name, value in filters.items() if value}
    older = "/settings/logs?" + urlencode({**active, "before": entries[-1].id}) if more and entries else None
    newest = "/settings/logs" + ("?" + urlencode(active) if active else "")
    now = utcnow()
    return page(
        "settings/logs.html",
        viewer=user,
        nav="settings",
        section="logs",
        entries=[(entry, present.moment(entry.created_at, now)) for entry in entries],
        filters=filters,
        filtered=bool(active),
        sources=[s.value for s in LogSource],
        levels=[lv.value for lv in LogLevel],
        accounts=await _accounts(db, user),
        older=older,
        newest=newest if before is not None else None,
    )


ROUTES = [logs_page]
