"""Sign-in is throttled per address and per client, with words that reveal nothing about accounts."""

from __future__ import annotations

import pytest
from litestar import Litestar

from service.usecases.login_throttle import TOO_MANY_ATTEMPTS, LoginThrottle, SignInThrottled
from tests.fixtures.webapp import ADMIN_EMAIL, ADMIN_PASSWORD, SESSION_COOKIE, WebClient, log_in, set_up_admin
from web.controllers.auth import THROTTLE_STATE_KEY

SIGN_IN_FAILED = "The email address or password is not correct."


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _install(app: Litestar, **options: float) -> FakeClock:
    clock = FakeClock()
    app.state[THROTTLE_STATE_KEY] = LoginThrottle(clock=clock, **options)  # type: ignore[arg-type]
    return clock


async def _signed_out_admin(client: WebClient) -> None:
    await set_up_admin(client)
    client.cookies.delete(SESSION_COOKIE)


async def test_an_address_is_throttled_after_five_failures_then_recovers(
    web_app: Litestar, web_client: WebClient
) -> None:
    clock = _install(web_app)
    await _signed_out_admin(web_client)
    for _ in range(5):
        failed = await log_in(web_client, password="wrong guess")
        assert failed.status_code == 401
        assert SIGN_IN_FAILED in failed.text

    blocked = await log_in(web_client)  # even the right password: no password is checked while throttled
    assert blocked.status_code == 429
    assert TOO_MANY_ATTEMPTS in blocked.text
    assert SESSION_COOKIE not in web_client.cookies
    # The address is matched however it is typed.
    assert (await log_in(web_client, email=ADMIN_EMAIL.upper())).status_code == 429

    clock.now += 15 * 60 + 1
    ok = await log_in(web_client)
    assert ok.status_code == 303
    assert SESSION_COOKIE in web_client.cookies


async def test_unknown_and_real_addresses_are_throttled_alike(web_app: Litestar, web_client: WebClient) -> None:
    _install(web_app)
    await _signed_out_admin(web_client)
    answers: dict[str, list[tuple[int, str]]] = {}
    for email in (ADMIN_EMAIL, "nobody@example.test"):
        seen = answers.setdefault(email, [])
        for _ in range(6):
            response = await log_in(web_client, email=email, password="wrong guess")
            text = TOO_MANY_ATTEMPTS if TOO_MANY_ATTEMPTS in response.text else SIGN_IN_FAILED
            assert text in response.text
            seen.append((response.status_code, text))
    assert answers[ADMIN_EMAIL] == answers["nobody@example.test"]
    assert answers[ADMIN_EMAIL][-1] == (429, TOO_MANY_ATTEMPTS)


async def test_a_client_is_throttled_across_addresses(web_app: Litestar, web_client: WebClient) -> None:
    _install(web_app)
    await _signed_out_admin(web_client)
    for n in range(20):  # four guesses at each of five made-up addresses: no address budget is spent
        response = await log_in(web_client, email=f"guess{n // 4}@example.test", password=f"wrong {n}")
        assert response.status_code == 401
    blocked = await log_in(web_client)
    assert blocked.status_code == 429
    assert TOO_MANY_ATTEMPTS in blocked.text


async def test_a_success_forgets_the_address_failures(web_app: Litestar, web_client: WebClient) -> None:
    _install(web_app)
    await _signed_out_admin(web_client)
    for _ in range(4):
        assert (await log_in(web_client, password="wrong guess")).status_code == 401
    assert (await log_in(web_client, password=ADMIN_PASSWORD)).status_code == 303
    web_client.cookies.delete(SESSION_COOKIE)
    for _ in range(4):
        assert (await log_in(web_client, password="wrong guess")).status_code == 401
    assert (await log_in(web_client)).status_code == 303


def test_the_throttle_window_slides() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(per_address=2, per_client=100, window_seconds=60, clock=clock)
    throttle.record_failure(address="a@example.test", client="10.0.0.1")
    clock.now += 30
    throttle.record_failure(address="a@example.test", client="10.0.0.1")
    with pytest.raises(SignInThrottled, match=TOO_MANY_ATTEMPTS):
        throttle.check(address="a@example.test", client="10.0.0.2")
    clock.now += 31  # the first failure left the window
    throttle.check(address="a@example.test", client="10.0.0.1")
