"""Reading POP3 responses in bulk, and pipelining RETR and DELE (RFC 2449 section 6.6).

A multi-line response (RFC 1939 section 3) ends with "CRLF.CRLF", and a line of the message
that starts with "." is sent with one more "." ("byte-stuffing"). Reading it line by line costs
a Python call per line, so `Replies` reads large chunks, finds the terminator with one regular
expression search per chunk, joins the message once and undoes the stuffing with one replace.

Pipelining: when CAPA lists PIPELINING, the client may send commands without waiting for each
response; the server answers them in order. `Pipeline` keeps up to `window` commands
outstanding and sends the next one as each response is consumed, so the server always has the
next RETR at hand instead of idling for a round trip per message. Because chunks are large, one
read may hold the end of one message and the start of the next response: what follows a
terminator stays in `Replies` for the next response, never in a message.

RFC 2449 warns that a client must not block on sending while the server blocks on sending to
it: a window of 16 short commands (a few hundred bytes) always fits the server's receive buffer,
so a write never waits for the server to read while we are not reading.

A negative response ("-ERR") to RETR or DELE is a single line (RFC 1939 section 3): it raises
`poplib.error_proto` at its place in the order, so a later response is never read as another
message's bytes. Commands still outstanding then leave the connection out of step:
`Pipeline.in_step` is False and the session must be closed (no QUIT: no DELE is committed).
"""

from __future__ import annotations

import poplib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

from service.protocols.transcript import Transcript

if TYPE_CHECKING:
    from service.protocols.pop3.client import Pop3Client

MAX_LINE_BYTES = 1024 * 1024  # a line longer than this is not mail, it is an attack
WINDOW = 16  # RETRs outstanding at most when the server offers PIPELINING
_TERMINATOR = re.compile(rb"\n\.\r?\n")
_DOT_LINE = re.compile(rb"\n\.(\r?\n)?")  # a line that starts with "."; with its line end, the terminator
_CHUNK = 256 * 1024
_T = TypeVar("_T")


class Readable(Protocol):
    def read1(self, size: int = ..., /) -> bytes: ...


class Replies:
    """The server's responses, consumed strictly in order from the connection's buffered reader;
    bytes read past the current response are kept for the next one."""

    def __init__(self, file: Readable, transcript: Transcript | None) -> None:
        self._file = file
        self._transcript = transcript
        self._buffer = b""  # the last bytes read; those from `_position` on are not consumed yet
        self._position = 0

    @property
    def drained(self) -> bool:
        return self._position >= len(self._buffer)

    def _more(self) -> bytes:
        chunk = self._file.read1(_CHUNK)
        if not chunk:
            raise poplib.error_proto("-ERR EOF")
        return chunk

    def status(self) -> bytes:
        """The next status line; anything but "+OK" (a "-ERR", or a "+ " challenge, which is
        no answer to RETR or DELE) raises error_proto with the server's text."""
        end = self._buffer.find(b"\n", self._position)
        while end < 0:
            searched = len(self._buffer) - self._position
            if searched > MAX_LINE_BYTES:
                raise poplib.error_proto("line too long")
            self._buffer, self._position = self._buffer[self._position :] + self._more(), 0
            end = self._buffer.find(b"\n", searched)
        line = self._buffer[self._position : end].rstrip(b"\r")
        self._position = end + 1
        if self._transcript is not None:
            self._transcript.received(line.decode("utf-8", "replace"))
        if not line.startswith(b"+OK"):
            raise poplib.error_proto(line)
        return line

    def message(self, which: int, limit: int | None) -> bytes:
        """The multi-line body after a "+OK", up to its terminator, with stuffing undone (the
        message is in memory about twice, briefly; once more when it spans reads). A server
        that sends more than `limit` bytes without ending the message is cut off."""
        pieces: list[bytes] = []  # the body so far, from earlier reads
        size = 0
        tail = b"\r\n"  # the last bytes before `start`: the terminator and stuffing rules apply to line 1 too
        chunk, start = self._buffer, self._position
        dotted = False  # a line that starts with "." so far: only then is stuffing undone
        while True:
            if start < len(chunk):
                dotted = dotted or (tail.endswith(b"\n") and chunk.startswith(b".", start))  # a line split by reads
                found = _TERMINATOR.search(tail + chunk[start : start + 4])  # CRLF.CRLF across reads
                shift = len(tail)
                if found is None:
                    (found, dotted_here), shift = _terminator(chunk, start), start
                    dotted = dotted or dotted_here
                if found is not None:  # the body ends at `cut` (relative to `start`; < 0: in `pieces`)
                    cut, after = found.start() + 1 - shift, found.end() - shift
                    self._buffer, self._position = chunk, start + after  # the next responses start there
                    whole = not dotted
                    if cut >= 0:
                        pieces.append(chunk[start : start + cut])
                    else:
                        _trim(pieces, -cut)
                    body = b"".join(pieces)
                    return body if whole else _unstuffed(body)
                pieces.append(chunk[start:])
                size += len(chunk) - start
                tail = (tail + chunk[start:])[-4:]
            if limit is not None and size > limit:
                raise poplib.error_proto(f"-ERR message {which} is longer than the server announced")
            chunk, start = self._more(), 0

    def check_drained(self) -> None:
        """Every response is read: anything more is bytes no command asked for."""
        if not self.drained:
            raise poplib.error_proto("-ERR the server sent more than the responses asked for")


