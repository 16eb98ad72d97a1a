"""At most LOOKUPS_PER_MINUTE address look-ups a minute per user: each makes DNS queries and HTTPS
requests on the user's behalf. A sliding window per process and per Database, like Test Connection's
(service.usecases.rate_limit); the operator's CLI without --user is not limited."""

from __future__ import annotations

import math
import threading
import weakref

from service.usecases.rate_limit import WINDOW_SECONDS, RateLimiter, TooManyAttempts

LOOKUPS_PER_MINUTE = 30
_limiters: weakref.WeakKeyDictionary[object, RateLimiter] = weakref.WeakKeyDictionary()  # per Database
_limiters_lock = threading.Lock()


def check_lookups(owner: object, user_id: int) -> None:
    """Count one look-up for the user, or raise TooManyAttempts (a sliding minute, per process)."""
    with _limiters_lock:
        limiter = _limiters.get(owner)
        if limiter is None:
            limiter = _limiters[owner] = RateLimiter(LOOKUPS_PER_MINUTE, WINDOW_SECONDS)
    wait = limiter.retry_after(("discover", user_id))
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise TooManyAttempts(
            f"You can look up addresses {LOOKUPS_PER_MINUTE} times a minute. Wait {seconds} seconds, then try again.",
            retry_after=seconds,
        )
