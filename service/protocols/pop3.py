"""POP3 (RFC 1939) retrieval with poplib: the only module that talks POP3.

Blocking, like imaplib: the use case calls it through `asyncio.to_thread`.

- The name is resolved once under the account's outbound policy and only an
  allowed address is connected to; the name drives SNI and verification.
- Security is data: SSL wraps the socket before the greeting (port 995);
  STLS (RFC 2595 section 4) upgrades after it and is an error, never a
  fallback, when CAPA (RFC 2449) does not list it.
- Authentication: USER/PASS, or APOP (RFC 1939 section 7), whose digest
  needs the "<...>" timestamp in the greeting; with an OAuth2 access token,
  AUTH (RFC 5034) OAUTHBEARER if CAPA's SASL line offers it, else XOAUTH2
  (`service.protocols.sasl`). A refused token is TokenRejected.
- UIDL gives each message a stable id; without it `uidl()` returns None.
- Deletion is only ever DELE (marks) followed by QUIT (the UPDATE state
  commits the marks); a session that ends any other way deletes nothing.
- poplib's 2,048-byte line limit is lifted; RETR reads a message in large
  chunks straight into one buffer, with byte-stuffing undone.
"""

from __future__ import annotations

import base64
import poplib
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from service.domain.connection_test import ConnectionReport
from service.domain.outbound import STRICT, OutboundPolicy
from service.domain.values import Security
from service.errors import CredentialsRejected, RemoteError, ServerUnavailable, TlsFailure, UnsupportedByServer
from service.protocols import outbound, sasl
from service.protocols.deadline import Deadline
from service.protocols.network import network_error
from service.protocols.probe import StepFailed, opening, resolve_and_connect, step
from service.protocols.tls import WRONG_PORT_HINT, describe_certificate, shared_client_context
from service.protocols.transcript import Transcript

CONNECT_TIMEOUT_SECONDS = 15.0
MAX_LINE_BYTES = 1024 * 1024  # a line longer than this is not mail, it is an attack
APOP_TIMESTAMP = re.compile(rb"<[^<>]+@[^<>]+>|<[^<>]+>")


@dataclass(frozen=True, slots=True)
class Pop3Account:
    """How to reach and sign in to one maildrop: password (USER/PASS or APOP), or an OAuth2 access
    token when `oauth_token` is set (then the password and APOP are unused). Neither is in repr()."""

    host: str
    port: int
    security: Security
    username: str
    password: str = field(repr=False)
    verify_certificate: bool = True
    timeout_seconds: float = 60.0
    extra_ca_file: Path | None = None
    use_apop: bool = False
    debug: bool = False
    policy: OutboundPolicy = STRICT
    oauth_token: str | None = field(default=None, repr=False)


