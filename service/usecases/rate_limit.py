"""A small in-process rate limit for Test Connection: a user may start a few tests a minute.

Counted in one place, `connection_tests.run_connection_test`, which every face (pages, API, CLI)
calls, so no face can skip it. Tests replace a limiter's `clock` to move time by hand.

Each Test Connection makes Tributary open connections on the user's behalf, so
an unlimited button would turn it into a port scanner. The limit is a sliding
window per user, shared by retrieval tasks and SMTP accounts, and kept per
`Database` (the service holds one for its life; each test gets its own), so it
lives exactly as long as the process's handle on the data. Several processes
each keep their own count: the limit is a brake, not an accounting.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable

from service.errors import InvalidInput

TESTS_PER_MINUTE = 10
WINDOW_SECONDS = 60.0


class TooManyAttempts(InvalidInput):
    """The user did this too often just now: wait `retry_after` seconds, then try again."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimiter:
    """At most `limit` events per `window` seconds for each key (a sliding window)."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock  # tests may replace it with a fake clock
        self._events: dict[Hashable, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: Hashable) -> float:
        """Seconds until `key` may act again; 0 when it may act now (and then the event is counted)."""
        now = self.clock()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return events[0] + self.window - now
            events.append(now)
            return 0.0


_limiters: weakref.WeakKeyDictionary[object, RateLimiter] = weakref.WeakKeyDictionary()
_limiters_lock = threading.Lock()


def limiter_for(owner: object) -> RateLimiter:
    """The Test Connection limiter that belongs to `owner` (the Database)."""
    with _limiters_lock:
        limiter = _limiters.get(owner)
        if limiter is None:
            limiter = _limiters[owner] = RateLimiter(TESTS_PER_MINUTE, WINDOW_SECONDS)
        return limiter


def check_test_connection(owner: object, user_id: int | None) -> None:
    """Count one Test Connection for the user, or raise TooManyAttempts. The operator (None) is not limited."""
    if user_id is None:
        return
    wait = limiter_for(owner).retry_after(("test-connection", user_id))
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise TooManyAttempts(
            f"You can test connections {TESTS_PER_MINUTE} times a minute. Wait {seconds} seconds, then try again.",
            retry_after=seconds,
        )
