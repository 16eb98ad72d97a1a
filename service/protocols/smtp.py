"""SMTP submission with aiosmtplib: one session through a user's account or the company relay.

A session: resolve the host; open TCP; TLS at once for SSL/TLS (RFC 8314, port
465); the 220 greeting; EHLO (RFC 5321 4.1.1.1, HELO if refused); for STARTTLS
(RFC 3207) the upgrade and a second EHLO, since what the server said in clear
cannot be trusted. A server that does not offer STARTTLS is an error: nothing
is sent in clear. Then AUTH (RFC 4954) when the account authenticates, and one
mail transaction: MAIL FROM with SIZE (RFC 1870), one RCPT TO per recipient
(some may be refused while others are accepted), DATA, the message dot-stuffed
(RFC 5321 4.5.2) and the final "." line.

Each step is timed for Test Connection. aiosmtplib's and ssl's exceptions are
translated here: SmtpDeferred (try later: 4yz, timeouts, a connection refused
or lost before the final "."), SmtpRefused (5yz), CredentialsRejected,
TlsFailure, and DeliveryUnknown (the connection was lost after the final "."
and before the reply: the message may have been delivered, RFC 5321 4.1.1.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosmtplib
from aiosmtplib.typing import Default

from service.domain.connection_test import ConnectionReport, Step
from service.domain.outbox import DeliveryReport, SmtpReply
from service.domain.values import Security
from service.errors import CredentialsRejected, MessageRejected, RemoteError, ServerUnavailable, TlsFailure
from service.protocols.tls import WRONG_PORT_HINT, client_context, describe_certificate, tls_failure
from service.protocols.transcript import Transcript

T = TypeVar("T")
QUIT_TIMEOUT = 5.0
DATA_END_TIMEOUT = 600.0  # RFC 5321 4.5.3.2.6: wait up to 10 minutes for the reply to the final "."
_LIBRARY_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")
HINTS = {
    "resolve": "Check the server address for typing mistakes.",
    "connect": "Check the port, and that this machine may reach the server (a firewall may block it).",
    "tls": WRONG_PORT_HINT,
    "greeting": WRONG_PORT_HINT,
    "ehlo": "Check that the server address and port belong to an SMTP server.",
    "starttls": "Choose SSL/TLS (usually port 465) if the server expects TLS at once.",
    "auth": "Check the username and password; some providers need an app password for SMTP.",
}
CERTIFICATE_HINT = "If you trust this server, turn off certificate verification for this account."


@dataclass(frozen=True, slots=True)
class SmtpEndpoint:
    """Where and how to connect. The password is kept out of repr()."""

    host: str
    port: int
    security: Security
    verify_certificate: bool = True
    auth_required: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    timeout_seconds: float = 30
    extra_ca_file: Path | None = None


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


def _record_reply(transcript: Transcript, code: int, text: str) -> None:
    lines = text.split("\n") or [""]
    for number, line in enumerate(lines, start=1):
        transcript.received(f"{code}{' ' if number == len(lines) else '-'}{line}")


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client with every command and reply copied to the transcript (which redacts AUTH)."""

    def __init__(self, *, transcript: Transcript, **options: Any) -> None:
        super().__init__(**options)
        self.transcript = transcript

    async def execute_command(
        self,
        *args: bytes,
        timeout: float | Literal[Default.token] | None = Default.token,  # noqa: ASYNC109  (aiosmtplib's signature)
    ) -> aiosmtplib.SMTPResponse:
        self.transcript.sent(b" ".join(args).decode("utf-8", "replace"))
        response = await super().execute_command(*args, timeout=timeout)
        _record_reply(self.transcript, response.code, response.message)
        return response


def _refusal(reply: SmtpReply, what: str) -> RemoteError:
    """A 4yz or 5yz reply as the matching error, the server's words kept."""
    if reply.temporary:
        return SmtpDeferred(f"{what} for now ({reply}); Tributary will try again later.", reply)
    return SmtpRefused(f"{what} ({reply}).", reply)


