"""SMTP submission with aiosmtplib: one session through a user's account or the company relay.

A session (`session`): resolve, connect, TLS at once (SSL/TLS, RFC 8314) or the
greeting, EHLO, STARTTLS (RFC 3207; required when chosen, never skipped), AUTH
(RFC 4954); then a mail transaction (`transaction`): MAIL FROM with SIZE,
RCPT TO for each recipient, DATA. `pool` keeps the session for the next
message to the same server. Every step is timed for Test Connection and every
exchange goes to a redacted transcript for "Enable debug".

Errors (`errors`) are translated once, at this edge: SmtpDeferred (try later),
SmtpRefused (5yz), CredentialsRejected, TlsFailure, and DeliveryUnknown (lost
after the final "." and before the reply: maybe delivered, never re-sent).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from service.domain.connection_test import ConnectionReport
from service.domain.outbox import DeliveryReport
from service.errors import RemoteError
from service.protocols.smtp.endpoint import SmtpEndpoint
from service.protocols.smtp.errors import DeliveryUnknown, SmtpDeferred, SmtpRefused, translate
from service.protocols.smtp.pool import SessionPool
from service.protocols.smtp.session import SmtpSession
from service.protocols.transcript import Transcript

__all__ = [
    "DeliveryUnknown",
    "SessionPool",
    "SmtpDeferred",
    "SmtpEndpoint",
    "SmtpRefused",
    "SmtpSession",
    "deliver",
    "probe",
    "session",
    "translate",
]


@asynccontextmanager
async def session(
    endpoint: SmtpEndpoint, *, transcript: Transcript, report: ConnectionReport | None = None
) -> AsyncIterator[SmtpSession]:
    """An open (and, if the account says so, authenticated) session; QUIT and closed when the block ends."""
    smtp = SmtpSession(endpoint, transcript, report if report is not None else ConnectionReport())
    try:
        await smtp.open()
        yield smtp
    finally:
        await smtp.close()


async def deliver(
    endpoint: SmtpEndpoint, *, sender: str, recipients: Sequence[str], data: bytes, transcript: Transcript
) -> DeliveryReport:
    """Send one message in its own session."""
    async with session(endpoint, transcript=transcript) as smtp:
        return await smtp.send(sender=sender, recipients=recipients, data=data)


async def probe(endpoint: SmtpEndpoint, *, transcript: Transcript) -> ConnectionReport:
    """Test Connection: every step up to AUTH, then QUIT. A failing step ends the report; nothing is raised."""
    report = ConnectionReport()
    try:
        async with session(endpoint, transcript=transcript, report=report):
            pass
    except RemoteError:
        pass
    return report