class _Pop3(poplib.POP3):
    """poplib.POP3 that reports its socket before the greeting, traces lines, and reads long lines."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        *,
        watcher: Callable[[socket.socket], None],
        context: ssl.SSLContext | None,
        transcript: Transcript | None,
        targets: Sequence[outbound.Target],
    ) -> None:
        self._watcher = watcher
        self._targets = targets
        self._implicit_tls = context
        self._transcript = transcript
        try:
            super().__init__(host, port, timeout)
        except BaseException:  # poplib leaves its socket open when the greeting fails (a silent or closing server)
            if hasattr(self, "file"):
                self.close()
            elif getattr(self, "sock", None) is not None:
                self.sock.close()
            raise

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = outbound.connect(self._targets, timeout)
        self._watcher(sock)
        if self._implicit_tls is not None:
            tls_sock = self._implicit_tls.wrap_socket(sock, server_hostname=self.host)
            self._watcher(tls_sock)
            return tls_sock
        return sock

    def _putline(self, line: bytes) -> None:
        if self._transcript is not None:
            self._transcript.sent(line.decode("utf-8", "replace"))
        super()._putline(line)  # type: ignore[misc]  # private in typeshed, stable in poplib

    def _getline(self) -> tuple[bytes, int]:
        line = self.file.readline(MAX_LINE_BYTES + 1)
        if len(line) > MAX_LINE_BYTES:
            raise poplib.error_proto("line too long")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        octets = len(line)
        if line[-2:] == b"\r\n":
            line = line[:-2]
        elif line[-1:] in (b"\n", b"\r"):
            line = line[:-1]
        return line, octets

    def _getresp(self) -> bytes:
        response: bytes = super()._getresp()  # type: ignore[misc]
        if self._transcript is not None:
            self._transcript.received(response.decode("utf-8", "replace"))
        return response

    def authenticate(self, mechanism: str, message: bytes, *, error_answer: bytes) -> bytes:
        """AUTH (RFC 5034) with a one-message SASL mechanism; returns the server's "+OK" line.

        The message goes after the server's empty "+ " challenge, not as an initial response
        on the AUTH line: RFC 5034 section 4 allows that only while the command stays within
        RFC 2449's 255 octets, far less than a bearer token (Microsoft documents this form too).
        A refusal may come as a "+ <error>" challenge (RFC 7628 3.2.2), which poplib would take
        for success: it is answered with `error_answer` and the final "-ERR" raises error_proto."""
        self._putcmd(f"AUTH {mechanism}")  # type: ignore[attr-defined]
        reply = self._getresp()
        if reply.startswith(b"+OK"):
            raise poplib.error_proto(b"-ERR the server took AUTH without any credentials")
        self._putcmd(base64.b64encode(message).decode("ascii"))  # type: ignore[attr-defined]
        reply = self._getresp()
        if not reply.startswith(b"+OK"):  # the error challenge
            self._putcmd(base64.b64encode(error_answer).decode("ascii"))  # type: ignore[attr-defined]
            reply = self._getresp()
            if not reply.startswith(b"+OK"):
                raise poplib.error_proto(b"-ERR the server sent another challenge after the refusal")
        return reply

    def retr_bytes(self, which: int, *, limit: int | None = None) -> bytes:
        """RETR one message (RFC 1939 section 7): the multi-line response is read in large
        chunks up to the terminating "CRLF.CRLF" and joined once (the message is in memory
        about twice, briefly), then byte-stuffing is undone ("..x" at a line start is ".x").
        Line by line would cost a Python call per line. A server that sends more than
        `limit` bytes is cut off."""
        self._putcmd(f"RETR {which}")  # type: ignore[attr-defined]
        self._getresp()
        chunks: list[bytes] = []
        total = 0
        tail = b"\r\n"  # the terminator and stuffing rules apply to the first line too
        while True:
            if limit is not None and total > limit:
                raise poplib.error_proto(f"-ERR message {which} is longer than the server announced")
            chunk = self.file.read1(_CHUNK)  # type: ignore[attr-defined]  # makefile("rb"): a BufferedReader
            if not chunk:
                raise poplib.error_proto("-ERR EOF")
            chunks.append(chunk)
            total += len(chunk)
            early = _TERMINATOR.search(tail + chunk[:64])  # CRLF.CRLF across the boundary
            if early is not None:
                end = total - len(chunk) - len(tail) + early.start() + 1
                break
            found = _TERMINATOR.search(chunk)
            if found is not None:
                end = total - len(chunk) + found.start() + 1
                break
            tail = (tail + chunk[-4:])[-4:]
        return _unstuffed(b"".join(_cut(chunks, total, end)))


def _cut(chunks: list[bytes], total: int, end: int) -> list[bytes]:
    """The chunks trimmed to their first `end` bytes (`total` is their length)."""
    while chunks and total - len(chunks[-1]) >= end:
        total -= len(chunks.pop())
    if chunks:
        chunks[-1] = chunks[-1][: end - (total - len(chunks[-1]))]
    return chunks


def _unstuffed(data: bytes) -> bytes:
    """Byte-stuffing undone: a line that starts with ".." starts with "." (RFC 1939 section 3)."""
    if data.startswith(b".."):
        data = data[1:]
    return data.replace(b"\n..", b"\n.")  # the same object when there is nothing to undo


_TERMINATOR = re.compile(rb"\n\.\r?\n")
_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Listing:
    """What the maildrop holds now: message numbers with sizes, and UIDLs when the server has them."""

    sizes: dict[int, int]
    uidls: dict[int, bytes] | None


class Pop3Session:
    """One signed-in POP3 session. Methods are called from one thread at a time."""

    def __init__(self, account: Pop3Account, *, deadline: float | None = None) -> None:
        self.account = account
        secrets = (account.password, account.oauth_token or "")
        self.transcript = Transcript(secrets=secrets) if account.debug else None
        self.client: _Pop3 | None = None
        self.welcome = ""
        self.tls_socket: ssl.SSLSocket | None = None
        self.stls_offered = False
        self._deadline = Deadline(deadline)

    def _context(self) -> ssl.SSLContext:
        return shared_client_context(self.account.verify_certificate, self.account.extra_ca_file)

    @property
    def apop_timestamp(self) -> bool:
        return APOP_TIMESTAMP.search(self.welcome.encode()) is not None

    def connect(self, targets: Sequence[outbound.Target] | None = None) -> None:
        """Resolve (unless `targets`, already checked, are given), connect to an allowed address,
        TLS for SSL, the greeting, then STLS when asked for."""
        account = self.account
        self._deadline.start()
        with self.translated("connect"):
            if targets is None:
                targets = outbound.resolve(account.host, account.port, account.policy)
            self.client = _Pop3(
                account.host,
                account.port,
                min(CONNECT_TIMEOUT_SECONDS, account.timeout_seconds),
                watcher=self._deadline.watch,
                context=self._context() if account.security is Security.SSL else None,
                transcript=self.transcript,
                targets=targets,
            )
            self.client.sock.settimeout(account.timeout_seconds)
            self.welcome = self.client.getwelcome().decode("utf-8", "replace")
            if account.security is Security.STARTTLS:
                self._start_tls()
            if isinstance(self.client.sock, ssl.SSLSocket):
                self.tls_socket = self.client.sock
                self._deadline.watch(self.tls_socket)

    def capabilities(self) -> dict[str, list[str]]:
        assert self.client is not None
        try:
            capabilities: dict[str, list[str]] = self.client.capa()
        except poplib.error_proto:
            return {}  # CAPA is optional (RFC 2449): a server without it has only the basics
        return capabilities

    def _start_tls(self) -> None:
        assert self.client is not None
        self.stls_offered = "STLS" in self.capabilities()
        if not self.stls_offered:
            raise TlsFailure(
                f"{self.account.host} does not offer STLS on port {self.account.port}. Choose SSL/TLS "
                "(usually port 995), or None only if you accept sending your password in clear."
            )
        self.client.stls(context=self._context())

    def login(self) -> str:
        """Sign in; returns how: "USER/PASS", "APOP", "OAUTHBEARER" or "XOAUTH2"."""
        assert self.client is not None
        account = self.account
        with self.translated("login"):
            if account.oauth_token is not None:
                # CAPA again: what a server said before STLS no longer counts (RFC 2595 section 4).
                mechanism = sasl.choose_mechanism(self.capabilities().get("SASL", []), host=account.host)
                message = sasl.client_message(mechanism, account.username, account.oauth_token)
                self.client.authenticate(mechanism, message, error_answer=sasl.error_answer(mechanism))
                return mechanism
            if account.use_apop:
                if not self.apop_timestamp:
                    raise UnsupportedByServer(
                        f"{account.host} does not support APOP: its greeting carries no timestamp. "
                        "Turn off APOP authentication for this task."
                    )
                self.client.apop(account.username, account.password)
                return "APOP"
            self.client.user(account.username)
            self.client.pass_(account.password)
            return "USER/PASS"

    def listing(self) -> Listing:
        """LIST (sizes) and UIDL (ids; None when the server answers UIDL with -ERR)."""
        assert self.client is not None
        with self.translated("list messages"):
            _, lines, _ = self.client.list()
            sizes = {number: int(value) for number, value in map(_number_and_value, lines)}
            try:
                _, lines, _ = self.client.uidl()
            except poplib.error_proto:
                return Listing(sizes=sizes, uidls=None)
        uidls = {}
        for line in lines:
            number, value = _number_and_value(line)
            uidls[number] = value
        return Listing(sizes=sizes, uidls=uidls)

    def retrieve(self, number: int, *, size: int | None = None) -> bytes:
        """The message's bytes; `size` (from LIST) bounds what a misbehaving server may send."""
        assert self.client is not None
        with self.translated(f"retrieve message {number}"):
            return self.client.retr_bytes(number, limit=None if size is None else 2 * size + 1024 * 1024)

    def header_date(self, number: int) -> datetime | None:
        """The message's Date header (TOP n 0, RFC 1939 section 7: the headers alone), as an
        aware datetime; None when it has none or it cannot be read (naive dates count as UTC).
        The initial import's "Messages since DATE" for POP3, which has no SEARCH."""
        assert self.client is not None
        with self.translated(f"read the headers of message {number}"):
            _, lines, _ = self.client.top(number, 0)
        return _date_of(b"\r\n".join(lines))  # poplib already undid the byte-stuffing

    def mark_deleted(self, number: int) -> None:
        """DELE: marks only. Nothing is removed unless QUIT follows (RFC 1939 section 6)."""
        assert self.client is not None
        with self.translated("mark for deletion"):
            self.client.dele(number)

    def quit(self) -> None:
        """QUIT: the server commits the DELE marks now. Raises if it could not."""
        assert self.client is not None
        with self.translated("quit"):
            self.client.quit()
        self.client = None

    def close(self) -> None:
        """End the session without committing deletions (no QUIT): for errors and aborted runs."""
        self._deadline.cancel()
        if self.client is not None:
            with suppress(OSError):
                self.client.close()
            self.client = None

    def message_count(self) -> int:
        assert self.client is not None
        with self.translated("count messages"):
            count, _ = self.client.stat()
        return int(count)

    @contextmanager
    def translated(self, step_name: str) -> Iterator[None]:
        host, port = self.account.host, self.account.port
        try:
            yield
        except RemoteError:
            raise
        except poplib.error_proto as exc:
            text = _server_text(exc)
            if self._deadline.expired:
                raise ServerUnavailable(
                    f"{host} was too slow: the retrieval ran out of time during {step_name}."
                ) from exc
            if step_name == "login" and self.account.oauth_token is not None:
                if "EOF" in text:  # e.g. Dovecot drops a client whose AUTH answer passes 8,192 bytes
                    raise ServerUnavailable(f"{host} closed the connection during the sign-in.") from exc
                if "[SYS/TEMP]" in text.upper():  # RFC 3206: the server could not check it now
                    raise ServerUnavailable(f"{host} could not check the sign-in token for now ({text}).") from exc
                raise sasl.token_rejected(host, text) from exc
            if step_name == "login":
                raise CredentialsRejected(
                    f"{host} rejected the username or password ({text}). Check them and try again."
                ) from exc
            if step_name == "connect":
                raise ServerUnavailable(f"{host} did not greet like a POP3 server. {WRONG_PORT_HINT}") from exc
            if "EOF" in text:
                raise ServerUnavailable(f"{host} closed the connection unexpectedly during {step_name}.") from exc
            raise ServerUnavailable(f"{host} refused {step_name}: {text}.") from exc
        except (OSError, EOFError) as exc:
            timeout, expired = self.account.timeout_seconds, self._deadline.expired
            translated = network_error(exc, host=host, port=port, step=step_name, timeout=timeout, expired=expired)
            raise (translated or ServerUnavailable(f"{host} failed during {step_name}.")) from exc


