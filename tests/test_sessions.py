"""A signed-in session ends after the idle time, and every visit pushes that end further away.

(Rotation at sign-in, sign-out, cookie flags and Secure behind HTTPS are in test_web_auth.py.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from litestar import Litestar
from litestar.stores.base import StorageObject
from litestar.testing import AsyncTestClient

from service.config import Settings
from tests.fixtures.webapp import SESSION_COOKIE, WebClient, set_up_admin
from web.app import create_app


class Clock:
    """How far the session store's clock is ahead of the real one."""

    offset = timedelta()


def _now() -> datetime:
    return datetime.now(UTC) + Clock.offset


def _new(cls: type[StorageObject], data: bytes, expires_in: int | timedelta | None) -> StorageObject:
    if expires_in is not None and not isinstance(expires_in, timedelta):
        expires_in = timedelta(seconds=expires_in)
    return cls(data=data, expires_at=(_now() + expires_in) if expires_in else None)


def _expired(self: StorageObject) -> bool:
    return self.expires_at is not None and _now() >= self.expires_at


@pytest.fixture
async def short_client(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WebClient]:
    Clock.offset = timedelta()
    # The store stamps and checks expiry with the wall clock: let the test move it.
    monkeypatch.setattr(StorageObject, "new", classmethod(_new))
    monkeypatch.setattr(StorageObject, "expired", property(_expired))
    app: Litestar = create_app(settings.model_copy(update={"session_idle_minutes": 1}))
    async with AsyncTestClient(app=app) as client:
        client.follow_redirects = False
        yield client


async def test_an_idle_session_expires(short_client: WebClient) -> None:
    await set_up_admin(short_client)
    assert (await short_client.get("/")).status_code == 200
    session_id = short_client.cookies[SESSION_COOKIE]

    Clock.offset += timedelta(seconds=61)
    stale = await short_client.get("/")
    assert stale.status_code == 303
    assert stale.headers["location"] == "/login"
    # The browser may still hold the id, but it opens nothing: it is never adopted again.
    short_client.cookies.set(SESSION_COOKIE, session_id, domain="testserver.local")
    assert (await short_client.get("/")).headers["location"] == "/login"


async def test_activity_keeps_a_session_alive(short_client: WebClient) -> None:
    await set_up_admin(short_client)
    for _ in range(3):  # 3 x 45 s: longer than the idle time in total, never idle for that long
        Clock.offset += timedelta(seconds=45)
        response = await short_client.get("/")
        assert response.status_code == 200
        [cookie] = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")]
        assert "Max-Age=60" in cookie
