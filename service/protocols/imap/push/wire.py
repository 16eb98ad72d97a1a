"""The push connection's byte stream: a non-blocking TCP socket on the event loop, optionally
wrapped in TLS through an `ssl.SSLObject` and two `ssl.MemoryBIO`s, read in small pieces and cut
into IMAP responses (lines, with `{n}` literals, RFC 3501 section 4.3).

Why not asyncio streams: Python 3.11's `asyncio.sslproto` gives each TLS connection a 256 KiB
receive buffer, beyond the whole budget of an idle push connection. Here an idle connection owns
the socket, the SSLObject (OpenSSL's state) and a few empty buffers; the 4096-byte read buffer
exists only while data is being read (`loop.sock_recv`).

Timeouts and socket or ssl failures are raised as they come (TimeoutError, OSError, ssl.SSLError,
EOFError for a closed connection); the client turns them into service errors once.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Sequence

from service.protocols import outbound

RECV_SIZE = 4096
MAX_LINE = 64 * 1024  # longer than any response push reads; a server sending more is broken
MAX_LITERAL = 1024 * 1024
# What one response may hold in all (lines and literals) unless the reader allows more: an idle
# connection hears EXISTS, STATUS and the like, so 64 KiB is plenty; a FETCH of the fast path
# allows its batch (client.py). Literals chained in one response can no longer grow memory.
MAX_RESPONSE = 64 * 1024
KEEPALIVE_IDLE = 120  # seconds of silence before the first probe
KEEPALIVE_INTERVAL = 30
KEEPALIVE_COUNT = 4
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")


class ProtocolViolation(EOFError):
    """The server sent something no IMAP server sends (an endless line, a huge literal)."""


async def connect(targets: Sequence[outbound.Target], seconds: float) -> socket.socket:
    """A non-blocking TCP connection to the first checked address that answers within `seconds`."""
    loop = asyncio.get_running_loop()
    error: OSError | None = None
    for target in targets:
        sock = socket.socket(target.family, target.kind, target.proto)
        sock.setblocking(False)
        _keepalive(sock)
        try:
            async with asyncio.timeout(seconds):
                await loop.sock_connect(sock, target.sockaddr)
        except (OSError, TimeoutError) as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error or OSError("no address to connect to")


def _keepalive(sock: socket.socket) -> None:
    """TCP keepalive: a push connection is silent for up to the IDLE renewal (25 minutes), so a peer
    or NAT that vanished without a reset is noticed after KEEPALIVE_IDLE + KEEPALIVE_COUNT probes
    KEEPALIVE_INTERVAL apart (about 4 minutes) rather than at the next renewal; the probes also keep
    NAT and firewall mappings alive. Options the platform lacks are skipped."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class Wire:
    """One connection's bytes: `send`, `read_response`, and `start_tls` to switch to TLS."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock
        self._loop = asyncio.get_running_loop()
        self._tls: ssl.SSLObject | None = None
        self._incoming: ssl.MemoryBIO | None = None
        self._outgoing: ssl.MemoryBIO | None = None
        self._buffer = bytearray()
        self._unsent = bytearray()
        self._parts: list[bytes] = []  # a response read in part when a timeout interrupted it
        self._held = 0  # bytes in _parts
        self._eof = False
        self._pending_head = b""

    @property
    def tls_object(self) -> ssl.SSLObject | None:
        return self._tls

    @property
    def buffered(self) -> bool:
        """Whether bytes already received wait to be read (a whole response may be among them)."""
        return bool(self._buffer)

    def has_response(self) -> bool:
        """Whether a complete line is already buffered (so reading it will not wait)."""
        return b"\r\n" in self._buffer

    # -- TLS --------------------------------------------------------------------

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """The TLS handshake (client side): SNI and certificate checks use `server_hostname`."""
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._feed()
                continue
            break
        await self._flush()

    async def _flush(self) -> None:
        assert self._outgoing is not None
        await self._write(self._outgoing.read())

    async def _feed(self) -> None:
        """Encrypted bytes from the socket into the TLS object (EOF when the peer closed)."""
        assert self._incoming is not None
        data = await self._recv()
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    # -- the socket -----------------------------------------------------------------
    #
    # Bytes move between the socket and this object's buffers with no await in between: only
    # the wait for readiness is ever cancelled (by a timeout), so a cancelled read or write
    # loses nothing. (loop.sock_recv would lose bytes it received just before a cancellation,
    # which in a TLS stream breaks every later record.)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise EOFError("connection closed")
        return self._sock

    async def _ready(self, writing: bool) -> None:
        fd = self._socket().fileno()
        waiter = self._loop.create_future()
        if writing:
            self._loop.add_writer(fd, _wake, waiter)
        else:
            self._loop.add_reader(fd, _wake, waiter)
        try:
            await waiter
        finally:
            (self._loop.remove_writer if writing else self._loop.remove_reader)(fd)

    async def _recv(self) -> bytes:
        while True:
            try:
                return self._socket().recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                await self._ready(writing=False)

    async def _write(self, data: bytes) -> None:
        self._unsent += data
        while self._unsent:
            try:
                sent = self._socket().send(self._unsent)
            except (BlockingIOError, InterruptedError):
                await self._ready(writing=True)
                continue
            del self._unsent[:sent]

    async def _receive(self) -> bytes:
        """The next plain-text bytes; b"" at the end of the stream."""
        if self._tls is None:
            return await self._recv()
        while True:
            try:
                return self._tls.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                await self._flush()
                await self._feed()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    # -- writing ------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        if self._tls is None:
            await self._write(data)
            return
        self._tls.write(data)
        await self._flush()

    # -- reading ------------------------------------------------------------------

    async def _fill(self) -> None:
        if self._eof:
            raise EOFError("connection closed by the server")
        data = await self._receive()
        if not data:
            self._eof = True
            raise EOFError("connection closed by the server")
        self._buffer += data

    async def read_line(self) -> bytes:
        """One line without its CRLF."""
        start = 0
        while (end := self._buffer.find(b"\r\n", start)) < 0:
            if len(self._buffer) > MAX_LINE:
                raise ProtocolViolation("line too long")
            start = max(0, len(self._buffer) - 1)
            await self._fill()
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    async def read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            await self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def read_response(self, limit: int = MAX_RESPONSE) -> list[bytes]:
        """One response: its text parts at even indexes and its literals at odd ones
        (`* STATUS {5}` CRLF `Inbox (MESSAGES 3)` gives [b"* STATUS ", b"Inbox", b" (MESSAGES 3)"]).
        ProtocolViolation when it would hold more than `limit` bytes in all.

        Cancelling it (a timeout) loses nothing: what was read waits for the next call."""
        parts = self._parts
        while True:
            if len(parts) % 2:  # a literal is due
                size = int(_LITERAL.search(self._pending_head).group(1))  # type: ignore[union-attr]
                parts.append(await self.read_exact(size))  # counted with its head
                continue
            line = await self.read_line()
            found = _LITERAL.search(line)
            if found is None:
                self._hold(len(line), limit)
                parts.append(line)
                self._parts, self._held = [], 0
                return parts
            size = int(found.group(1))
            if size > MAX_LITERAL:
                raise ProtocolViolation("literal too large")
            self._hold(found.start() + size, limit)
            self._pending_head = line
            parts.append(line[: found.start()])

    def _hold(self, size: int, limit: int) -> None:
        """Count `size` more bytes into the response being read, refusing to pass `limit`."""
        if self._held + size > limit:
            raise ProtocolViolation("response too large")
        self._held += size

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self._tls = self._incoming = self._outgoing = None
        self._buffer = bytearray()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
