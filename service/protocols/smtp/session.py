"""Opening an SMTP session step by step, each step timed and recorded for Test Connection.

resolve (getaddrinfo, keeping the addresses the outbound policy allows) -> connect
(TCP, to each allowed address in turn) -> tls (SSL/TLS:
the handshake at once, RFC 8314) or greeting (the 220 banner) -> ehlo
(RFC 5321 4.1.1.1; HELO if refused) -> starttls (RFC 3207, then EHLO again: what
the server said in clear cannot be trusted) -> auth (RFC 4954: one attempt, see auth.py). A server that
does not offer STARTTLS when the account requires it is an error, and nothing
more is sent in clear. The socket is ours until aiosmtplib's transport takes it
over (so the address connected to is the one resolved).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import aiosmtplib

from service.domain.connection_test import ConnectionReport, Step
from service.domain.outbox import DeliveryReport, SmtpReply
from service.domain.values import Security
from service.errors import CredentialsRejected, RemoteError, TlsFailure
from service.protocols import outbound
from service.protocols.network import not_found, wording
from service.protocols.smtp.auth import sign_in, sign_in_with_token
from service.protocols.smtp.client import RecordingClient, record_reply
from service.protocols.smtp.endpoint import SmtpEndpoint
from service.protocols.smtp.errors import LIBRARY_ERRORS, SmtpDeferred, hint_for, translate
from service.protocols.smtp.transaction import transact
from service.protocols.tls import client_context, describe_certificate
from service.protocols.transcript import Transcript

T = TypeVar("T")
QUIT_TIMEOUT = 5.0


def _address_literal(sock: socket.socket) -> str:
    """EHLO's argument: our address literal (RFC 5321 4.1.3), which says no more than the server sees."""
    address = str(sock.getsockname()[0])
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


def _addresses(targets: list[outbound.Target]) -> str:
    return ", ".join(dict.fromkeys(target.ip for target in targets))


def _keeping_token_out(transcript: Transcript, endpoint: SmtpEndpoint) -> Transcript:
    """The transcript, told to mask the endpoint's OAuth2 token wherever it might appear (the AUTH
    line and its answers are redacted anyway; see transcript.py)."""
    token = endpoint.oauth_token
    if token and token not in transcript.secrets:
        transcript.secrets = (*transcript.secrets, token)
    return transcript