class Pipeline:
    """Commands sent ahead of their responses, at most `window` outstanding (1: one at a time,
    for a server whose CAPA does not list PIPELINING). Responses are read in order."""

    def __init__(self, client: Pop3Client, window: int) -> None:
        self._client = client
        self._window = max(1, window)
        self._replies = Replies(cast("Readable", client.file), client.transcript)  # makefile("rb")
        self._sent = 0
        self._answered = 0

    @property
    def in_step(self) -> bool:
        """No command waits for its response and no unread byte is kept: the connection can go on."""
        return self._sent == self._answered and self._replies.drained

    def retrieve(self, numbers: Sequence[int], limits: Sequence[int | None]) -> Iterator[bytes]:
        """RETR each message (RFC 1939 section 7): their bytes, in order."""

        def read(replies: Replies, index: int) -> bytes:
            replies.status()
            return replies.message(numbers[index], limits[index])

        return self._run([f"RETR {number}" for number in numbers], read)

    def delete(self, numbers: Sequence[int]) -> Iterator[bytes]:
        """DELE each message (RFC 1939 section 6: marks only, committed by QUIT): the status lines."""
        return self._run([f"DELE {number}" for number in numbers], lambda replies, _: replies.status())

    def _run(self, commands: list[str], read: Callable[[Replies, int], _T]) -> Iterator[_T]:
        if commands:
            first = commands[: self._window]
            self._client.send_commands(first)
            self._sent += len(first)
        for index in range(len(commands)):
            value = read(self._replies, index)
            self._answered += 1
            if index + self._window < len(commands):  # the window moves on before the caller works
                self._client.send_commands([commands[index + self._window]])
                self._sent += 1
            yield value
        self._replies.check_drained()


def wire_limit(size: int | None) -> int | None:
    """What a message announced by LIST as `size` bytes may take on the wire: stuffing and
    bare-LF conversion can double it; a server sending more is cut off."""
    return None if size is None else 2 * size + 1024 * 1024


def _trim(pieces: list[bytes], count: int) -> None:
    """The last `count` bytes of `pieces` removed (the start of a terminator read earlier)."""
    while count > 0:
        last = pieces.pop()
        if len(last) > count:
            pieces.append(last[:-count])
        count -= len(last)


def _terminator(chunk: bytes, start: int) -> tuple[re.Match[bytes] | None, bool]:
    """The first terminator line in `chunk` from `start`, and whether a line before it starts
    with "." (stuffed, RFC 1939 section 3). One scan: a line starting with "." is rare in mail
    unless stuffed, so the body needs no second pass (`_unstuffed`) when none is found; a
    message spanning reads is always unstuffed whole."""
    dotted = False
    for line in _DOT_LINE.finditer(chunk, start):
        if line.group(1) is not None:
            return line, dotted
        dotted = True
    return None, dotted


def _unstuffed(data: bytes) -> bytes:
    """Byte-stuffing undone: a line that starts with ".." starts with "." (RFC 1939 section 3)."""
    if data.startswith(b".."):
        data = data[1:]
    return data.replace(b"\n..", b"\n.")  # the same object when there is nothing to undo
