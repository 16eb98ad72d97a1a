"""poplib's error_proto (a "-ERR" line, an EOF, a line too long) as the `service.errors` a user
can act on: wrong credentials, a refused token, or a server that failed or refused a step."""

from __future__ import annotations

import poplib
from typing import Any

from service.errors import CredentialsRejected, RemoteError, ServerUnavailable
from service.protocols import sasl
from service.protocols.tls import WRONG_PORT_HINT


def refusal(exc: poplib.error_proto, *, host: str, step: str, oauth: bool, expired: bool) -> RemoteError:
    """The error for `exc`, raised during `step` ("login", "connect", "retrieve message 3"...)
    of a session with `host`; `expired` when the run's deadline cut the connection."""
    text = server_text(exc)
    if expired:
        return ServerUnavailable(f"{host} was too slow: the retrieval ran out of time during {step}.")
    if step == "login" and oauth:
        if "EOF" in text:  # e.g. Dovecot drops a client whose AUTH answer passes 8,192 bytes
            return ServerUnavailable(f"{host} closed the connection during the sign-in.")
        if "[SYS/TEMP]" in text.upper():  # RFC 3206: the server could not check it now
            return ServerUnavailable(f"{host} could not check the sign-in token for now ({text}).")
        return sasl.token_rejected(host, text)
    if step == "login":
        return CredentialsRejected(f"{host} rejected the username or password ({text}). Check them and try again.")
    if step == "connect":
        return ServerUnavailable(f"{host} did not greet like a POP3 server. {WRONG_PORT_HINT}")
    if "EOF" in text:
        return ServerUnavailable(f"{host} closed the connection unexpectedly during {step}.")
    return ServerUnavailable(f"{host} refused {step}: {text}.")


def server_text(exc: BaseException) -> str:
    arg: Any = exc.args[0] if exc.args else b""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return text.strip()[:200] or type(exc).__name__
