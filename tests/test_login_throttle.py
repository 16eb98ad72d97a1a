"""Sign-in is throttled per (client, address), per client, and slowed per address, with words that
reveal nothing about accounts; attempts are counted before the password is checked; the client
address comes from X-Forwarded-For only behind a trusted proxy."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import httpx
import pytest
import uvicorn
from litestar import Litestar

from service.config import Settings
from service.domain import passwords
from service.usecases import login_throttle
from service.usecases.login_throttle import TOO_MANY_ATTEMPTS, LoginThrottle, SignInThrottled, client_key
from tests.fixtures.webapp import ADMIN_EMAIL, ADMIN_PASSWORD, SESSION_COOKIE, WebClient, log_in, set_up_admin
from web.app import create_app
from web.cli import server_options
from web.controllers.auth import THROTTLE_STATE_KEY

SIGN_IN_FAILED = "The email address or password is not correct."
_TOKEN = re.compile(r'name="_csrf_token" value="([0-9a-f]+)"')


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSleep:
    """Records the slow-downs instead of waiting them out; with a clock, moves it on as a real wait would."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.waits: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds


def _install(app: Litestar, *, sleep_moves_clock: bool = True) -> tuple[FakeClock, FakeSleep]:
    clock = FakeClock()
    sleep = FakeSleep(clock if sleep_moves_clock else None)
    app.state[THROTTLE_STATE_KEY] = LoginThrottle(clock=clock, sleep=sleep)
    return clock, sleep


async def _signed_out_admin(client: WebClient) -> None:
    await set_up_admin(client)
    client.cookies.delete(SESSION_COOKIE)


