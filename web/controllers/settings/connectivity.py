"""GET /settings/connectivity: the "SMTP Accounts" and "Email Retrieval" cards, each row with
its health and buttons; a card says so when the domain's administrator turned its feature off.
GET /settings/port: the port a security mode suggests (htmx swaps it into the forms)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from service.config import Settings
from service.domain.users import UserView
from service.errors import FeatureDisabled
from service.persistence.database import Database
from service.persistence.types import utcnow
from service.usecases.oauth_targets import sign_in_states
from service.usecases.retrieval_tasks import check_retrieval_enabled, list_tasks
from service.usecases.smtp_accounts import list_smtp_accounts
from web.controllers.settings import present
from web.controllers.settings.common import AnyRequest, pop_flash
from web.controllers.settings.oauth import with_provider_csp
from web.controllers.settings.retrieval_form import suggested_port
from web.support.rendering import page, see_other


async def connectivity_context(db: Database, user: UserView) -> dict[str, Any]:
    """Both cards' rows, and the administrator's words for a feature that is turned off."""
    now = utcnow()
    context: dict[str, Any] = {"smtp_disabled": None, "smtp_rows": [], "retrieval_disabled": None}
    smtp_sign_ins = await sign_in_states(db=db, kind="smtp", user_id=user.id)
    task_sign_ins = await sign_in_states(db=db, kind="retrieval", user_id=user.id)
    try:
        context["smtp_rows"] = [
            present.smtp_row(a, now, sign_in=smtp_sign_ins.get(a.id))
            for a in await list_smtp_accounts(db=db, user_id=user.id)
        ]
    except FeatureDisabled as exc:  # still listed, with only Delete, so stored passwords can be removed
        context["smtp_disabled"] = exc.message
        accounts = await list_smtp_accounts(db=db, user_id=user.id, even_if_turned_off=True)
        context["smtp_rows"] = [
            present.smtp_row(a, now, enabled=False, sign_in=smtp_sign_ins.get(a.id)) for a in accounts
        ]
    try:
        await check_retrieval_enabled(db=db, user_id=user.id)
    except FeatureDisabled as exc:
        context["retrieval_disabled"] = exc.message
    enabled = context["retrieval_disabled"] is None
    tasks = await list_tasks(db=db, user_id=user.id)
    context["retrieval_enabled"] = enabled
    context["task_rows"] = [
        present.task_row(t, now, retrieval_enabled=enabled, sign_in=task_sign_ins.get(t.id)) for t in tasks
    ]
    return context


async def connectivity_page(db: Database, user: UserView, *, status_code: int = 200, **extra: Any) -> Response[Any]:
    context = await connectivity_context(db, user)
    return page(
        "settings/connectivity.html",
        viewer=user,
        status_code=status_code,
        nav="settings",
        section="connectivity",
        **context,
        **extra,
    )


@get("/settings/connectivity", name="settings-connectivity")
async def connectivity(
    request: AnyRequest,
    db: NamedDependency[Database],
    user: NamedDependency[UserView],
    settings: NamedDependency[Settings],
) -> Response[Any]:
    response = await connectivity_page(db, user, flash=pop_flash(request))
    return with_provider_csp(response, settings)  # Reconnect leads to the provider


@get("/settings", name="settings")
async def settings_home(user: NamedDependency[UserView]) -> Response[Any]:
    return see_other("/settings/connectivity")


@get("/settings/port", name="settings-port")
async def port_suggestion(
    user: NamedDependency[UserView],
    protocol: FromQuery[str] = "imap",
    security: FromQuery[str] = "ssl",
    port: FromQuery[str] = "",
) -> Response[Any]:
    """The port input with the port the chosen type and security suggest (a typed custom port stays)."""
    port_id = "smtp-port" if protocol == "smtp" else "task-port"
    return page("settings/_port.html", viewer=user, port_id=port_id, port=suggested_port(protocol, security, port))


ROUTES = [connectivity, settings_home, port_suggestion]
