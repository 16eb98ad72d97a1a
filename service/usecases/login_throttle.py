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
capped, so a flood of made-up addresses cannot grow memory without bound. Keys
are kept in three tables ordered by last use (client and pair keys; address
keys below the slow-down; addresses at it, under attack), so each attempt drops
expired keys from the fronts and, when the cap is reached, the least recently
used key of the first table that has one, in O(1): never a scan on the event
loop. A flood of made-up addresses (one failure each) thus cannot reset the
slow-down of an address under attack; it can at worst reset budgets of clients,
which the address's slow-down does not rely on. The
counts are per process: with several web processes each enforces its own budget.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from service.domain.users import Authenticated
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
    # Key -> its failure stamps (never empty), each table ordered by last use (the front expires first).
    # Address keys below the slow-down, address keys at it (under attack), client and pair keys.
    _addresses: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _attacked: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _clients: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    # Per address key: no slowed attempt may start before this time (math.inf while one is in flight),
    # ordered by when it was set, so the front is the first to lapse.
    _slot: OrderedDict[str, float] = field(default_factory=OrderedDict)

    @staticmethod
    def _keys(address: str, client: str | None) -> tuple[str, str, str]:
        normalised = address.strip().lower()
        peer = client_key(client)
        return f"p:{peer}\0{normalised}", f"c:{peer}", f"a:{normalised}"

    @property
    def tracked_keys(self) -> int:
        return len(self._addresses) + len(self._attacked) + len(self._clients)

    def _table(self, key: str) -> OrderedDict[str, deque[float]]:
        if not key.startswith("a:"):
            return self._clients
        return self._attacked if key in self._attacked else self._addresses

    def _recent(self, key: str, now: float) -> int:
        table = self._table(key)
        stamps = table.get(key)
        if stamps is None:
            return 0
        while stamps and stamps[0] <= now - self.window_seconds:
            stamps.popleft()
        if not stamps:
            del table[key]
            return 0
        return len(stamps)

    def _count(self, key: str, now: float) -> None:
        table = self._table(key)
        stamps = table.get(key)
        if stamps is None:
            table[key] = deque([now])
        else:
            stamps.append(now)
            table.move_to_end(key)
            if table is self._addresses and len(stamps) >= self.per_address_free:
                self._attacked[key] = self._addresses.pop(key)

    def _make_room(self, now: float) -> None:
        """Drop expired keys (at the fronts), then, while over the cap, the least recently used client or pair
        key, else quiet address key, else address under attack.

        Called after an attempt counted its keys, which are therefore the last to go."""
        cutoff = now - self.window_seconds
        tables = (self._clients, self._addresses, self._attacked)
        for table in tables:
            while table and table[next(iter(table))][-1] <= cutoff:
                table.popitem(last=False)
        while self.tracked_keys > MAX_TRACKED_KEYS:
            next(table for table in tables if table).popitem(last=False)
        while self._slot and self._slot[next(iter(self._slot))] <= now:
            self._slot.popitem(last=False)

    def begin(self, *, address: str, client: str | None) -> Attempt:
        """Check the budgets and count this attempt as a failure, in one step; raise SignInThrottled when spent."""
        now = self.clock()
        pair_key, peer_key, address_key = self._keys(address, client)
        if self._recent(pair_key, now) >= self.per_pair or self._recent(peer_key, now) >= self.per_client:
            raise SignInThrottled()
        slowed = self._recent(address_key, now) >= self.per_address_free
        if slowed:
            if self._slot.get(address_key, -math.inf) > now:  # another slowed attempt is in flight, or just was
                raise SignInThrottled()
            self._slot[address_key] = math.inf
            self._slot.move_to_end(address_key)
        keys = (pair_key, peer_key, address_key)
        for key in keys:
            self._count(key, now)
        self._make_room(now)
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
                self._slot.move_to_end(attempt.address_key)
            else:
                self._slot.pop(attempt.address_key, None)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: take the attempt's count back, and forget the address's and pair's failures."""
        for key in attempt.keys:
            table = self._table(key)
            stamps = table.get(key)
            if stamps is not None and attempt.stamp in stamps:
                stamps.remove(attempt.stamp)
                if not stamps:
                    del table[key]
        self._addresses.pop(attempt.address_key, None)
        self._attacked.pop(attempt.address_key, None)
        self._clients.pop(attempt.pair_key, None)


async def sign_in(
    *, db: Database, throttle: LoginThrottle, email: str, password: str, client: str | None
) -> Authenticated:
    """Check a sign-in under the throttle. Raises SignInThrottled, or AuthenticationFailed for a wrong password."""
    attempt = throttle.begin(address=email, client=client)
    try:
        await throttle.pause(attempt)
        user = await authenticate(db=db, email=email, password=password)
    finally:
        throttle.finished(attempt)
    throttle.succeeded(attempt)
    return user
