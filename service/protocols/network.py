"""Translating socket-level failures into sentences, the same way for every protocol."""

from __future__ import annotations

import socket
import ssl

from service.errors import RemoteError, ServerUnavailable
from service.protocols.tls import WRONG_PORT_HINT, tls_failure


def network_error(
    exc: BaseException, *, host: str, port: int, step: str, timeout: float, expired: bool
) -> RemoteError | None:
    """The service error for a socket or ssl exception, or None if `exc` is neither."""
    if expired and isinstance(exc, (OSError, EOFError)):
        return ServerUnavailable(f"{host} was too slow: the retrieval ran out of time during {step}.")
    if isinstance(exc, ssl.SSLError):
        return tls_failure(exc, host)
    if isinstance(exc, socket.gaierror):
        return ServerUnavailable(f"The server name {host} could not be found. Check the server address.")
    if isinstance(exc, ConnectionRefusedError):
        return ServerUnavailable(f"{host} refused the connection on port {port}. Check the server address and port.")
    if isinstance(exc, TimeoutError):
        if step == "connect":
            return ServerUnavailable(
                f"{host} did not answer on port {port} within {timeout:g} seconds. {WRONG_PORT_HINT}"
            )
        return ServerUnavailable(f"{host} stopped answering during {step}.")
    if isinstance(exc, (OSError, EOFError)):
        return ServerUnavailable(f"{host} closed the connection unexpectedly during {step}.")
    return None
