"""Connection reuse: several mail transactions in one SMTP session (RFC 5321 3.3).

A session may carry any number of transactions, each starting with MAIL FROM
once the previous one ended with the reply to its final ".". The pool keeps a
signed-in session per endpoint for the next message to the same server, and
closes it after any failure, so a session in an unknown state is never reused.
Open it for one round of sending (`async with SessionPool() as pool`) and never
across long idle times: servers drop idle clients after a few minutes
(RFC 5321 4.5.3.2.7).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from service.domain.connection_test import ConnectionReport
from service.domain.outbox import DeliveryReport
from service.protocols.smtp.endpoint import SmtpEndpoint
from service.protocols.smtp.session import SmtpSession
from service.protocols.transcript import Transcript


class SessionPool:
    """Open sessions by endpoint; `deliver` reuses one when it is still connected."""

    def __init__(self) -> None:
        self._open: dict[SmtpEndpoint, SmtpSession] = {}
        self.connections = 0  # sessions opened, for logs and benchmarks

    async def __aenter__(self) -> SessionPool:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def deliver(
        self, endpoint: SmtpEndpoint, *, sender: str, recipients: Sequence[str], data: bytes, transcript: Transcript
    ) -> DeliveryReport:
        """One mail transaction, on the endpoint's open session or a new one."""
        smtp = self._open.pop(endpoint, None)
        if smtp is not None and not smtp.connected:
            await smtp.close()
            smtp = None
        if smtp is None:
            smtp = SmtpSession(endpoint, transcript, ConnectionReport())
            self.connections += 1
            try:
                await smtp.open()
            except BaseException:
                await smtp.close()
                raise
        else:
            smtp.record_into(transcript)
        try:
            report = await smtp.send(sender=sender, recipients=recipients, data=data)
        except BaseException:
            await smtp.close()
            raise
        self._open[endpoint] = smtp
        return report

    async def close(self) -> None:
        """QUIT every open session."""
        sessions, self._open = list(self._open.values()), {}
        for smtp in sessions:
            await smtp.close()
