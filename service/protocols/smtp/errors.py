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
from service.protocols.network import CLOSED_HINT, NOT_FOUND_HINT, TCP, describe, worded, wording
from service.protocols.sasl import RECONNECT_HINT
from service.protocols.smtp.endpoint import SmtpEndpoint
from service.protocols.tls import CERTIFICATE_HINT, WRONG_PORT_HINT, CertificateNotVerified, tls_failure

LIBRARY_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)
HINTS = {
    "resolve": NOT_FOUND_HINT,
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
    own = wording(error)
    if own is not None and own[1]:
        return own[1]
    return CERTIFICATE_HINT if isinstance(error, CertificateNotVerified) else HINTS.get(step, "")


def translate(exc: BaseException, endpoint: SmtpEndpoint, step: str = "sending") -> RemoteError:
    """The service error for any exception the SMTP conversation can raise, during `step` (the
    Test Connection step's name, or "sending" for a mail transaction). Socket failures are worded
    by `network.describe`: one sentence with host and port, one hint."""
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
    network_step = TCP if step == "connect" else step  # SMTP's "connect" step is the TCP handshake alone
    found = describe(exc, host=host, port=endpoint.port, step=network_step, seconds=endpoint.timeout_seconds)
    if found is not None:  # the connect timeout is the account's timeout too (session._connect)
        return worded(SmtpDeferred, *found)
    reason = (getattr(exc, "message", None) or str(exc)).rstrip(".")
    return worded(SmtpDeferred, f"The conversation with {host} on port {endpoint.port} failed ({reason}).", CLOSED_HINT)
