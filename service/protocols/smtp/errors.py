"""aiosmtplib's, ssl's and socket's exceptions, translated once, into sentences a user can act on.

RFC 5321 4.2.1: a 4yz reply is transient (SmtpDeferred: try again later), a 5yz
reply permanent (SmtpRefused). Timeouts and connections refused or lost before
the final "." are transient too: nothing was delivered. A connection lost after
the final "." and before the reply is DeliveryUnknown: the server may have
taken the message (RFC 5321 4.1.1.4 and 6.1), so it must not be re-sent blindly.
"""

from __future__ import annotations

import ssl

import aiosmtplib

from service.domain.outbox import SmtpReply
from service.errors import CredentialsRejected, MessageRejected, RemoteError, ServerUnavailable, TokenRejected
from service.protocols.sasl import RECONNECT_HINT
from service.protocols.smtp.endpoint import SmtpEndpoint
from service.protocols.tls import CERTIFICATE_HINT, WRONG_PORT_HINT, CertificateNotVerified, tls_failure

LIBRARY_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)
HINTS = {
    "resolve": "Check the server address for typing mistakes.",
    "connect": "Check the port, and that this machine may reach the server (a firewall may block it).",
    "tls": WRONG_PORT_HINT,
    "greeting": WRONG_PORT_HINT,
    "ehlo": "Check that the server address and port belong to an SMTP server.",
    "starttls": "Choose SSL/TLS (usually port 465) if the server expects TLS at once.",
    "auth": "Check the username and password; some providers need an app password for SMTP.",
}


class SmtpDeferred(ServerUnavailable):
    """Not now, maybe later: a 4yz reply, a timeout, or a connection refused or lost before the final "."."""

    def __init__(self, message: str, reply: SmtpReply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class SmtpRefused(MessageRejected):
    """A 5yz reply: the server will not take this message (or sender) at all."""

    def __init__(self, message: str, reply: SmtpReply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class DeliveryUnknown(ServerUnavailable):
    """The whole message was sent but the server's reply to the final "." never came."""


def refusal(reply: SmtpReply, what: str) -> RemoteError:
    """A 4yz or 5yz reply as the matching error, the server's words kept."""
    if reply.temporary:
        return SmtpDeferred(f"{what} for now ({reply}); Tributary will try again later.", reply)
    return SmtpRefused(f"{what} ({reply}).", reply)


def hint_for(step: str, error: RemoteError) -> str:
    """A certificate that does not verify gets the certificate hint whatever the step (tls or
    starttls): the connection works, so the port is not to blame. A refused OAuth2 token: reconnect."""
    if isinstance(error, TokenRejected):
        return RECONNECT_HINT
    return CERTIFICATE_HINT if isinstance(error, CertificateNotVerified) else HINTS.get(step, "")


def translate(exc: BaseException, endpoint: SmtpEndpoint) -> RemoteError:
    """The service error for any exception the SMTP conversation can raise."""
    host = endpoint.host
    if isinstance(exc, RemoteError):
        return exc
    for candidate in (exc, exc.__cause__):  # aiosmtplib wraps the handshake's ssl errors in SMTPConnectError
        if isinstance(candidate, ssl.SSLError):
            return tls_failure(candidate, host)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        reply = SmtpReply(exc.code, exc.message)
        if reply.temporary:
            return SmtpDeferred(f"{host} could not check the password for now ({reply}).", reply)
        return CredentialsRejected(f"{host} refused the username or password ({reply}).")
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        return refusal(SmtpReply(exc.code, exc.message), f"{host} refused")
    if isinstance(exc, TimeoutError):
        return SmtpDeferred(f"{host} did not answer within {endpoint.timeout_seconds:g} seconds.")
    if isinstance(exc, ConnectionRefusedError):
        return SmtpDeferred(f"{host} refused the connection on port {endpoint.port}.")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        return SmtpDeferred(f"{host} closed the connection unexpectedly.")
    reason = getattr(exc, "message", None) or (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
    return SmtpDeferred(f"The conversation with {host} on port {endpoint.port} failed ({reason}).")
