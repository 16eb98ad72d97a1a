"""The Administration page, for administrators only (anyone else gets 403).

GET /admin: the OAuth2 sign-in providers users are offered (read-only: configured in the
environment, issue 15), every domain's settings (the "IMAP/POP Retrieval" and "SMTP Accounts"
switches, the company relay with a write-only password, limits, allowed remote
hosts), the users (each with its page to edit, disable, delete or set a new password: see
`users`) and an "Add user" form. POST /admin/domains/{id} saves one domain; POST /admin/users
adds a user. Both answer with the page (a plain form)
or, for htmx, the part that changed; mistakes show inline with what was typed,
never a password.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Annotated, Any

from litestar import Request, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.enums import RequestEncodingType
from litestar.exceptions import PermissionDeniedException
from litestar.params import Body, FromPath
from litestar.response import Template

from service.config import Settings
from service.domain.oauth import usable_providers
from service.domain.users import UserView
from service.errors import Conflict, InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases.domains import DomainSettings, list_domain_settings, update_domain
from service.usecases.user_admin import list_user_accounts
from service.usecases.users import add_user
from web.controllers.admin import users as user_pages
from web.controllers.admin.forms import ON, DomainForm, UserForm
from web.controllers.settings.common import pop_flash
from web.support.rendering import page

ADMINS_ONLY = "Only administrators can open the Administration page."

DomainBody = Annotated[DomainForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
UserBody = Annotated[UserForm, Body(media_type=RequestEncodingType.URL_ENCODED)]


@dataclass(frozen=True, slots=True)
class ProviderLine:
    """One configured OAuth2 provider, as the Administration page lists it."""

    label: str
    name: str
    servers: str  # the mail servers it fills the forms with


@dataclass(frozen=True, slots=True)
class SignInProviders:
    """Which OAuth2 providers users are offered (issue 15), read-only: the environment configures them."""

    providers: list[ProviderLine]
    redirect_uri: str | None  # to register with each provider; None without TRIBUTARY_PUBLIC_URL
    problem: str | None = None  # invalid TRIBUTARY_OAUTH_* values: those providers are not offered


def sign_in_providers(settings: Settings) -> SignInProviders:
    redirect_uri = settings.oauth_redirect_uri if settings.public_url else None
    configured, problems = usable_providers(settings, os.environ)
    lines = []
    for provider in configured.values():
        servers = [
            f"{part.upper()} {server.host}:{server.port}"
            for part in ("imap", "pop3", "smtp")
            if (server := provider.server(part)) is not None
        ]
        lines.append(ProviderLine(provider.label, provider.name, ", ".join(servers) or "no mail servers set"))
    return SignInProviders(lines, redirect_uri, " ".join(problems) or None)


@dataclass(frozen=True, slots=True)
class DomainCard:
    """One domain's card: its stored settings, the form's values, and what the last save said."""

    domain: DomainSettings
    form: DomainForm
    notice: str | None = None
    error: str | None = None
    password_dropped: bool = False


async def provide_admin(user: NamedDependency[UserView]) -> UserView:
    if not user.is_admin:
        raise PermissionDeniedException(ADMINS_ONLY)
    return user


def _is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def _answer(request: Request[Any, Any, Any], admin: UserView, fragment: str, status: int, **context: Any) -> Template:
    if _is_htmx(request):  # htmx swaps only 2xx responses in
        response = page(fragment, viewer=admin, nav="admin", **context)
    else:
        response = page("admin/page.html", viewer=admin, nav="admin", status_code=status, **context)
    response.headers["Vary"] = "HX-Request"
    return response


async def _context(db: Database, settings: Settings, changed: DomainCard | None = None, **users: Any) -> dict[str, Any]:
    domains = await list_domain_settings(db=db)
    cards = [changed if changed and changed.domain.id == d.id else DomainCard(d, DomainForm.of(d)) for d in domains]
    return {
        "sign_in": sign_in_providers(settings),
        "cards": cards,
        "users": await list_user_accounts(db=db),
        "user_form": users.get("user_form") or UserForm(),
        "user_notice": users.get("user_notice"),
        "user_error": users.get("user_error"),
    }


@get("/", name="admin")
async def admin_page(
    request: Request[Any, Any, Any],
    admin: NamedDependency[UserView],
    db: NamedDependency[Database],
    settings: NamedDependency[Settings],
) -> Template:
    done = pop_flash(request)  # what a user's page did last (a deleted user)
    context = await _context(db, settings, user_notice=done.text if done else None)
    return page("admin/page.html", viewer=admin, nav="admin", **context)


@post("/domains/{domain_id:int}")
async def save_domain(
    request: Request[Any, Any, Any],
    domain_id: FromPath[int],
    data: DomainBody,
    admin: NamedDependency[UserView],
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    settings: NamedDependency[Settings],
) -> Template:
    try:
        saved = await update_domain(
            db=db,
            secret_box=secret_box,
            domain_id=domain_id,
            settings=data.settings(),
            relay_password=data.relay_password or None,
        )
    except InvalidInput as exc:
        current = next((d for d in await list_domain_settings(db=db) if d.id == domain_id), None)
        if current is None:
            raise NotFound("This domain does not exist.") from exc
        typed = replace(data, relay_password="")  # a password is never sent back to the browser
        card = DomainCard(current, typed, error=exc.message, password_dropped=bool(data.relay_password))
        return _answer(request, admin, "admin/_domain.html", 400, card=card, **await _context(db, settings, card))
    card = DomainCard(saved, DomainForm.of(saved), notice=f"Saved the settings of {saved.name}.")
    return _answer(request, admin, "admin/_domain.html", 200, card=card, **await _context(db, settings, card))


@post("/users")
async def add_user_submit(
    request: Request[Any, Any, Any],
    data: UserBody,
    admin: NamedDependency[UserView],
    db: NamedDependency[Database],
    settings: NamedDependency[Settings],
) -> Template:
    try:
        added = await add_user(
            db=db,
            email=data.email,
            password=data.password,
            is_admin=data.is_admin == ON,
            display_name=data.display_name,
        )
    except (InvalidInput, Conflict) as exc:
        context = await _context(db, settings, user_form=replace(data, password=""), user_error=exc.message)
        return _answer(request, admin, "admin/_users_response.html", 400, **context)
    context = await _context(
        db, settings, user_notice=f"Added {added.email}{' as an administrator' if added.is_admin else ''}."
    )
    return _answer(request, admin, "admin/_users_response.html", 200, **context)


ROUTES = [
    Router(
        path="/admin",
        route_handlers=[admin_page, save_domain, add_user_submit, *user_pages.ROUTES],
        dependencies={"admin": Provide(provide_admin)},
    )
]
