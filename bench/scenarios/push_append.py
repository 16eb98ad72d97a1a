"""The push scenarios' mail source: IMAP connections signed in beforehand that APPEND one message each at once.

Raw sockets and LITERAL+ (RFC 7888): every APPEND goes out in one write, with
no round trip for the literal's continuation, so N commands leave within a few
milliseconds; each one's time is when the server's tagged OK arrived.
"""

from __future__ import annotations

import math
import selectors
import socket
import time

from bench.common import HOST


class Appender:
    """Signed-in IMAP connections, one per account, that APPEND one message each at once."""

    def __init__(self, port: int, accounts: list[tuple[str, str]]) -> None:
        self.sockets: list[socket.socket] = []
        for email, password in accounts:
            sock = socket.create_connection((HOST, port), timeout=30)
            greeting = self._until(sock, b"* OK")
            if b"LITERAL+" not in greeting:
                raise RuntimeError(f"the server offers no LITERAL+: {greeting[:200]!r}")
            sock.sendall(f'a LOGIN "{email}" "{password}"\r\n'.encode())
            self._until(sock, b"a OK")
            self.sockets.append(sock)

    @staticmethod
    def _until(sock: socket.socket, marker: bytes) -> bytes:
        data = b""
        while marker not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"connection closed waiting for {marker!r}: {data[-200:]!r}")
            data += chunk
            if b" NO " in data or b" BAD " in data:
                raise RuntimeError(f"refused: {data[-200:]!r}")
        return data

    def append_all(self, messages: list[bytes]) -> list[float]:
        """Send every APPEND, then read the answers; returns when (time.time()) each one's OK arrived."""
        done: list[float] = [math.nan] * len(self.sockets)
        pending: dict[int, bytes] = {}
        with selectors.DefaultSelector() as selector:
            for index, (sock, raw) in enumerate(zip(self.sockets, messages, strict=True)):
                sock.sendall(b"b APPEND INBOX {%d+}\r\n" % len(raw) + raw + b"\r\n")
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, index)
                pending[index] = b""
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:
                for key, _events in selector.select(timeout=1):
                    index = key.data
                    pending[index] += key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if b"b OK" in pending[index] or b"b NO" in pending[index] or b"b BAD" in pending[index]:
                        if b"b OK" in pending[index]:
                            done[index] = time.time()
                        selector.unregister(key.fileobj)
                        del pending[index]
        return done

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def message(index: int, token: str) -> tuple[str, bytes]:
    message_id = f"<push-{index:05d}-{token}@bench.test>"
    raw = (
        "From: Sender <sender@example.test>\r\nTo: Push Bench <push-bench@example.test>\r\n"
        f"Subject: push bench {index}\r\nDate: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
        f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"A message appended by the push benchmark, number {index}.\r\n"
    )
    return message_id, raw.encode()


def rank(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
