"""Signing in and out, and creating the first administrator on a fresh install.

GET/POST /setup works only while no user exists; it creates the administrator
and signs them in. GET/POST /login checks a password; every failure shows the
same words. Sign-ins are counted per (client, address), per client and per
address (service.usecases.login_throttle, one counter per app), before the
password is checked; over budget, /login answers 429 with one generic sentence
without checking it. The client is the peer address Litestar reports, which is
the forwarded one only behind TRIBUTARY_TRUSTED_PROXIES (see web.app). POST
/logout ends the session. Each successful sign-in rotates the session id and
the CSRF token (see support.sessions and support.csrf).

Each failed sign-in (wrong address or password, or refused by the throttle)
writes one WARNING line, `failed sign-in from CLIENT for 'ADDRESS' (REASON)`,
for fail2ban (README): the client comes first, at a fixed place, and the typed
address is quoted with its control characters escaped, so what a visitor types
can neither forge a line nor name another client. The password never is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body

from service.domain.users import UserView
from service.errors import AuthenticationFailed, Conflict, InvalidInput
from service.persistence.database import Database
from service.usecases.login_throttle import LoginThrottle, SignInThrottled
from service.usecases.login_throttle import sign_in as throttled_sign_in
from service.usecases.users import create_first_admin, needs_first_admin
from web.support.rendering import page, see_other, status_for
from web.support.sessions import sign_in, sign_out

log = logging.getLogger(__name__)

PASSWORDS_DIFFER = "The two passwords do not match."
LOGGED_ADDRESS_CHARS = 254  # the longest address there is; a longer entry is cut in the log line
THROTTLE_STATE_KEY = "login_throttle"


@dataclass
class SetupForm:
    email: str = ""
    display_name: str = ""
    password: str = ""
    password_confirm: str = ""


@dataclass
class LoginForm:
    email: str = ""
    password: str = ""


SetupBody = Annotated[SetupForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
LoginBody = Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)]


def _setup_page(
    *, email: str = "", display_name: str = "", error: str | None = None, status: int = 200
) -> Response[Any]:
    # Passwords are never sent back to the browser, not even after a mistake.
    return page("setup.html", viewer=None, status_code=status, email=email, display_name=display_name, error=error)


def _login_page(*, email: str = "", error: str | None = None, status: int = 200) -> Response[Any]:
    return page("login.html", viewer=None, status_code=status, email=email, error=error)


@get("/setup", name="setup")
async def setup_form(db: NamedDependency[Database]) -> Response[Any]:
    if not await needs_first_admin(db=db):
        return see_other("/login")
    return _setup_page()


@post("/setup")
async def setup_submit(
    request: Request[Any, Any, Any], data: SetupBody, db: NamedDependency[Database]
) -> Response[Any]:
    if not await needs_first_admin(db=db):
        return see_other("/login")
    if data.password != data.password_confirm:
        return _setup_page(email=data.email, display_name=data.display_name, error=PASSWORDS_DIFFER, status=400)
    try:
        admin = await create_first_admin(
            db=db, email=data.email, password=data.password, display_name=data.display_name
        )
    except (InvalidInput, Conflict) as exc:
        return _setup_page(email=data.email, display_name=data.display_name, error=exc.message, status=status_for(exc))
    sign_in(request, admin)
    return see_other("/")


@get("/login", name="login")
async def login_form(db: NamedDependency[Database], viewer: NamedDependency[UserView | None]) -> Response[Any]:
    if viewer is not None:
        return see_other("/")
    if await needs_first_admin(db=db):
        return see_other("/setup")
    return _login_page()


def login_throttle(request: Request[Any, Any, Any]) -> LoginThrottle:
    """The app's throttle, made on first use (one per app, so each test's app starts afresh)."""
    state = request.app.state
    throttle = state.get(THROTTLE_STATE_KEY)
    if not isinstance(throttle, LoginThrottle):
        throttle = LoginThrottle()
        state[THROTTLE_STATE_KEY] = throttle
    return throttle


@post("/login")
async def login_submit(
    request: Request[Any, Any, Any], data: LoginBody, db: NamedDependency[Database]
) -> Response[Any]:
    client = request.client.host if request.client else None
    try:
        user = await throttled_sign_in(
            db=db, throttle=login_throttle(request), email=data.email, password=data.password, client=client
        )
    except SignInThrottled as exc:
        _log_failed_sign_in(client, data.email, "too many attempts")
        return _login_page(email=data.email, error=exc.message, status=429)
    except AuthenticationFailed as exc:
        _log_failed_sign_in(client, data.email, "wrong address or password")
        return _login_page(email=data.email, error=exc.message, status=status_for(exc))
    sign_in(request, user)
    return see_other("/")


def _log_failed_sign_in(client: str | None, address: str, reason: str) -> None:
    log.warning("failed sign-in from %s for %r (%s)", client or "unknown", address[:LOGGED_ADDRESS_CHARS], reason)


@post("/logout", name="logout")
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    sign_out(request)
    return see_other("/login")


ROUTES = [setup_form, setup_submit, login_form, login_submit, logout]
