"""RETR's multi-line response read in chunks: the end (CRLF.CRLF) is found wherever the chunks
split it, byte-stuffing is undone, and a server that never ends the message is cut off."""

from __future__ import annotations

import io
import poplib

import pytest

from service.protocols.pop3.client import Pop3Client as _Pop3

MESSAGES = [
    b"",
    b"Subject: x\r\n\r\nbody\r\n",
    b".starts with a dot\r\n..two\r\n.\r\nmiddle\r\nlast .\r\n",
    b"a\r\n" * 5000,
]


class _Trickle(io.RawIOBase):
    """A socket that delivers at most `step` bytes per read."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.position = data, step, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        piece = self.data[self.position : self.position + min(self.step, len(buffer))]
        buffer[: len(piece)] = piece
        self.position += len(piece)
        return len(piece)


def _client(wire: bytes, step: int) -> _Pop3:
    client = _Pop3.__new__(_Pop3)
    client.file = io.BufferedReader(_Trickle(wire, step), buffer_size=step)
    client._putcmd = lambda line: None  # type: ignore[attr-defined]
    client._getresp = lambda: b"+OK"  # type: ignore[method-assign]
    return client


def _stuffed(message: bytes) -> bytes:
    lines = message.split(b"\r\n")[:-1] if message else []
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


@pytest.mark.parametrize("message", MESSAGES)
@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 64, 4096])
def test_the_message_comes_back_exactly_whatever_the_chunks(message: bytes, step: int) -> None:
    assert _client(_stuffed(message), step).retr_bytes(1) == message


def test_a_message_longer_than_announced_is_cut_off() -> None:
    with pytest.raises(poplib.error_proto, match="longer than the server announced"):
        _client(b"x" * 100_000, 1000).retr_bytes(1, limit=10_000)


def test_a_connection_that_closes_mid_message_is_an_error() -> None:
    with pytest.raises(poplib.error_proto, match="EOF"):
        _client(b"Subject: x\r\n\r\nno end", 4096).retr_bytes(1)
