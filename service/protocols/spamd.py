"""A small asyncio client for SpamAssassin's spamd (the SPAMC/SPAMD protocol, version 1.5).

The protocol (SpamAssassin's spamd/PROTOCOL) is HTTP-like, one request per connection:

    C: CHECK SPAMC/1.5\\r\\n
    C: Content-length: <bytes>\\r\\n
    C: \\r\\n
    C: <the message>
    S: SPAMD/1.1 0 EX_OK\\r\\n
    S: Spam: True ; 15.0 / 5.0\\r\\n
    S: \\r\\n

A response code other than 0 is one of sysexits.h's EX_* codes (76 EX_PROTOCOL,
74 EX_IOERR ...). `PING` answers `SPAMD/1.5 0 PONG`. Every failure (refused
connection, timeout, a garbled answer) becomes ServerUnavailable; the caller
decides what a missing verdict means (for retrieval: deliver to the Inbox).

The address is the administrator's (TRIBUTARY_SPAMD_ADDRESS), not a user's, so the
users' outbound policy does not apply to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

from service.errors import InvalidInput, ServerUnavailable

DEFAULT_PORT = 783
MAX_ANSWER = 64 * 1024
_STATUS = re.compile(rb"SPAMD/(\d+\.\d+) +(\d+) +(.*)")
_SPAM = re.compile(rb"(?i)spam: *(true|false|yes|no) *; *(-?[\d.]+) */ *(-?[\d.]+)")


@dataclass(frozen=True, slots=True)
class SpamdAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> SpamdAddress:
        """ "host:port", "[v6]:port" or "host" (port 783)."""
        value = text.strip()
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?|([^:\[\]\s]+)(?::(\d{1,5}))?", value)
        if match is None:
            raise InvalidInput(f'"{text}" is not a spamd address: write host:port, for example 127.0.0.1:783.')
        host = match.group(1) or match.group(3)
        port = int(match.group(2) or match.group(4) or DEFAULT_PORT)
        if not 0 < port < 65536:
            raise InvalidInput(f"{port} is not a port number.")
        return cls(host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SpamReport:
    is_spam: bool
    score: float
    threshold: float


class SpamdClient:
    """Asks one spamd whether a message is spam, each exchange bounded by `timeout` seconds."""

    def __init__(self, address: SpamdAddress, *, timeout: float) -> None:
        self.address = address
        self.timeout = timeout

    async def check(self, raw: bytes) -> SpamReport:
        """CHECK: spamd's verdict on `raw`. ServerUnavailable when it cannot give one in time."""
        request = b"CHECK SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(raw)
        headers = await self._exchange(request, raw)
        for line in headers:
            match = _SPAM.fullmatch(line.strip())
            if match:
                return SpamReport(
                    is_spam=match.group(1).lower() in (b"true", b"yes"),
                    score=float(match.group(2)),
                    threshold=float(match.group(3)),
                )
        raise ServerUnavailable(f"spamd at {self.address} answered without a Spam: header.")

    async def ping(self) -> None:
        await self._exchange(b"PING SPAMC/1.5\r\n\r\n", b"")

    async def _exchange(self, request: bytes, body: bytes) -> list[bytes]:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._talk(request, body)
        except TimeoutError as exc:
            raise ServerUnavailable(f"spamd at {self.address} did not answer within {self.timeout:g} s.") from exc
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ServerUnavailable(f"spamd at {self.address} could not be reached ({reason}).") from exc

    async def _talk(self, request: bytes, body: bytes) -> list[bytes]:
        reader, writer = await asyncio.open_connection(self.address.host, self.address.port)
        try:
            writer.write(request)
            writer.write(body)
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # spamd reads Content-length bytes; EOF makes old versions answer too
            answer = await reader.read(MAX_ANSWER)
            while answer and b"\r\n\r\n" not in answer and len(answer) < MAX_ANSWER:
                more = await reader.read(MAX_ANSWER - len(answer))
                if not more:
                    break
                answer += more
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        lines = answer.split(b"\r\n")
        status = _STATUS.fullmatch(lines[0]) if lines else None
        if status is None:
            raise ServerUnavailable(f"spamd at {self.address} gave an answer that is not SPAMD: {lines[0][:80]!r}.")
        if status.group(2) != b"0":
            message = status.group(3).decode("ascii", errors="replace")
            raise ServerUnavailable(
                f"spamd at {self.address} refused the message ({status.group(2).decode()} {message})."
            )
        return lines[1:]
