"""CSRF tokens are bound to the session: a token pair planted from a sibling origin is worthless,
sign-in and sign-out change the token, requests another site sends are refused, and with secure
cookies the cookies carry the __Host- prefix."""

from __future__ import annotations

from typing import Any, cast

import httpx
import pytest
from litestar.testing import AsyncTestClient

from service.config import Settings
from service.persistence.database import Database
from service.usecases.users import list_users
from tests.fixtures.webapp import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    SESSION_COOKIE,
    WebClient,
    csrf_token,
    form_token,
    log_in,
    set_up_admin,
)
from web.app import create_app
from web.support.csrf import CSRF_COOKIE, CSRF_HEADER

HOST = "testserver.local"
CSRF_FAILED = "Reload the page and try again"


def _new_user(email: str) -> dict[str, str]:
    return {"email": email, "display_name": "", "password": "a long new password"}


async def _emails(db: Database) -> list[str]:
    return sorted(u.email for u in await list_users(db=db))


async def test_a_token_pair_from_an_anonymous_page_cannot_act_for_a_signed_in_user(
    web_client: WebClient, db: Database
) -> None:
    await set_up_admin(web_client)  # the victim, signed in
    # The attacker loads the sign-in page anonymously and keeps the cookie and the form's token...
    transport = httpx.ASGITransport(app=cast(Any, web_client.app))
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as attacker:
        page = await attacker.get("/login")
        planted_cookie, planted_token = attacker.cookies[CSRF_COOKIE], form_token(page.text)
    # ...plants the cookie in the victim's browser (a sibling origin can set cookies for the site)
    # and makes the victim's browser post a form with the token.
    web_client.cookies.set(CSRF_COOKIE, planted_cookie, domain=HOST)
    forged = await web_client.post(
        "/admin/users", data={"_csrf_token": planted_token, **_new_user("evil@example.test")}
    )
    assert forged.status_code == 403
    assert CSRF_FAILED in forged.text
    by_header = await web_client.post(
        "/admin/users", data=_new_user("evil@example.test"), headers={CSRF_HEADER: planted_token}
    )
    assert by_header.status_code == 403
    assert await _emails(db) == [ADMIN_EMAIL]

    # The victim's own page still works: the token is bound to the session, not to that cookie.
    own = await web_client.post(
        "/admin/users", data={"_csrf_token": await csrf_token(web_client), **_new_user("ok@example.test")}
    )
    assert own.status_code == 200
    assert await _emails(db) == [ADMIN_EMAIL, "ok@example.test"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://sibling.testserver.local"},
        {"Origin": "http://testserver.local:8080"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver.local"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_a_request_from_another_site_is_refused_even_with_the_token(
    web_client: WebClient, db: Database, headers: dict[str, str]
) -> None:
    await set_up_admin(web_client)
    data = {"_csrf_token": await csrf_token(web_client), **_new_user("new@example.test")}
    refused = await web_client.post("/admin/users", data=data, headers=headers)
    assert refused.status_code == 403
    assert await _emails(db) == [ADMIN_EMAIL]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://testserver.local"},
        {"Origin": "http://TESTSERVER.local:80"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver.local"},
        {"Sec-Fetch-Site": "none"},
        {},  # a script: no browser headers, the token alone
    ],
)
async def test_same_origin_requests_with_the_token_pass(
    web_client: WebClient, db: Database, headers: dict[str, str]
) -> None:
    await set_up_admin(web_client)
    data = {"_csrf_token": await csrf_token(web_client), **_new_user("new@example.test")}
    assert (await web_client.post("/admin/users", data=data, headers=headers)).status_code == 200
    assert await _emails(db) == [ADMIN_EMAIL, "new@example.test"]
    missing = await web_client.post("/admin/users", data=_new_user("other@example.test"), headers=headers)
    assert missing.status_code == 403


async def test_sign_in_and_sign_out_change_the_token(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    await web_client.post("/logout", headers={CSRF_HEADER: await csrf_token(web_client)})
    anonymous = await csrf_token(web_client)
    anonymous_cookie = web_client.cookies[CSRF_COOKIE]

    assert (await log_in(web_client)).status_code == 303
    signed_in = await csrf_token(web_client)
    assert signed_in != anonymous
    assert web_client.cookies[CSRF_COOKIE] != anonymous_cookie  # the visitor's nonce is replaced too
    stale = await web_client.post("/admin/users", data={"_csrf_token": anonymous, **_new_user("a@example.test")})
    assert stale.status_code == 403

    out = await web_client.post("/logout", headers={CSRF_HEADER: signed_in})
    assert out.status_code == 303
    after = await csrf_token(web_client)
    assert after not in (signed_in, anonymous)
    for old in (signed_in, anonymous):
        refused = await web_client.post(
            "/login", data={"_csrf_token": old, "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert refused.status_code == 403
    assert SESSION_COOKIE not in web_client.cookies
    assert await _emails(db) == [ADMIN_EMAIL]


def _cookie(response: httpx.Response, name: str) -> str:
    [cookie] = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    return cookie


async def test_secure_cookies_use_the_host_prefix(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"secure_cookies": True}))
    async with AsyncTestClient(app=app, base_url="https://testserver.local") as client:
        client.follow_redirects = False
        page = await client.get("/setup")
        csrf = _cookie(page, f"__Host-{CSRF_COOKIE}")
        fields = {
            "email": ADMIN_EMAIL,
            "display_name": "",
            "password": ADMIN_PASSWORD,
            "password_confirm": ADMIN_PASSWORD,
        }
        response = await client.post("/setup", data={"_csrf_token": form_token(page.text), **fields})
        assert response.status_code == 303
        session = _cookie(response, f"__Host-{SESSION_COOKIE}")
        for cookie in (csrf, session):
            assert "Secure" in cookie
            assert "HttpOnly" in cookie
            assert "Path=/" in cookie
            assert "Domain" not in cookie
        assert not [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")]
        home = await client.get("/")
        assert home.status_code == 200
        assert ADMIN_EMAIL in home.text
        token = form_token(home.text)
        assert (await client.post("/logout", data={"_csrf_token": token})).status_code == 303
        assert (await client.get("/")).headers["location"] == "/login"


async def test_a_token_that_is_not_ascii_is_refused_not_a_crash(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    response = await web_client.post("/logout", headers={CSRF_HEADER.encode(): "t\xf6ken".encode("latin-1")})
    assert response.status_code == 403
    query = await web_client.post("/logout?_csrf_token=%C3%B6")
    assert query.status_code == 403