def translate(exc: BaseException, endpoint: SmtpEndpoint) -> RemoteError:
    """aiosmtplib's, ssl's and socket's exceptions as sentences a user can act on."""
    host = endpoint.host
    if isinstance(exc, RemoteError):
        return exc
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, ssl.SSLError):
            return tls_failure(candidate, host)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        reply = SmtpReply(exc.code, exc.message)
        if reply.temporary:
            return SmtpDeferred(f"{host} could not check the password for now ({reply}).", reply)
        return CredentialsRejected(f"{host} refused the username or password ({reply}).")
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        return _refusal(SmtpReply(exc.code, exc.message), f"{host} refused")
    if isinstance(exc, TimeoutError):
        return SmtpDeferred(f"{host} did not answer within {endpoint.timeout_seconds:g} seconds.")
    if isinstance(exc, ConnectionRefusedError):
        return SmtpDeferred(f"{host} refused the connection on port {endpoint.port}.")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        return SmtpDeferred(f"{host} closed the connection unexpectedly.")
    reason = getattr(exc, "message", None) or (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
    return SmtpDeferred(f"The conversation with {host} on port {endpoint.port} failed ({reason}).")


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA payload: CRLF line ends, a leading "." doubled, then the final "." line."""
    data = _LINE_ENDS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return _LEADING_DOT.sub(b"..", data) + b".\r\n"


def _address_literal(sock: socket.socket) -> str:
    """EHLO's argument: our address literal (RFC 5321 4.1.3), which says no more than the server sees."""
    address = str(sock.getsockname()[0])
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


class SmtpSession:
    """One connection, opened step by step (each recorded in `report`), ready to send messages."""

    def __init__(self, endpoint: SmtpEndpoint, transcript: Transcript, report: ConnectionReport) -> None:
        self.endpoint = endpoint
        self.transcript = transcript
        self.report = report
        self._sock: socket.socket | None = None
        self._client: _Client | None = None
        self._context: ssl.SSLContext | None = None
        self._socket_handed_over = False  # once aiosmtplib has the socket, its transport closes it

    async def _step(self, name: str, action: Callable[[], Awaitable[T]], describe: Callable[[T], str]) -> T:
        started = time.perf_counter()
        try:
            result = await action()
        except (RemoteError, *_LIBRARY_ERRORS) as exc:
            error = translate(exc, self.endpoint)
            hint = CERTIFICATE_HINT if "could not be verified" in error.message else HINTS.get(name, "")
            self.report.steps.append(Step(name, False, (time.perf_counter() - started) * 1000, error.message, hint))
            if error is exc:
                raise
            raise error from exc
        self.report.steps.append(Step(name, True, (time.perf_counter() - started) * 1000, describe(result)))
        return result

    @property
    def client(self) -> _Client:
        assert self._client is not None, "the session is not open"
        return self._client

    async def open(self) -> None:
        endpoint = self.endpoint
        infos = await self._step("resolve", self._resolve, lambda found: ", ".join(str(i[4][0]) for i in found))
        self._sock = await self._step(
            "connect", lambda: self._connect(infos), lambda s: f"connected to {s.getpeername()[0]}"
        )
        if endpoint.security is not Security.NONE:
            self._context = client_context(verify=endpoint.verify_certificate, extra_ca_file=endpoint.extra_ca_file)
        self._client = _Client(
            transcript=self.transcript,
            hostname=endpoint.host,
            sock=self._sock,
            use_tls=endpoint.security is Security.SSL,
            start_tls=False,
            tls_context=self._context,
            timeout=endpoint.timeout_seconds,
            local_hostname=_address_literal(self._sock),
        )
        if endpoint.security is Security.SSL:
            await self._step("tls", self._greet, lambda greeting: f"{self._certificate()}; {greeting}")
        else:
            await self._step("greeting", self._greet, str)
        await self._step("ehlo", self._ehlo, str)
        if endpoint.security is Security.STARTTLS:
            await self._step("starttls", self._starttls, str)
        if endpoint.auth_required:
            await self._step("auth", self._login, str)

    async def _resolve(self) -> list[Any]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.endpoint.timeout_seconds):
                return await loop.getaddrinfo(self.endpoint.host, self.endpoint.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise SmtpDeferred(f"The server name {self.endpoint.host} could not be found.") from exc

    async def _connect(self, infos: list[Any]) -> socket.socket:
        loop = asyncio.get_running_loop()
        error: BaseException | None = None
        for family, kind, proto, _name, address in infos:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(self.endpoint.timeout_seconds):
                    await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        raise translate(error or OSError("no address"), self.endpoint)

    async def _greet(self) -> SmtpReply:
        self._socket_handed_over = True
        response = await self.client.connect()
        _record_reply(self.transcript, response.code, response.message)
        return SmtpReply(response.code, response.message)

    async def _ehlo(self) -> str:
        try:
            await self.client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await self.client.helo()
        extensions = self.client.esmtp_extensions
        return ", ".join(f"{name.upper()} {value}".strip() for name, value in sorted(extensions.items())) or "no ESMTP"

    def _certificate(self) -> str:
        return describe_certificate(
            self.client.get_transport_info("ssl_object"), verified=self.endpoint.verify_certificate
        )

    async def _starttls(self) -> str:
        if not self.client.supports_extension("starttls"):
            raise TlsFailure(
                f"{self.endpoint.host} does not offer STARTTLS, so the connection cannot be encrypted; "
                "nothing was sent. Choose SSL/TLS if the server expects TLS at once."
            )
        self.transcript.sent("STARTTLS")
        response = await self.client.starttls(server_hostname=self.endpoint.host, tls_context=self._context)
        _record_reply(self.transcript, response.code, response.message)
        return f"{self._certificate()}; after STARTTLS: {await self._ehlo()}"

    async def _login(self) -> str:
        client, host = self.client, self.endpoint.host
        if not client.supports_extension("auth"):
            raise CredentialsRejected(
                f"{host} does not offer authentication on this connection; turn authentication off for this "
                "account if the server does not need it, or choose STARTTLS or SSL/TLS."
            )
        if not client.supported_auth_methods:
            raise CredentialsRejected(
                f"{host} offers no sign-in method Tributary supports ({client.esmtp_extensions.get('auth', '')})."
            )
        await client.login(self.endpoint.username, self.endpoint.password)
        return f"signed in as {self.endpoint.username}"

    async def send(self, *, sender: str, recipients: Sequence[str], data: bytes) -> DeliveryReport:
        """One mail transaction. Returns who accepted it; raises for a failure of the whole transaction."""
        try:
            return await self._transaction(sender, recipients, data)
        except _LIBRARY_ERRORS as exc:
            raise translate(exc, self.endpoint) from exc

    async def _transaction(self, sender: str, recipients: Sequence[str], data: bytes) -> DeliveryReport:
        client, host = self.client, self.endpoint.host
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
            raise _refusal(SmtpReply(exc.code, exc.message), f"{host} refused the sender address {sender}") from exc
        accepted: list[str] = []
        refused: dict[str, SmtpReply] = {}
        for recipient in recipients:
            try:
                await client.rcpt(recipient)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused[recipient] = SmtpReply(exc.code, exc.message)
                if not client.is_connected:  # 421: the server is closing the channel
                    raise _refusal(refused[recipient], f"{host} closed the connection") from exc
            else:
                accepted.append(recipient)
        if not accepted:
            with contextlib.suppress(*_LIBRARY_ERRORS):  # every recipient was refused: RSET is a courtesy
                await client.rset()
            return DeliveryReport(accepted=(), refused=refused, reply=None)
        return DeliveryReport(accepted=tuple(accepted), refused=refused, reply=await self._data(data))

    async def _data(self, data: bytes) -> SmtpReply:
        client, host = self.client, self.endpoint.host
        response = await client.execute_command(b"DATA")
        if response.code != 354:
            raise _refusal(SmtpReply(response.code, response.message), f"{host} refused the message")
        protocol = client.protocol
        if protocol is None:
            raise SmtpDeferred(f"{host} closed the connection before the message was sent.")
        protocol.write(_dot_stuffed(data))  # raises SMTPServerDisconnected (nothing delivered) if already gone
        self.transcript.sent(f"[{len(data)} bytes of message]")
        self.transcript.sent(".")
        try:
            response = await protocol.read_response(timeout=max(self.endpoint.timeout_seconds, DATA_END_TIMEOUT))
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
            client.close()
            raise DeliveryUnknown(
                f"The connection to {host} was lost after the whole message was sent and before {host} confirmed "
                "it, so it may have been delivered. It will not be sent again unless you ask."
            ) from exc
        reply = SmtpReply(response.code, response.message)
        _record_reply(self.transcript, reply.code, reply.text)
        if reply.code != 250:
            raise _refusal(reply, f"{host} refused the message")
        return reply

    async def close(self) -> None:
        client = self._client
        if client is not None and client.is_connected:
            with contextlib.suppress(*_LIBRARY_ERRORS):
                await client.quit(timeout=QUIT_TIMEOUT)
            client.close()
        if self._sock is not None and not self._socket_handed_over:
            self._sock.close()


@asynccontextmanager
async def session(
    endpoint: SmtpEndpoint, *, transcript: Transcript, report: ConnectionReport | None = None
) -> AsyncIterator[SmtpSession]:
    """An open, authenticated session; closed (QUIT) when the block ends, whatever happens."""
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
    """Test Connection: every step up to AUTH, then QUIT. Failures end up in the report, not raised."""
    report = ConnectionReport()
    try:
        async with session(endpoint, transcript=transcript, report=report):
            pass
    except RemoteError:
        pass
    return report
