"""A deadline for a whole protocol session, enforced by cutting its socket.

Socket timeouts bound each read, but a server that sends one byte just
before every timeout (a tarpit) could hold a worker forever. The watchdog
timer shuts the socket down when the session's deadline passes, which makes
any blocked read return at once. Adapters hand it their raw socket as soon
as it exists (before TLS and the greeting) through `watch`.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import suppress


class Deadline:
    """Cuts the watched sockets at `deadline` (a time.monotonic() value; None: never)."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.deadline is None or self._timer is not None:
            return
        self._timer = threading.Timer(max(self.deadline - time.monotonic(), 0.0), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        """Cut this socket too when the deadline passes (at once, if it already has)."""
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            self._cut(sock)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._cut(sock)

    @staticmethod
    def _cut(sock: socket.socket) -> None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