def _date_of(head: bytes) -> datetime | None:
    """The Date header of raw headers; real-world mail carries any garbage there."""
    try:
        value = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n\r\n").get("Date")
        if value is None:
            return None
        when = parsedate_to_datetime(str(value))
    except Exception:  # malformed headers: no date, never a failed run
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _number_and_value(line: bytes) -> tuple[int, bytes]:
    number, _, value = line.strip().partition(b" ")
    return int(number), value.strip()


def _server_text(exc: BaseException) -> str:
    arg: Any = exc.args[0] if exc.args else b""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return text.strip()[:200] or type(exc).__name__


@contextmanager
def open_session(account: Pop3Account, *, deadline: float | None = None) -> Iterator[Pop3Session]:
    session = Pop3Session(account, deadline=deadline)
    try:
        session.connect()
        session.login()
        yield session
    finally:
        session.close()


def test_connection(account: Pop3Account) -> ConnectionReport:
    """Resolve, connect, greeting (APOP timestamp?), TLS, capabilities (STLS?), login, message count."""
    report = ConnectionReport()
    session = Pop3Session(account, deadline=time.monotonic() + 3 * account.timeout_seconds)
    try:
        timeout = min(CONNECT_TIMEOUT_SECONDS, account.timeout_seconds)
        targets = resolve_and_connect(report, account.host, account.port, timeout, account.policy)
        with opening(report, welcome=lambda: session.welcome) as detail:
            session.connect(targets)
            detail.append(session.welcome[:200])
            detail.append("APOP timestamp present" if session.apop_timestamp else "no APOP timestamp")
        if session.tls_socket is not None:
            with step(report, "tls") as detail:
                detail.append(describe_certificate(session.tls_socket, verified=account.verify_certificate))
        with step(report, "capabilities") as detail:
            capabilities = session.capabilities()
            detail.append(" ".join(sorted(capabilities)) or "CAPA not supported")
            offered = session.stls_offered or "STLS" in capabilities
            detail.append("STLS offered" if offered else "STLS not offered")
        oauth = account.oauth_token is not None
        hint = sasl.RECONNECT_HINT if oauth else "Check the username and password (and the APOP setting)."
        with step(report, "login", hint=hint) as detail:
            mechanism = session.login()
            detail.append(
                f"signed in as {account.username}" + ("" if mechanism == "USER/PASS" else f" with {mechanism}")
            )
        with step(report, "messages") as detail:
            detail.append(f"{session.message_count()} messages")
    except StepFailed:
        pass
    finally:
        if session.client is not None:
            with suppress(RemoteError):
                session.quit()
        session.close()
    return report