class SmtpSession:
    """One connection, opened step by step (each recorded in `report`), then used to send."""

    def __init__(self, endpoint: SmtpEndpoint, transcript: Transcript, report: ConnectionReport) -> None:
        self.endpoint = endpoint
        self.transcript = _keeping_token_out(transcript, endpoint)
        self.report = report
        self._sock: socket.socket | None = None
        self._client: RecordingClient | None = None
        self._context: ssl.SSLContext | None = None
        self._socket_handed_over = False  # once aiosmtplib has the socket, its transport closes it

    @property
    def client(self) -> RecordingClient:
        assert self._client is not None, "the session is not open"
        return self._client

    async def _step(self, name: str, action: Callable[[], Awaitable[T]], describe: Callable[[T], str]) -> T:
        started = time.perf_counter()
        try:
            result = await action()
        except (RemoteError, *LIBRARY_ERRORS) as exc:
            error = translate(exc, self.endpoint, name)
            elapsed = (time.perf_counter() - started) * 1000
            sentence = (wording(error) or (error.message, ""))[0]
            self.report.steps.append(Step(name, False, elapsed, sentence, hint_for(name, error)))
            if error is exc:
                raise
            raise error from exc
        self.report.steps.append(Step(name, True, (time.perf_counter() - started) * 1000, describe(result)))
        return result

    async def open(self) -> None:
        endpoint = self.endpoint
        targets = await self._step("resolve", self._resolve, _addresses)
        sock = await self._step(
            "connect", lambda: self._connect(targets), lambda s: f"connected to {s.getpeername()[0]}"
        )
        self._sock = sock
        if endpoint.security is not Security.NONE:
            self._context = client_context(verify=endpoint.verify_certificate, extra_ca_file=endpoint.extra_ca_file)
        self._client = RecordingClient(
            transcript=self.transcript,
            hostname=endpoint.host,
            sock=sock,
            use_tls=endpoint.security is Security.SSL,
            start_tls=False,
            tls_context=self._context,
            timeout=endpoint.timeout_seconds,
            local_hostname=_address_literal(sock),
        )
        if endpoint.security is Security.SSL:
            await self._step("tls", self._greet, lambda greeting: f"{self._certificate()}; {greeting}")
        else:
            await self._step("greeting", self._greet, str)
        await self._step("ehlo", self._ehlo, str)
        if endpoint.security is Security.STARTTLS:
            await self._step("starttls", self._starttls, str)
        if endpoint.auth_required or endpoint.oauth_token is not None:
            await self._step("auth", self._login, str)

    async def _resolve(self) -> list[outbound.Target]:
        endpoint = self.endpoint
        try:
            async with asyncio.timeout(endpoint.timeout_seconds):
                return await outbound.resolve_async(endpoint.host, endpoint.port, endpoint.policy)
        except socket.gaierror as exc:
            raise not_found(self.endpoint.host, SmtpDeferred) from exc

    async def _connect(self, targets: list[outbound.Target]) -> socket.socket:
        loop = asyncio.get_running_loop()
        error: BaseException | None = None
        for target in targets:
            sock = socket.socket(target.family, target.kind, target.proto)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(self.endpoint.timeout_seconds):
                    await loop.sock_connect(sock, target.sockaddr)
            except OSError as exc:  # TimeoutError included: try the next address
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        raise translate(error or OSError("no address to connect to"), self.endpoint, "connect")

    async def _greet(self) -> SmtpReply:
        try:
            response = await self.client.connect()
        except BaseException:  # no transport took the socket (a silent or closing server, a TLS failure)
            if not self.client.is_connected:
                self._socket_handed_over = False
                self.client.close()
            raise
        self._socket_handed_over = True
        record_reply(self.transcript, response.code, response.message)
        return SmtpReply(response.code, response.message)

    async def _ehlo(self) -> str:
        try:
            await self.client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await self.client.helo()
        extensions = self.client.esmtp_extensions
        return ", ".join(f"{name.upper()} {value}".strip() for name, value in sorted(extensions.items())) or "no ESMTP"

    def _certificate(self) -> str:
        ssl_object = self.client.get_transport_info("ssl_object")
        return describe_certificate(ssl_object, verified=self.endpoint.verify_certificate)

    async def _starttls(self) -> str:
        if not self.client.supports_extension("starttls"):
            raise TlsFailure(
                f"{self.endpoint.host} does not offer STARTTLS, so the connection cannot be encrypted; "
                "nothing was sent. Choose SSL/TLS if the server expects TLS at once."
            )
        self.transcript.sent("STARTTLS")
        response = await self.client.starttls(server_hostname=self.endpoint.host, tls_context=self._context)
        record_reply(self.transcript, response.code, response.message)
        return f"{self._certificate()}; after STARTTLS: {await self._ehlo()}"

    async def _login(self) -> str:
        client, host = self.client, self.endpoint.host
        if not client.supports_extension("auth"):
            raise CredentialsRejected(
                f"{host} does not offer authentication on this connection; turn authentication off for this "
                "account if the server does not need it, or choose STARTTLS or SSL/TLS."
            )
        endpoint = self.endpoint
        if endpoint.oauth_token is not None:
            mechanism = await sign_in_with_token(client, endpoint.username, endpoint.oauth_token, host=host)
            return f"signed in as {endpoint.username} with {mechanism}"
        encrypted = endpoint.security is not Security.NONE
        mechanism = await sign_in(client, endpoint.username, endpoint.password, encrypted=encrypted, host=host)
        return f"signed in as {endpoint.username} with {mechanism}"

    @property
    def connected(self) -> bool:
        """Still usable for another transaction (the server has not closed the connection)."""
        return self._client is not None and self._client.is_connected

    def record_into(self, transcript: Transcript) -> None:
        """Record the next exchanges into `transcript` (each message keeps its own, when reused)."""
        self.transcript = _keeping_token_out(transcript, self.endpoint)
        if self._client is not None:
            self._client.transcript = self.transcript

    async def send(self, *, sender: str, recipients: Sequence[str], data: bytes) -> DeliveryReport:
        """One mail transaction (see `transaction`)."""
        try:
            return await transact(self.client, self.endpoint, sender=sender, recipients=recipients, data=data)
        except LIBRARY_ERRORS as exc:
            raise translate(exc, self.endpoint) from exc

    async def close(self) -> None:
        """QUIT politely if still connected, then close whatever is open."""
        client = self._client
        if client is not None and client.is_connected:
            with contextlib.suppress(*LIBRARY_ERRORS):
                await client.quit(timeout=QUIT_TIMEOUT)
            client.close()
        if self._sock is not None and not self._socket_handed_over:
            self._sock.close()
