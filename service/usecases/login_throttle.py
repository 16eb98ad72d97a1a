"""Login throttling: how many sign-ins a client may try, for one address and in all, and how an
address under attack is slowed down without locking its owner out.

Three counts, in one process's memory, over a sliding window (`window_seconds`,
default 15 minutes):

- per (client, address): `per_pair` failures (default 5). Over budget, that
  client may not try that address again until the window slides;
- per client: `per_client` failures (default 20) across all addresses, which
  bounds one client guessing many addresses;
- per address, from any client: after `per_address_free` failures (default 5),
  every further attempt at that address first waits `address_delay_seconds`
  (default 2 s), and only one such slowed attempt per address runs at a time
  and at most one starts per `address_delay_seconds`: any other attempt at
  that address meanwhile is refused as throttled, without a password check.
  So however many clients guess at one address, it gets at most one password
  check per 2 s. This is a slow-down, never a lock-out: a lock-out per address
  would let anyone keep its owner out for good by failing five times, so the
  owner, signing in from a client that has not failed, gets in once no
  attacker's slowed attempt is in flight (a little later, perhaps after a
  retry). A guesser spread over many clients is also held to `per_pair`
  guesses per client per window, `per_client` in all.

The client is the peer's IP address as the web face sees it: a forwarded header
counts only from TRIBUTARY_TRUSTED_PROXIES (see web.app), never by default. An
IPv6 client counts by its /64 network (one subscriber or host usually holds a
whole /64, RFC 6177 / RFC 4291 section 2.5.1, so its addresses are no fresh
clients); an IPv4 client, and an IPv4-mapped IPv6 one, by its full address.

Every attempt is counted as a failure *before* its password is checked, in one
step with the budget check (no await in between, so the event loop cannot run
another attempt in the middle); a success then takes its count back. Forty
concurrent guesses therefore get `per_pair` password checks, not forty. While a
budget is spent, sign-in is refused before any password work (no argon2 for an
attacker, no oracle) with one generic sentence, and unknown addresses are
counted exactly like real ones, so being throttled reveals nothing about
whether an account exists. A success also forgets the address's failures and
the pair's (not the client's other failures).

Old entries are pruned as the window slides, and the number of tracked keys is
capped, so a flood of made-up addresses cannot grow memory without bound. The
counts are per process: with several web processes each enforces its own budget.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from service.domain.users import UserView
from service.errors import AuthenticationFailed
from service.persistence.database import Database
from service.usecases.users import authenticate

TOO_MANY_ATTEMPTS = "Too many attempts; try again in a few minutes."
MAX_TRACKED_KEYS = 100_000


class SignInThrottled(AuthenticationFailed):
    """Too many failed sign-ins from this client; the same words whoever asks."""

    def __init__(self) -> None:
        super().__init__(TOO_MANY_ATTEMPTS)


def client_key(client: str | None) -> str:
    """The budget a client counts under: an IPv6 peer's /64 network, an IPv4 peer's address, else the text."""
    if not client:
        return "?"
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class Attempt:
    """One counted sign-in attempt: the keys it was counted under, at `stamp`, and whether to slow it."""

    keys: tuple[str, ...]
    address_key: str
    pair_key: str
    stamp: float
    slowed: bool


@dataclass
class LoginThrottle:
    """Counts sign-in attempts per (client, address), per client and per address (see the module)."""

    per_pair: int = 5
    per_client: int = 20
    per_address_free: int = 5
    address_delay_seconds: float = 2.0
    window_seconds: float = 15 * 60
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _counts: dict[str, deque[float]] = field(default_factory=dict)
    # Per address key: no slowed attempt may start before this time (math.inf while one is in flight).
    _slot: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def _keys(address: str, client: str | None) -> tuple[str, str, str]:
        normalised = address.strip().lower()
        peer = client_key(client)
        return f"p:{peer}\0{normalised}", f"c:{peer}", f"a:{normalised}"

    def _recent(self, key: str, now: float) -> int:
        stamps = self._counts.get(key)
        if stamps is None:
            return 0
        while stamps and stamps[0] <= now - self.window_seconds:
            stamps.popleft()
        if not stamps:
            del self._counts[key]
            return 0
        return len(stamps)

    def begin(self, *, address: str, client: str | None) -> Attempt:
        """Check the budgets and count this attempt as a failure, in one step; raise SignInThrottled when spent."""
        now = self.clock()
        pair_key, client_key, address_key = self._keys(address, client)
        if self._recent(pair_key, now) >= self.per_pair or self._recent(client_key, now) >= self.per_client:
            raise SignInThrottled()
        slowed = self._recent(address_key, now) >= self.per_address_free
        if slowed:
            if self._slot.get(address_key, -math.inf) > now:  # another slowed attempt is in flight, or just was
                raise SignInThrottled()
            self._slot[address_key] = math.inf
        if len(self._counts) >= MAX_TRACKED_KEYS:
            self._prune(now)
        keys = (pair_key, client_key, address_key)
        for key in keys:
            self._counts.setdefault(key, deque()).append(now)
        return Attempt(keys=keys, address_key=address_key, pair_key=pair_key, stamp=now, slowed=slowed)

    async def pause(self, attempt: Attempt) -> None:
        """Wait before checking the password when the address has failed too often lately."""
        if attempt.slowed:
            await self.sleep(self.address_delay_seconds)

    def finished(self, attempt: Attempt) -> None:
        """The attempt's password check is over (either way): the next slowed attempt may start after the delay."""
        if attempt.slowed:
            free_at = attempt.stamp + self.address_delay_seconds
            if free_at > self.clock():
                self._slot[attempt.address_key] = free_at
            else:
                self._slot.pop(attempt.address_key, None)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: take the attempt's count back, and forget the address's and pair's failures."""
        for key in attempt.keys:
            stamps = self._counts.get(key)
            if stamps is not None and attempt.stamp in stamps:
                stamps.remove(attempt.stamp)
                if not stamps:
                    del self._counts[key]
        self._counts.pop(attempt.address_key, None)
        self._counts.pop(attempt.pair_key, None)

    def _prune(self, now: float) -> None:
        for key in list(self._counts):
            self._recent(key, now)
        for key, free_at in list(self._slot.items()):
            if free_at <= now:
                del self._slot[key]
        while len(self._counts) >= MAX_TRACKED_KEYS:  # still full of live keys: drop the oldest inserted
            del self._counts[next(iter(self._counts))]


async def sign_in(*, db: Database, throttle: LoginThrottle, email: str, password: str, client: str | None) -> UserView:
    """Check a sign-in under the throttle. Raises SignInThrottled, or AuthenticationFailed for a wrong password."""
    attempt = throttle.begin(address=email, client=client)
    try:
        await throttle.pause(attempt)
        user = await authenticate(db=db, email=email, password=password)
    finally:
        throttle.finished(attempt)
    throttle.succeeded(attempt)
    return user
