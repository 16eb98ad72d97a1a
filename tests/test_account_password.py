"""Settings, Account: a user changes their own password. The current password is required (and
counted by the login throttle); the new one meets the password rules; every other session of
the user ends while the one it was changed from stays signed in under a new id."""

from __future__ import annotations

import httpx

from service.persistence.database import Database
from service.usecases.users import add_user
from tests.fixtures.webapp import ADMIN_PASSWORD, SESSION_COOKIE, WebClient, log_in, post_form, set_up_admin
from tests.settings_web import text_of

HOST = "testserver.local"
USER = "carol@example.test"
OLD = "carol's old long password"
NEW = "a brand new passphrase for carol"


async def _signed_in_as_carol(client: WebClient, db: Database) -> str:
    """Carol, a plain user, signed in; returns her session id."""
    await set_up_admin(client)
    await add_user(db=db, email=USER, password=OLD)
    client.cookies.clear()
    assert (await log_in(client, email=USER, password=OLD)).status_code == 303
    return client.cookies[SESSION_COOKIE]


def _use_session(client: WebClient, session_id: str) -> None:
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, session_id, domain=HOST)


async def _change(client: WebClient, current: str, new: str, repeat: str | None = None) -> httpx.Response:
    fields = {
        "current_password": current,
        "new_password": new,
        "new_password_confirm": new if repeat is None else repeat,
    }
    return await post_form(client, "/settings/account", fields)


async def test_settings_link_to_the_account_page(web_client: WebClient, db: Database) -> None:
    await _signed_in_as_carol(web_client, db)
    logs = await web_client.get("/settings/logs")
    assert 'href="/settings/account"' in logs.text
    page = await web_client.get("/settings/account")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for label in ("Current password", "New password", "Repeat the new password", "Change password"):
        assert label in text_of(page.text)


async def test_changing_the_password_ends_the_other_sessions_and_keeps_this_one(
    web_client: WebClient, db: Database
) -> None:
    elsewhere = await _signed_in_as_carol(web_client, db)
    web_client.cookies.clear()
    assert (await log_in(web_client, email=USER, password=OLD)).status_code == 303
    here = web_client.cookies[SESSION_COOKIE]
    assert here != elsewhere

    changed = await _change(web_client, OLD, NEW)
    assert changed.status_code == 303, changed.text
    assert changed.headers["location"] == "/settings/account"
    rotated = web_client.cookies[SESSION_COOKIE]
    assert rotated != here  # the session id is rotated, like at sign-in
    done = await web_client.get("/settings/account")
    assert done.status_code == 200
    assert "Your password is changed. You were signed out everywhere else." in text_of(done.text)

    _use_session(web_client, here)  # the id from before the change is worthless
    assert (await web_client.get("/settings/account")).headers["location"] == "/login"
    _use_session(web_client, elsewhere)  # the other browser is signed out
    assert (await web_client.get("/")).headers["location"] == "/login"
    assert (await web_client.get("/api/v1/session")).status_code == 401

    web_client.cookies.clear()
    assert (await log_in(web_client, email=USER, password=OLD)).status_code == 401
    assert (await log_in(web_client, email=USER, password=NEW)).status_code == 303


async def test_mistakes_change_nothing_and_never_echo_a_password(web_client: WebClient, db: Database) -> None:
    await _signed_in_as_carol(web_client, db)
    wrong = await _change(web_client, "not my password at all", NEW)
    assert wrong.status_code == 401
    assert "Your current password is not correct." in text_of(wrong.text)
    differ = await _change(web_client, OLD, NEW, repeat=NEW + "x")
    assert differ.status_code == 400
    assert "The two new passwords do not match." in text_of(differ.text)
    short = await _change(web_client, OLD, "short")
    assert short.status_code == 400
    assert "The password must be at least 8 characters long." in text_of(short.text)
    common = await _change(web_client, OLD, "password123")
    assert common.status_code == 400
    assert "one of the most common" in text_of(common.text)
    same = await _change(web_client, OLD, OLD)
    assert same.status_code == 400
    for response in (wrong, differ, short, common, same):
        for secret in (OLD, NEW, "not my password at all", "password123"):
            assert secret not in response.text
    # Still signed in, and the password is still the old one.
    assert (await web_client.get("/settings/account")).status_code == 200
    web_client.cookies.clear()
    assert (await log_in(web_client, email=USER, password=NEW)).status_code == 401
    assert (await log_in(web_client, email=USER, password=OLD)).status_code == 303


async def test_guessing_the_current_password_is_throttled_like_a_sign_in(web_client: WebClient, db: Database) -> None:
    await _signed_in_as_carol(web_client, db)
    for n in range(5):
        assert (await _change(web_client, f"guess number {n}", NEW)).status_code == 401
    throttled = await _change(web_client, OLD, NEW)  # even the right one: the budget is spent
    assert throttled.status_code == 429
    assert "Too many attempts" in text_of(throttled.text)
    web_client.cookies.clear()
    assert (await log_in(web_client, email=USER, password=OLD)).status_code == 429  # same client, same address


async def test_an_administrator_changes_their_own_password_too(web_client: WebClient) -> None:
    await set_up_admin(web_client)
    assert (await _change(web_client, ADMIN_PASSWORD, NEW)).status_code == 303
    assert (await web_client.get("/admin")).status_code == 200
