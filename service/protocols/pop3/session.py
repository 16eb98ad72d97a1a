"""One signed-in POP3 (RFC 1939) session: connect, TLS, sign in, list, retrieve, delete.

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
- RETR and DELE of many messages are pipelined (RFC 2449 section 6.6) when
  CAPA, asked once after sign-in, lists PIPELINING (`transfer`).
"""

from __future__ import annotations

import poplib
import re
import socket
import ssl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime
from pathlib import Path

from service.domain.outbound import STRICT, OutboundPolicy
from service.domain.values import Security
from service.errors import RemoteError, ServerUnavailable, TlsFailure, UnsupportedByServer
from service.protocols import outbound, sasl
from service.protocols.deadline import Deadline
from service.protocols.network import network_error
from service.protocols.pop3.client import Pop3Client
from service.protocols.pop3.errors import refusal
from service.protocols.pop3.transfer import WINDOW, Pipeline, wire_limit
from service.protocols.tls import shared_client_context
from service.protocols.transcript import Transcript

CONNECT_TIMEOUT_SECONDS = 15.0
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
        self.client: Pop3Client | None = None
        self.welcome = ""
        self.tls_socket: ssl.SSLSocket | None = None
        self.stls_offered = False
        self._deadline = Deadline(deadline)
        self._pipelining: bool | None = None  # CAPA's PIPELINING, asked once after sign-in

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
            self.client = Pop3Client(
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
            return self.client.retr_bytes(number, limit=wire_limit(size))

    def retrieve_many(self, numbers: Sequence[int], sizes: Mapping[int, int]) -> Iterator[tuple[int, bytes]]:
        """RETR each message, pipelined when the server allows it: (number, bytes) in order.
        Each one's LIST size bounds what the server may send for it. Errors are those of
        `retrieve`; with commands still outstanding the connection is then closed, since its
        next bytes answer commands nobody will read (no QUIT, so no DELE is committed)."""
        if not numbers:
            return
        pipeline = self._pipeline()
        messages = pipeline.retrieve(numbers, [wire_limit(sizes.get(number)) for number in numbers])
        try:
            for number in numbers:
                with self.translated(f"retrieve message {number}"):
                    raw = next(messages)
                yield number, raw
            with self.translated("retrieve messages"):
                next(messages, None)  # nothing may follow the last response
        finally:
            if not pipeline.in_step:
                self.close()

    def mark_deleted_many(self, numbers: Sequence[int]) -> None:
        """DELE each message, pipelined when the server allows it: marks only, committed by QUIT
        (RFC 1939 section 6). A refusal closes the connection as in `retrieve_many`."""
        if not numbers:
            return
        pipeline = self._pipeline()
        try:
            with self.translated("mark for deletion"):
                for _ in pipeline.delete(numbers):
                    pass
        finally:
            if not pipeline.in_step:
                self.close()

    def _pipeline(self) -> Pipeline:
        """A pipeline as wide as the server allows: `WINDOW` commands when CAPA lists PIPELINING
        (RFC 2449 section 6.6), else one at a time. CAPA is asked once, after sign-in, when the
        list is final (RFC 2449 section 5); a server without CAPA gets one at a time."""
        if self.client is None:
            raise ServerUnavailable(f"{self.account.host}: the connection was already closed after an error.")
        if self._pipelining is None:
            with self.translated("read the capabilities"):
                self._pipelining = "PIPELINING" in self.capabilities()
            if self._pipelining:  # each next command is one small write: never held back by Nagle
                with suppress(OSError):
                    self.client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Pipeline(self.client, WINDOW if self._pipelining else 1)

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
            oauth, expired = self.account.oauth_token is not None, self._deadline.expired
            raise refusal(exc, host=host, step=step_name, oauth=oauth, expired=expired) from exc
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


@contextmanager
def open_session(account: Pop3Account, *, deadline: float | None = None) -> Iterator[Pop3Session]:
    session = Pop3Session(account, deadline=deadline)
    try:
        session.connect()
        session.login()
        yield session
    finally:
        session.close()