@pytest.fixture
async def from_address(web_app: Litestar, web_client: WebClient) -> AsyncIterator[object]:
    """Clients of the running app (web_client runs its lifespan) that connect from a chosen IP address."""
    opened: list[httpx.AsyncClient] = []

    def make(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=cast(Any, web_app), client=(ip, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver.local")
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()


async def _sign_in_from(client: httpx.AsyncClient, password: str) -> httpx.Response:
    """Sign in as a browser does: load the form, post it with its token."""
    page = await client.get("/login")
    match = _TOKEN.search(page.text)
    assert match is not None, page.text
    data = {"_csrf_token": match.group(1), "email": ADMIN_EMAIL, "password": password}
    return await client.post("/login", data=data)


async def test_a_client_is_throttled_on_an_address_after_five_failures_then_recovers(
    web_app: Litestar, web_client: WebClient
) -> None:
    clock, _ = _install(web_app)
    await _signed_out_admin(web_client)
    for _ in range(5):
        failed = await log_in(web_client, password="wrong guess")
        assert failed.status_code == 401
        assert SIGN_IN_FAILED in failed.text

    blocked = await log_in(web_client)  # this client, this address: no password is checked while throttled
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
    for n in range(20):  # four guesses at each of five made-up addresses: no pair budget is spent
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


async def test_concurrent_wrong_passwords_get_only_the_budget_of_checks(
    web_app: Litestar, web_client: WebClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(web_app)
    await _signed_out_admin(web_client)
    checked: list[str] = []
    verify = passwords.verify_password

    def counting_verify(password_hash: str | None, password: str) -> bool:
        checked.append(password)
        return verify(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password", counting_verify)
    await log_in(web_client, email="warm-up@example.test", password="not counted")  # the CSRF cookie
    checked.clear()

    answers = await asyncio.gather(*(log_in(web_client, password=f"guess {n}") for n in range(40)))
    assert len(checked) == 5
    assert sorted(a.status_code for a in answers) == [401] * 5 + [429] * 35


async def test_the_owner_gets_in_from_a_fresh_client_after_an_attackers_failures(
    web_app: Litestar, web_client: WebClient, from_address: object
) -> None:
    _, sleep = _install(web_app)
    await set_up_admin(web_client)
    make = from_address
    assert callable(make)
    attacker, owner, other = make("203.0.113.7"), make("198.51.100.20"), make("198.51.100.30")
    for _ in range(5):
        assert (await _sign_in_from(attacker, "wrong guess")).status_code == 401
    assert (await _sign_in_from(attacker, ADMIN_PASSWORD)).status_code == 429  # the attacker is locked out
    assert sleep.waits == []

    # A fresh client's guesses at the address are still checked, each after a slow-down.
    assert (await _sign_in_from(other, "wrong guess")).status_code == 401
    assert sleep.waits == [2.0]
    signed_in = await _sign_in_from(owner, ADMIN_PASSWORD)  # the owner is slowed, never locked out
    assert signed_in.status_code == 303
    assert sleep.waits == [2.0, 2.0]
    # Signing in forgets the address's failures: no more slow-down for the next one.
    owner.cookies.clear()
    assert (await _sign_in_from(owner, ADMIN_PASSWORD)).status_code == 303
    assert sleep.waits == [2.0, 2.0]


async def test_concurrent_guesses_from_many_clients_at_a_slowed_address_get_one_check(
    web_app: Litestar, web_client: WebClient, from_address: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, sleep = _install(web_app, sleep_moves_clock=False)  # all forty arrive within the same 2 s
    await set_up_admin(web_client)
    make = from_address
    assert callable(make)
    attacker = make("203.0.113.7")
    for _ in range(5):
        assert (await _sign_in_from(attacker, "wrong guess")).status_code == 401
    checked: list[str] = []
    verify = passwords.verify_password

    def counting_verify(password_hash: str | None, password: str) -> bool:
        checked.append(password)
        return verify(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password", counting_verify)
    helpers = [make(f"198.51.100.{n}") for n in range(1, 41)]
    answers = await asyncio.gather(*(_sign_in_from(c, f"guess {n}") for n, c in enumerate(helpers)))
    assert len(checked) == 1
    assert sorted(a.status_code for a in answers) == [401] + [429] * 39
    assert all(TOO_MANY_ATTEMPTS in a.text for a in answers if a.status_code == 429)
    assert sleep.waits == [2.0]


def test_a_slowed_address_takes_one_attempt_at_a_time_and_one_per_delay() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for n in range(5):
        throttle.finished(throttle.begin(address="a@example.test", client=f"10.0.0.{n}"))
    first = throttle.begin(address="a@example.test", client="10.0.1.1")
    assert first.slowed
    clock.now += 5  # however long the check takes, none other starts while it is in flight
    with pytest.raises(SignInThrottled):
        throttle.begin(address="a@example.test", client="10.0.1.2")
    throttle.finished(first)
    second = throttle.begin(address="a@example.test", client="10.0.1.3")
    assert second.slowed
    throttle.finished(second)  # at once: the next may not start until the delay has passed
    with pytest.raises(SignInThrottled):
        throttle.begin(address="a@example.test", client="10.0.1.4")
    clock.now += 2
    throttle.finished(throttle.begin(address="a@example.test", client="10.0.1.4"))
    throttle.begin(address="b@example.test", client="10.0.1.5")  # other addresses are not held up


def test_ipv6_clients_in_one_64_share_one_budget() -> None:
    throttle = LoginThrottle(clock=FakeClock())
    allowed = 0
    for n in range(40):  # forty "fresh" clients in one /64, each at another made-up address
        try:
            throttle.begin(address=f"guess{n}@example.test", client=f"2001:db8:1:2::{n + 1:x}")
        except SignInThrottled:
            continue
        allowed += 1
    assert allowed == 20
    for n in range(5):  # and one pair budget for one address
        throttle.begin(address="a@example.test", client=f"2001:db8:9:9:{n}::1")
    with pytest.raises(SignInThrottled):
        throttle.begin(address="a@example.test", client="2001:db8:9:9:ffff::1")
    throttle.begin(address="a@example.test", client="2001:db8:9:a::1")  # the next /64 is another client


def test_clients_are_keyed_by_ipv4_address_and_ipv6_64() -> None:
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_key(None) == "?"
    assert client_key("testclient") == "testclient"


def test_a_flood_past_the_key_cap_does_not_reset_an_address_under_attack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(login_throttle, "MAX_TRACKED_KEYS", 30)
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for n in range(5):
        throttle.finished(throttle.begin(address="victim@example.test", client=f"10.0.0.{n}"))
    for n in range(200):  # a flood of made-up addresses, each from a client of its own
        throttle.begin(address=f"made-up{n}@example.test", client=f"10.1.{n // 100}.{n % 100}")
        assert throttle.tracked_keys <= 30
    assert throttle.begin(address="victim@example.test", client="10.2.0.1").slowed

    clock.now += 15 * 60 + 1  # expired keys are the first to go
    throttle.begin(address="late@example.test", client="10.3.0.1")
    assert throttle.tracked_keys == 3


def test_the_throttle_window_slides() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(per_pair=2, per_client=100, window_seconds=60, clock=clock)
    throttle.begin(address="a@example.test", client="10.0.0.1")
    clock.now += 30
    throttle.begin(address="A@example.test", client="10.0.0.1")
    with pytest.raises(SignInThrottled, match=TOO_MANY_ATTEMPTS):
        throttle.begin(address="a@example.test", client="10.0.0.1")
    throttle.begin(address="a@example.test", client="10.0.0.2")  # another client is not locked out
    clock.now += 31  # the first attempt left the window
    throttle.begin(address="a@example.test", client="10.0.0.1")


# The client address behind `tributary serve`: a real uvicorn with serve's options, on loopback.


@pytest.fixture
def serve(settings: Settings) -> Iterator[object]:
    """Start the app as `tributary serve` would, for the given settings; yields its base URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def start(app_settings: Settings) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
        config = uvicorn.Config(create_app(app_settings), **{**server_options(host, port), "log_level": "warning"})
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        servers.append((server, thread, sock))
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive(), "the web app did not start"
            assert time.monotonic() < deadline, "the web app did not start in time"
            time.sleep(0.02)
        return f"http://{host}:{port}"

    yield start
    for server, thread, sock in servers:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def _sync_sign_in(client: httpx.Client, password: str, forwarded_for: str) -> int:
    page = client.get("/login")
    match = _TOKEN.search(page.text)
    assert match is not None, page.text
    data = {"_csrf_token": match.group(1), "email": ADMIN_EMAIL, "password": password}
    return client.post("/login", data=data, headers={"X-Forwarded-For": forwarded_for}).status_code


def _set_up(client: httpx.Client) -> None:
    page = client.get("/setup")
    match = _TOKEN.search(page.text)
    assert match is not None
    fields = {"email": ADMIN_EMAIL, "display_name": "", "password": ADMIN_PASSWORD, "password_confirm": ADMIN_PASSWORD}
    assert client.post("/setup", data={"_csrf_token": match.group(1), **fields}).status_code == 303
    client.cookies.clear()


def test_x_forwarded_for_from_an_untrusted_peer_does_not_reset_the_budget(settings: Settings, serve: object) -> None:
    assert callable(serve)
    with httpx.Client(base_url=serve(settings)) as client:
        _set_up(client)
        for n in range(5):  # each claims to come from another address; all come from 127.0.0.1
            assert _sync_sign_in(client, "wrong guess", f"192.0.2.{n}") == 401
        assert _sync_sign_in(client, "wrong guess", "192.0.2.99") == 429


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(settings: Settings, serve: object) -> None:
    assert callable(serve)
    behind_proxy = settings.model_copy(update={"trusted_proxies": "127.0.0.0/8"})
    with httpx.Client(base_url=serve(behind_proxy)) as client:
        _set_up(client)
        for _ in range(5):
            assert _sync_sign_in(client, "wrong guess", "192.0.2.1") == 401
        assert _sync_sign_in(client, "wrong guess", "192.0.2.1") == 429
        assert _sync_sign_in(client, ADMIN_PASSWORD, "192.0.2.2") == 303


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert Settings(trusted_proxies=" 10.0.0.1, 192.168.0.0/16 ,").trusted_proxy_list == ["10.0.0.1", "192.168.0.0/16"]
    assert Settings().trusted_proxy_list == []
    with pytest.raises(ValueError, match="not an IP address"):
        Settings(trusted_proxies="*")
