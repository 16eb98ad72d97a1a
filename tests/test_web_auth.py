"""Signing in to Tributary through the web face: first-run setup, sign-in, sign-out,
session ids, CSRF, health and the headers every page carries.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import httpx
import pytest
from litestar import get
from litestar.di import NamedDependency
from litestar.testing import AsyncTestClient

import web
from service.config import Settings
from service.domain.users import UserView
from service.errors import (
    AuthenticationFailed,
    Conflict,
    CredentialsRejected,
    FeatureDisabled,
    InvalidInput,
    NotFound,
    TributaryError,
)
from service.persistence.database import Database
from service.usecases.users import add_user, list_users
from tests.fixtures.webapp import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    SESSION_COOKIE,
    WebClient,
    csrf_token,
    form_token,
    log_in,
    post_form,
    set_up_admin,
)
from web.app import create_app
from web.support.csrf import CSRF_COOKIE
from web.support.rendering import status_for

HOST = "testserver.local"  # AsyncTestClient's default base URL
SIGN_IN_FAILED = "The email address or password is not correct."


def _session_files(settings: Settings) -> list[Path]:
    return [p for p in (settings.data_dir / "sessions").iterdir() if ".tmp" not in p.name]


def _set_cookie_headers(response_headers: httpx.Headers) -> list[str]:
    return response_headers.get_list("set-cookie")


async def _use_only_session_id(client: WebClient, session_id: str) -> None:
    """Make the client present exactly this session id (and nothing else)."""
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, session_id, domain=HOST)


# First run


async def test_fresh_install_sends_visitors_to_setup(web_client: WebClient) -> None:
    home = await web_client.get("/")
    assert home.status_code == 303
    assert home.headers["location"] == "/setup"
    login = await web_client.get("/login")
    assert login.status_code == 303
    assert login.headers["location"] == "/setup"

    setup = await web_client.get("/setup")
    assert setup.status_code == 200
    assert "Create the first administrator" in setup.text
    for field_id, label in [
        ("setup-email", "Email address"),
        ("setup-display-name", "Display name"),
        ("setup-password", "Password"),
        ("setup-password-confirm", "Confirm password"),
    ]:
        assert f'<label for="{field_id}">{label}</label>' in setup.text
        assert f'id="{field_id}"' in setup.text


async def test_setup_creates_the_administrator_and_signs_them_in(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)

    home = await web_client.get("/")
    assert home.status_code == 200
    assert ADMIN_EMAIL in home.text
    assert "Sign out" in home.text
    assert "Inbox" in home.text
    [admin] = await list_users(db=db)
    assert admin.email == ADMIN_EMAIL
    assert admin.is_admin
    assert admin.display_name == "Ada Admin"


async def test_setup_shows_mistakes_inline_and_never_echoes_passwords(web_client: WebClient, db: Database) -> None:
    response = await post_form(
        web_client,
        "/setup",
        {"email": ADMIN_EMAIL, "display_name": "Ada", "password": "first-Pa55word", "password_confirm": "other-Pa55"},
    )
    assert response.status_code == 400
    assert "The two passwords do not match." in response.text
    assert f'value="{ADMIN_EMAIL}"' in response.text
    assert "first-Pa55word" not in response.text

    short = await post_form(
        web_client,
        "/setup",
        {"email": ADMIN_EMAIL, "display_name": "", "password": "short", "password_confirm": "short"},
    )
    assert short.status_code == 400
    assert "at least 8 characters" in short.text

    bad_address = await post_form(
        web_client,
        "/setup",
        {"email": "not-an-address", "display_name": "", "password": ADMIN_PASSWORD, "password_confirm": ADMIN_PASSWORD},
    )
    assert bad_address.status_code == 400
    assert "not a valid email address" in bad_address.text
    assert 'role="alert"' in bad_address.text
    assert await list_users(db=db) == []
    assert SESSION_COOKIE not in web_client.cookies


async def test_setup_is_refused_once_a_user_exists(web_client: WebClient, db: Database) -> None:
    await add_user(db=db, email="first@example.test", password=ADMIN_PASSWORD, is_admin=True)

    page = await web_client.get("/setup")
    assert page.status_code == 303
    assert page.headers["location"] == "/login"
    attempt = await post_form(
        web_client,
        "/setup",
        {"email": "intruder@example.test", "display_name": "", "password": "x" * 12, "password_confirm": "x" * 12},
    )
    assert attempt.status_code == 303
    assert attempt.headers["location"] == "/login"
    assert [u.email for u in await list_users(db=db)] == ["first@example.test"]
    assert SESSION_COOKIE not in web_client.cookies
    home = await web_client.get("/")
    assert home.headers["location"] == "/login"


# Sign-in


async def test_wrong_password_and_unknown_address_get_the_same_generic_error(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    await web_client.post("/logout", headers={"X-CSRFToken": await csrf_token(web_client)})

    wrong_password = await log_in(web_client, password="not the password")
    unknown_user = await log_in(web_client, email="nobody@example.test")
    for response in (wrong_password, unknown_user):
        assert response.status_code == 401
        assert SIGN_IN_FAILED in response.text
        assert 'role="alert"' in response.text
        assert "not the password" not in response.text
    assert 'value="nobody@example.test"' in unknown_user.text
    assert SESSION_COOKIE not in web_client.cookies
    assert (await web_client.get("/")).headers["location"] == "/login"

    ok = await log_in(web_client)
    assert ok.status_code == 303
    assert ok.headers["location"] == "/"
    assert (await web_client.get("/")).status_code == 200


async def test_signed_in_user_visiting_login_goes_to_mail(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    response = await web_client.get("/login")
    assert response.status_code == 303
    assert response.headers["location"] == "/"


async def test_session_id_rotates_at_sign_in_and_the_old_id_is_dead(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    first_id = web_client.cookies[SESSION_COOKIE]

    assert (await log_in(web_client)).status_code == 303
    second_id = web_client.cookies[SESSION_COOKIE]
    assert second_id != first_id
    assert (await web_client.get("/")).status_code == 200

    await _use_only_session_id(web_client, first_id)
    stale = await web_client.get("/")
    assert stale.status_code == 303
    assert stale.headers["location"] == "/login"


async def test_a_client_chosen_session_id_is_never_adopted(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    await web_client.post("/logout", headers={"X-CSRFToken": await csrf_token(web_client)})
    chosen = "f" * 64  # an attacker plants this id in the victim's browser, then waits for them to sign in

    token = await csrf_token(web_client)
    web_client.cookies.clear()
    web_client.cookies.set(SESSION_COOKIE, chosen, domain=HOST)
    web_client.cookies.set(CSRF_COOKIE, token, domain=HOST)
    response = await log_in(web_client)
    assert response.status_code == 303
    issued = web_client.cookies[SESSION_COOKIE]
    assert issued != chosen

    await _use_only_session_id(web_client, chosen)
    assert (await web_client.get("/")).headers["location"] == "/login"


async def test_sign_out_ends_the_session(web_client: WebClient, settings: Settings) -> None:
    await set_up_admin(web_client)
    session_id = web_client.cookies[SESSION_COOKIE]
    assert len(_session_files(settings)) == 1

    response = await post_form(web_client, "/logout", {})
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    expired = [c for c in _set_cookie_headers(response.headers) if c.startswith(f"{SESSION_COOKIE}=")]
    assert expired
    assert "Max-Age=0" in expired[0]
    assert SESSION_COOKIE not in web_client.cookies
    assert _session_files(settings) == []
    assert (await web_client.get("/")).headers["location"] == "/login"

    await _use_only_session_id(web_client, session_id)
    assert (await web_client.get("/")).headers["location"] == "/login"


async def test_session_cookie_is_private_and_expires_after_the_idle_time(
    web_client: WebClient, settings: Settings
) -> None:
    await set_up_admin(web_client)
    response = await web_client.get("/")
    [cookie] = [c for c in _set_cookie_headers(response.headers) if c.startswith(f"{SESSION_COOKIE}=")]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert f"Max-Age={settings.session_idle_minutes * 60}" in cookie
    assert "Secure" not in cookie  # settings.secure_cookies is off here


async def test_cookies_are_secure_when_configured(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"secure_cookies": True}))
    async with AsyncTestClient(app=app, base_url="https://testserver.local") as client:
        client.follow_redirects = False
        page = await client.get("/setup")
        [csrf] = [c for c in _set_cookie_headers(page.headers) if c.startswith(f"__Host-{CSRF_COOKIE}=")]
        assert "Secure" in csrf
        assert "HttpOnly" in csrf
        response = await client.post(
            "/setup",
            data={
                "_csrf_token": form_token(page.text),
                "email": ADMIN_EMAIL,
                "display_name": "",
                "password": ADMIN_PASSWORD,
                "password_confirm": ADMIN_PASSWORD,
            },
        )
        assert response.status_code == 303
        [session] = [c for c in _set_cookie_headers(response.headers) if c.startswith(f"__Host-{SESSION_COOKIE}=")]
        assert "Secure" in session
        assert "HttpOnly" in session


async def test_anonymous_visits_store_no_sessions(web_client: WebClient, settings: Settings) -> None:
    for path in ("/", "/setup", "/login", "/health"):
        response = await web_client.get(path)
        assert not [c for c in _set_cookie_headers(response.headers) if c.startswith(f"{SESSION_COOKIE}=")]
    assert _session_files(settings) == []


async def test_pages_needing_a_user_send_visitors_to_sign_in(web_client: WebClient, settings: Settings) -> None:
    @get("/test-only/private", sync_to_thread=False)
    def private(user: NamedDependency[UserView]) -> str:
        return f"hello {user.email}"

    web_client.app.register(private)
    anonymous = await web_client.get("/test-only/private")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login"
    htmx = await web_client.get("/test-only/private", headers={"HX-Request": "true"})
    assert htmx.status_code == 401
    assert htmx.headers["hx-redirect"] == "/login"

    await set_up_admin(web_client)
    signed_in = await web_client.get("/test-only/private")
    assert signed_in.status_code == 200
    assert signed_in.text == f"hello {ADMIN_EMAIL}"


# CSRF


async def test_posts_without_a_valid_csrf_token_are_refused(web_client: WebClient, db: Database) -> None:
    await csrf_token(web_client)  # the browser has the cookie, but the form lacks the token
    fields = {"email": ADMIN_EMAIL, "display_name": "", "password": ADMIN_PASSWORD, "password_confirm": ADMIN_PASSWORD}

    missing = await web_client.post("/setup", data=fields)
    assert missing.status_code == 403
    assert "Reload the page and try again" in missing.text
    forged = await web_client.post("/setup", data={"_csrf_token": "0" * 128, **fields})
    assert forged.status_code == 403
    token = form_token((await web_client.get("/setup")).text)
    web_client.cookies.clear()
    no_cookie = await web_client.post("/setup", data={"_csrf_token": token, **fields})
    assert no_cookie.status_code == 403
    assert await list_users(db=db) == []


async def test_forms_and_htmx_carry_the_csrf_token(web_client: WebClient) -> None:
    page = await web_client.get("/setup")
    token = form_token(page.text)
    assert f'hx-headers=\'{{"X-CSRFToken": "{token}"}}\'' in page.text

    await set_up_admin(web_client)
    home = await web_client.get("/")
    token = form_token(home.text)  # the sign-out form: the signed-in session's token (see test_csrf_binding)
    assert f'hx-headers=\'{{"X-CSRFToken": "{token}"}}\'' in home.text
    htmx_style = await web_client.post("/logout", headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert htmx_style.status_code == 303
    assert (await web_client.get("/")).headers["location"] == "/login"


# Health, headers, logs, errors


async def test_health_answers_ok_without_cookies(web_client: WebClient) -> None:
    response = await web_client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert _set_cookie_headers(response.headers) == []


async def test_health_reports_an_unreachable_database(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/nothing",
        secret_key=None,
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": "unavailable",
        "reason": "The database cannot be reached.",
    }


@pytest.mark.parametrize("path", ["/setup", "/health", "/no-such-page", "/static/css/app.css"])
async def test_security_headers_on_every_response(web_client: WebClient, path: str) -> None:
    response = await web_client.get(path)
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


async def test_pages_have_no_inline_scripts_or_styles(web_client: WebClient) -> None:
    for html in [(await web_client.get("/setup")).text]:
        assert "<script>" not in html
        assert "<script src=" in html
        assert " style=" not in html
        assert "<style" not in html
    await set_up_admin(web_client)
    home = (await web_client.get("/")).text
    assert "<script>" not in home
    assert " style=" not in home
    assert (await web_client.get("/")).headers["cache-control"] == "no-store"


async def test_logs_never_contain_passwords_cookies_or_tokens(
    web_client: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await set_up_admin(web_client)
    await log_in(web_client, password="wrong-Pa55word-canary")
    await log_in(web_client)
    session_id = web_client.cookies[SESSION_COOKIE]
    token = await csrf_token(web_client)

    assert "POST /login 303" in caplog.text
    assert "POST /login 401" in caplog.text
    for secret in (ADMIN_PASSWORD, "wrong-Pa55word-canary", session_id, token):
        assert secret not in caplog.text


async def test_htmx_is_served_from_the_vendored_file(web_client: WebClient) -> None:
    """htmx ships inside the package (web/static/vendor, no npm step); its version note says which one."""
    response = await web_client.get("/static/vendor/htmx.min.js")
    assert response.status_code == 200
    version_note = (Path(web.__file__).parent / "static" / "vendor" / "htmx.VERSION").read_text()
    assert "htmx.org 2.0.11" in version_note
    assert hashlib.sha256(response.content).hexdigest() in version_note
    assert response.headers["content-type"].startswith("text/javascript")
    assert b"htmx" in response.content


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInput("x"), 400),
        (AuthenticationFailed("x"), 401),
        (FeatureDisabled("x"), 403),
        (NotFound("x"), 404),
        (Conflict("x"), 409),
        (CredentialsRejected("x"), 502),
        (TributaryError("x"), 500),
    ],
)
def test_service_errors_map_to_statuses(error: TributaryError, status: int) -> None:
    assert status_for(error) == status
