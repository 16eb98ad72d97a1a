"""Translating socket-level failures into sentences, the same way for every protocol.

Each failure is worded as one plain sentence naming the host and port, then one hint that fits
the cause (never an exception's class name or errno):

- refused (nothing listens): check the port and that the server runs;
- the name does not resolve: check the spelling of the server address;
- unreachable network or host: check this machine's network and the address;
- a timeout, with the seconds that applied: the connect timeout (TCP handshake and greeting,
  at most CONNECT_TIMEOUT_SECONDS) or the read timeout (each answer after that);
- reset or closed by the server.

The error's message is both, for runs and logs; `wording` gives them apart for Test Connection,
which shows the hint beside the step.
"""

from __future__ import annotations

import errno
import socket
import ssl
from typing import TypeVar

from service.errors import RemoteError, ServerUnavailable
from service.protocols.tls import WRONG_PORT_HINT, tls_failure

CONNECT_TIMEOUT_SECONDS = 15.0  # the most a TCP connect and the greeting may take, whatever the account says
REFUSED_HINT = "Check the port and that the server runs."
NOT_FOUND_HINT = "Check the spelling of the server address."
UNREACHABLE_HINT = "Check that this machine is connected to the network and that the server address is right."
CONNECT_TIMEOUT_HINT = "Check the server address and port, and that no firewall drops the connection."
READ_TIMEOUT_HINT = "The server may be overloaded: try again later."
CLOSED_HINT = "The server may be busy or refusing this machine: try again later."
_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}

E = TypeVar("E", bound=RemoteError)


def worded(cls: type[E], sentence: str, hint: str) -> E:
    """An error of `cls` whose message is the sentence and the hint; `wording` gives them apart."""
    error = cls(f"{sentence} {hint}" if hint else sentence)
    error._wording = (sentence, hint)  # type: ignore[attr-defined]
    return error


def wording(error: BaseException) -> tuple[str, str] | None:
    """(sentence, hint) of an error made by `worded`, else None."""
    found = getattr(error, "_wording", None)
    return found if isinstance(found, tuple) else None


def connect_timeout(timeout: float) -> float:
    """The timeout that applies to a TCP connect and the greeting after it."""
    return min(CONNECT_TIMEOUT_SECONDS, timeout)


def not_found(host: str, cls: type[E] = ServerUnavailable) -> E:  # type: ignore[assignment]
    return worded(cls, f"{host} could not be found.", NOT_FOUND_HINT)


TCP = "tcp"  # the step name for the TCP handshake alone (Test Connection's "connect", SMTP's "connect")
_PHRASES = {TCP: "the connection", "connect": "the greeting", "greeting": "the greeting", "tls": "the TLS handshake"}


def describe(exc: BaseException, *, host: str, port: int, step: str, seconds: float) -> tuple[str, str] | None:
    """(sentence, hint) for a socket exception, or None if `exc` is not one.

    `step` is TCP (the handshake alone), "connect" (an IMAP or POP3 session's opening: the
    handshake and the greeting), or a later step's name ("login", "select INBOX"); `seconds` is
    the timeout that applied to it (see `connect_timeout`)."""
    during = _PHRASES.get(step, step)
    if isinstance(exc, socket.gaierror):
        return f"{host} could not be found.", NOT_FOUND_HINT
    if isinstance(exc, ConnectionRefusedError):
        return f"Nothing answers on port {port} of {host}.", REFUSED_HINT
    if isinstance(exc, TimeoutError):
        if step == "resolve":
            return f"Looking up {host} took more than {seconds:g} seconds.", NOT_FOUND_HINT
        if step in (TCP, "connect"):  # "connect" may be the handshake or the greeting: the hint says both
            hint = CONNECT_TIMEOUT_HINT if step == TCP else WRONG_PORT_HINT
            return f"{host} did not answer on port {port} within {seconds:g} seconds.", hint
        if step in _PHRASES:  # connected, but no greeting: often plain text sent to a TLS port
            return f"{host} accepted the connection on port {port} but did not answer within {seconds:g} seconds.", (
                WRONG_PORT_HINT
            )
        sentence = f"{host} stopped answering on port {port} during {during}: nothing came within {seconds:g} seconds."
        return sentence, READ_TIMEOUT_HINT
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return f"{host} cannot be reached from this machine (port {port}).", UNREACHABLE_HINT
    if isinstance(exc, (ConnectionError, EOFError)):
        return f"{host} closed the connection unexpectedly during {during} (port {port}).", CLOSED_HINT
    if isinstance(exc, OSError):
        reason = (exc.strerror or "").rstrip(".").lower() or "no reason given"
        return f"The connection to port {port} of {host} failed during {during} ({reason}).", CLOSED_HINT
    return None


def network_error(
    exc: BaseException, *, host: str, port: int, step: str, timeout: float, expired: bool
) -> RemoteError | None:
    """The service error for a socket or ssl exception, or None if `exc` is neither.

    `timeout` is the account's (read) timeout; during the "connect" step (TCP and the greeting)
    the connect timeout applied, and the sentence says so."""
    if expired and isinstance(exc, (OSError, EOFError)):
        return ServerUnavailable(f"{host} was too slow: the retrieval ran out of time during {step}.")
    if isinstance(exc, ssl.SSLError):
        return tls_failure(exc, host)
    seconds = connect_timeout(timeout) if step == "connect" else timeout
    found = describe(exc, host=host, port=port, step=step, seconds=seconds)
    return worded(ServerUnavailable, *found) if found is not None else None
