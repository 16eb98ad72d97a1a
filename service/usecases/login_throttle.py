"""Login throttling: how many failed sign-ins an address, or a client, may make in a window.

Two budgets, counted in one process's memory over a sliding window:

- per address (normalised, lower-case): `per_address` failures (default 5) in
  `window_seconds` (default 15 minutes). Addresses that have no account are
  counted exactly like real ones, so being throttled reveals nothing about
  whether an account exists;
- per client address (the peer IP): `per_client` failures (default 20), which
  bounds one client guessing across many addresses.

While either budget is spent, sign-in is refused before the password is checked
(no argon2 work for an attacker, and no oracle), with one generic sentence. A
success forgets the address's failures (not the client's). Old entries are
pruned as the window slides, and the number of tracked keys is capped, so a
flood of made-up addresses cannot grow memory without bound.

The counts are per process: with several web processes each enforces its own
budget, which still bounds guessing to (processes x budget) per window.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from service.errors import AuthenticationFailed

TOO_MANY_ATTEMPTS = "Too many attempts; try again in a few minutes."
MAX_TRACKED_KEYS = 100_000


class SignInThrottled(AuthenticationFailed):
    """Too many failed sign-ins from this address or client; the same words whoever asks."""

    def __init__(self) -> None:
        super().__init__(TOO_MANY_ATTEMPTS)


@dataclass
class LoginThrottle:
    """Counts failed sign-ins per address and per client; `check` raises SignInThrottled when over budget."""

    per_address: int = 5
    per_client: int = 20
    window_seconds: float = 15 * 60
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    @staticmethod
    def _address_key(address: str) -> str:
        return "a:" + address.strip().lower()

    @staticmethod
    def _client_key(client: str | None) -> str | None:
        return "c:" + client if client else None

    def _recent(self, key: str, now: float) -> int:
        stamps = self._failures.get(key)
        if stamps is None:
            return 0
        while stamps and stamps[0] <= now - self.window_seconds:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
            return 0
        return len(stamps)

    def check(self, *, address: str, client: str | None) -> None:
        """Raise SignInThrottled if this address or this client has spent its failures."""
        now = self.clock()
        if self._recent(self._address_key(address), now) >= self.per_address:
            raise SignInThrottled()
        client_key = self._client_key(client)
        if client_key is not None and self._recent(client_key, now) >= self.per_client:
            raise SignInThrottled()

    def record_failure(self, *, address: str, client: str | None) -> None:
        now = self.clock()
        if len(self._failures) >= MAX_TRACKED_KEYS:
            self._prune(now)
        for key in (self._address_key(address), self._client_key(client)):
            if key is not None:
                self._failures.setdefault(key, deque()).append(now)

    def record_success(self, *, address: str) -> None:
        self._failures.pop(self._address_key(address), None)

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        while len(self._failures) >= MAX_TRACKED_KEYS:  # still full of live keys: drop the oldest inserted
            del self._failures[next(iter(self._failures))]
