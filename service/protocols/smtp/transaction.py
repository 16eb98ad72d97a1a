"""One mail transaction on an open session (RFC 5321 3.3): MAIL, RCPT per recipient, DATA.

MAIL FROM carries SIZE (RFC 1870) when the server announces it, and a message
larger than its limit is refused before anything is sent. Each RCPT is answered
on its own, so some recipients may be refused while others are accepted; when
every one is refused no DATA is sent. The message is dot-stuffed (RFC 5321
4.5.2) and ended by "." on its own line. DATA is driven here rather than by
aiosmtplib's data() so that a lost connection can be placed exactly: before the
final "." nothing was delivered (try again), after it the message may have
been (DeliveryUnknown).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

import aiosmtplib

from service.domain.outbox import DeliveryReport, SmtpReply
from service.protocols.smtp.client import RecordingClient, record_reply
from service.protocols.smtp.endpoint import SmtpEndpoint
from service.protocols.smtp.errors import LIBRARY_ERRORS, DeliveryUnknown, SmtpDeferred, SmtpRefused, refusal

DATA_END_TIMEOUT = 600.0  # RFC 5321 4.5.3.2.6: wait up to 10 minutes for the reply to the final "."
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def dot_stuffed(data: bytes) -> bytes:
    """The DATA payload: CRLF line ends, a leading "." doubled, then the final "." line."""
    data = _LINE_ENDS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return _LEADING_DOT.sub(b"..", data) + b".\r\n"


async def transact(
    client: RecordingClient, endpoint: SmtpEndpoint, *, sender: str, recipients: Sequence[str], data: bytes
) -> DeliveryReport:
    """Send `data` to `recipients`; returns who accepted it, raises for a failure of the whole transaction."""
    host = endpoint.host
    options = []
    if client.supports_extension("size"):
        size = len(_LINE_ENDS.sub(b"\r\n", data))
        limit = client.esmtp_extensions["size"]
        if limit.isdigit() and 0 < int(limit) < size:
            raise SmtpRefused(f"The message is {size} bytes, more than the {limit} bytes {host} accepts.")
        options.append(f"SIZE={size}")
    try:
        await client.mail(sender, options=options)
    except aiosmtplib.SMTPSenderRefused as exc:
        raise refusal(SmtpReply(exc.code, exc.message), f"{host} refused the sender address {sender}") from exc
    accepted: list[str] = []
    refused: dict[str, SmtpReply] = {}
    for recipient in recipients:
        try:
            await client.rcpt(recipient)
        except aiosmtplib.SMTPRecipientRefused as exc:
            refused[recipient] = SmtpReply(exc.code, exc.message)
            if not client.is_connected:  # 421: the server is closing the channel
                raise refusal(refused[recipient], f"{host} closed the connection") from exc
        else:
            accepted.append(recipient)
    if not accepted:
        with contextlib.suppress(*LIBRARY_ERRORS):  # every recipient was refused: RSET is a courtesy
            await client.rset()
        return DeliveryReport(accepted=(), refused=refused, reply=None)
    return DeliveryReport(accepted=tuple(accepted), refused=refused, reply=await _data(client, endpoint, data))


async def _data(client: RecordingClient, endpoint: SmtpEndpoint, data: bytes) -> SmtpReply:
    host = endpoint.host
    response = await client.execute_command(b"DATA")
    if response.code != 354:
        raise refusal(SmtpReply(response.code, response.message), f"{host} refused the message")
    protocol = client.protocol
    if protocol is None:
        raise SmtpDeferred(f"{host} closed the connection before the message was sent.")
    protocol.write(dot_stuffed(data))  # raises SMTPServerDisconnected (nothing delivered) if already gone
    client.transcript.sent(f"[{len(data)} bytes of message]")
    client.transcript.sent(".")
    try:
        response = await protocol.read_response(timeout=max(endpoint.timeout_seconds, DATA_END_TIMEOUT))
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
        client.close()
        raise DeliveryUnknown(
            f"The connection to {host} was lost after the whole message was sent and before {host} confirmed "
            "it, so it may have been delivered. It will not be sent again unless you ask."
        ) from exc
    reply = SmtpReply(response.code, response.message)
    record_reply(client.transcript, reply.code, reply.text)
    if reply.code != 250:
        raise refusal(reply, f"{host} refused the message")
    return reply
