"""imapclient's connections, made to hand their socket to the session's deadline before the
TLS handshake and the greeting, so a tarpit cannot hold a run past its deadline, and to
connect only to the addresses the outbound policy checked (`targets`); the host name
still drives SNI and certificate verification."""

from __future__ import annotations

import imaplib
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from imapclient import IMAPClient, imap4, tls
from imapclient.imapclient import join_message_ids

from service.protocols import outbound


class _WatchedPlain(imap4.IMAP4WithTimeout):  # type: ignore[misc]
    """imapclient's plain connection, handing its socket to a watcher before the greeting."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float | None,
        watcher: Callable[[socket.socket], None],
        targets: Sequence[outbound.Target],
    ) -> None:
        self._watcher = watcher
        self._targets = targets
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        sock = outbound.connect(self._targets, timeout if timeout is not None else self._timeout)
        self._watcher(sock)
        return sock


class _WatchedTls(tls.IMAP4_TLS):  # type: ignore[misc]  # imapclient ships no types
    """imapclient's implicit-TLS connection, handing its socket to a watcher before the handshake."""

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        timeout: float | None,
        watcher: Callable[[socket.socket], None],
        targets: Sequence[outbound.Target],
    ) -> None:
        self._watcher = watcher
        self._targets = targets
        super().__init__(host, port, context, timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        sock = outbound.connect(self._targets, timeout if timeout is not None else self._timeout)
        self._watcher(sock)
        wrapped: socket.socket = tls.wrap_socket(sock, self.ssl_context, self.host)
        return wrapped


class WatchedClient(IMAPClient):  # type: ignore[misc]  # imapclient ships no types
    """IMAPClient whose sockets are known to the session from the first byte, so the run's
    deadline can cut a server that trickles its TLS handshake or greeting."""

    def __init__(
        self,
        *args: Any,
        watcher: Callable[[socket.socket], None],
        targets: Sequence[outbound.Target],
        **kwargs: Any,
    ) -> None:
        self._watcher = watcher
        self._targets = targets
        super().__init__(*args, **kwargs)
        # imapclient sets imaplib's debug level to 5, at which imaplib formats every response,
        # message bodies included, into a log string (dropped unless imapclient's logger is on
        # DEBUG): a quarter of a bulk retrieval's CPU. The session's transcript sets its own level.
        self._imap.debug = 0

    def fetch_untagged(self, uids: Sequence[int], items: str) -> list[Any]:
        """UID FETCH with imapclient's command handling but imaplib's raw untagged FETCH data
        (tuples of (prefix, literal) and trailing bytes), for a parser that knows the shape."""
        tag = self._imap._command("UID", "FETCH", join_message_ids(list(uids)), items)
        typ, data = self._imap._command_complete("FETCH", tag)
        self._checkok("fetch", typ, data)
        typ, data = self._imap._untagged_response(typ, data, "FETCH")
        return [item for item in data if item is not None]

    def _create_IMAP4(self) -> imaplib.IMAP4:
        connect_timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _WatchedTls(self.host, self.port, self.ssl_context, connect_timeout, self._watcher, self._targets)
        return _WatchedPlain(self.host, self.port, connect_timeout, self._watcher, self._targets)
