"""The poplib client underneath a POP3 session: the socket it opens, the lines it traces, and the
two things poplib gets wrong or lacks.

- The socket is opened by `service.protocols.outbound` (only allowed addresses) and reported to
  the watcher before the greeting, so the run's deadline can cut even a silent server.
- poplib's 2,048-byte line limit (`poplib._MAXLINE`) is lifted to `MAX_LINE_BYTES`.
- AUTH (RFC 5034) with a one-message SASL mechanism, where a "+ " challenge may be a refusal.
- RETR's multi-line response is read by `service.protocols.pop3.transfer`, in large chunks.
"""

from __future__ import annotations

import base64
import poplib
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import cast

from service.protocols import outbound
from service.protocols.pop3.transfer import MAX_LINE_BYTES, Readable, Replies
from service.protocols.transcript import Transcript


class Pop3Client(poplib.POP3):
    """poplib.POP3 that reports its socket before the greeting, traces lines, and reads long lines."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        *,
        watcher: Callable[[socket.socket], None],
        context: ssl.SSLContext | None,
        transcript: Transcript | None,
        targets: Sequence[outbound.Target],
    ) -> None:
        self._watcher = watcher
        self._targets = targets
        self._implicit_tls = context
        self._transcript = transcript
        try:
            super().__init__(host, port, timeout)
        except BaseException:  # poplib leaves its socket open when the greeting fails (a silent or closing server)
            if hasattr(self, "file"):
                self.close()
            elif getattr(self, "sock", None) is not None:
                self.sock.close()
            raise

    @property
    def transcript(self) -> Transcript | None:
        return self._transcript

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = outbound.connect(self._targets, timeout)
        self._watcher(sock)
        if self._implicit_tls is not None:
            tls_sock = self._implicit_tls.wrap_socket(sock, server_hostname=self.host)
            self._watcher(tls_sock)
            return tls_sock
        return sock

    def _putline(self, line: bytes) -> None:
        if self._transcript is not None:
            self._transcript.sent(line.decode("utf-8", "replace"))
        super()._putline(line)  # type: ignore[misc]  # private in typeshed, stable in poplib

    def send_commands(self, commands: Sequence[str]) -> None:
        """Several command lines in one write (one TCP segment when they fit): a pipeline's
        first window (RFC 2449 section 6.6)."""
        lines = [command.encode(self.encoding) for command in commands]
        for line in lines:
            if self._transcript is not None:
                self._transcript.sent(line.decode("utf-8", "replace"))
            sys.audit("poplib.putline", self, line)
        self.sock.sendall(b"".join(line + b"\r\n" for line in lines))

    def _getline(self) -> tuple[bytes, int]:
        line = self.file.readline(MAX_LINE_BYTES + 1)
        if len(line) > MAX_LINE_BYTES:
            raise poplib.error_proto("line too long")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        octets = len(line)
        if line[-2:] == b"\r\n":
            line = line[:-2]
        elif line[-1:] in (b"\n", b"\r"):
            line = line[:-1]
        return line, octets

    def _getresp(self) -> bytes:
        response: bytes = super()._getresp()  # type: ignore[misc]
        if self._transcript is not None:
            self._transcript.received(response.decode("utf-8", "replace"))
        return response

    def authenticate(self, mechanism: str, message: bytes, *, error_answer: bytes) -> bytes:
        """AUTH (RFC 5034) with a one-message SASL mechanism; returns the server's "+OK" line.

        The message goes after the server's empty "+ " challenge, not as an initial response
        on the AUTH line: RFC 5034 section 4 allows that only while the command stays within
        RFC 2449's 255 octets, far less than a bearer token (Microsoft documents this form too).
        A refusal may come as a "+ <error>" challenge (RFC 7628 3.2.2), which poplib would take
        for success: it is answered with `error_answer` and the final "-ERR" raises error_proto."""
        self._putcmd(f"AUTH {mechanism}")  # type: ignore[attr-defined]
        reply = self._getresp()
        if reply.startswith(b"+OK"):
            raise poplib.error_proto(b"-ERR the server took AUTH without any credentials")
        self._putcmd(base64.b64encode(message).decode("ascii"))  # type: ignore[attr-defined]
        reply = self._getresp()
        if not reply.startswith(b"+OK"):  # the error challenge
            self._putcmd(base64.b64encode(error_answer).decode("ascii"))  # type: ignore[attr-defined]
            reply = self._getresp()
            if not reply.startswith(b"+OK"):
                raise poplib.error_proto(b"-ERR the server sent another challenge after the refusal")
        return reply

    def retr_bytes(self, which: int, *, limit: int | None = None) -> bytes:
        """RETR one message (RFC 1939 section 7), one command at a time (see `transfer`)."""
        self._putcmd(f"RETR {which}")  # type: ignore[attr-defined]
        self._getresp()
        replies = Replies(cast("Readable", self.file), None)  # makefile("rb"); _getresp traced the status
        message = replies.message(which, limit)
        replies.check_drained()
        return message
