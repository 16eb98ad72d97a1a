"""Scripted SMTP servers for faults the recording aiosmtpd fixture does not produce, and helpers
the SMTP and sending tests share (DESIGN.md section 6: scripted fakes only for faults).

- `scripted_aiosmtpd`: a real aiosmtpd server (plain text, no AUTH) whose RCPT and
  DATA replies follow a script: 451 then 250, a 550, one recipient refused.
- `RawSmtpServer`: a hand-written server for what aiosmtpd will not do: announce
  no STARTTLS while recording every line a client sends, or drop the connection
  after the final "." without replying.

The tests at the bottom check that the fakes behave as scripted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from service.config import Settings
from service.domain.outbound import build_policy
from service.domain.smtp_accounts import SmtpAccountInput
from service.domain.values import Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import smtp_accounts, users
from tests.fixtures import free_ports
from tests.fixtures.smtp import SmtpServer

TIMEOUT = 10
LOOPBACK = build_policy("127.0.0.0/8", "")  # every test server listens on loopback


@dataclass
class ScriptedHandler:
    """RCPT replies per address and DATA replies in order (each used once, then 250); records accepted messages."""

    rcpt: dict[str, list[str]] = field(default_factory=dict)
    data: list[str] = field(default_factory=list)
    received: list[tuple[list[str], bytes]] = field(default_factory=list)
    attempts: list[list[str]] = field(default_factory=list)
    peers: list[object] = field(default_factory=list)  # the client's address per DATA: one per connection

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        script = self.rcpt.get(address.lower())
        reply = script.pop(0) if script else "250 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts.append(list(envelope.rcpt_tos))
        self.peers.append(session.peer)
        reply = self.data.pop(0) if self.data else "250 2.0.0 Message accepted"
        if reply.startswith("250"):
            self.received.append((list(envelope.rcpt_tos), envelope.original_content or b""))
        return reply


@dataclass
class ScriptedServer:
    handler: ScriptedHandler
    port: int
    host: str = "127.0.0.1"


@contextlib.contextmanager
def scripted_aiosmtpd(
    rcpt: Mapping[str, list[str]] | None = None, data: list[str] | None = None
) -> Iterator[ScriptedServer]:
    """A plain-text aiosmtpd server (no TLS, no AUTH) replying as scripted."""
    handler = ScriptedHandler(rcpt={k.lower(): list(v) for k, v in (rcpt or {}).items()}, data=list(data or []))
    for attempt in range(5):
        (port,) = free_ports(1)
        controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=5.0)
        try:
            controller.start()
        except OSError:
            controller.loop.close()
            if attempt == 4:
                raise
            continue
        try:
            yield ScriptedServer(handler, port)
        finally:
            controller.stop()
        return


class RawSmtpServer:
    """A minimal hand-scripted SMTP server in a thread. Records every line received.

    `extensions` are announced after EHLO (no STARTTLS unless listed). With
    `drop_after_data` the connection is closed after the final "." without a reply.
    `auth` scripts the reply to AUTH per mechanism (default 535); a "334" reply takes
    one more line and then answers 235.
    """

    def __init__(
        self,
        *,
        extensions: tuple[str, ...] = ("8BITMIME",),
        drop_after_data: bool = False,
        auth: Mapping[str, str] | None = None,
    ) -> None:
        self.extensions = extensions
        self.drop_after_data = drop_after_data
        self.auth = dict(auth or {})
        self.lines: list[str] = []
        self.messages: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.host = "127.0.0.1"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopping = threading.Event()

    def __enter__(self) -> RawSmtpServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with client, client.makefile("rb") as reader:
                client.settimeout(TIMEOUT)
                self._converse(client, reader)

    def _converse(self, client: socket.socket, reader: Any) -> None:
        client.sendall(b"220 fake.test ESMTP scripted\r\n")
        for raw in reader:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.lines.append(line)
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                announced = ["fake.test", *self.extensions]
                reply = "".join(f"250{'-' if i < len(announced) - 1 else ' '}{x}\r\n" for i, x in enumerate(announced))
                client.sendall(reply.encode())
            elif verb == "DATA":
                client.sendall(b"354 go ahead\r\n")
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = reader.readline()
                    if not chunk:
                        return
                    data += chunk
                self.messages.append(data)
                if self.drop_after_data:
                    return
                client.sendall(b"250 2.0.0 queued\r\n")
            elif verb == "QUIT":
                client.sendall(b"221 bye\r\n")
                return
            elif verb == "AUTH":
                mechanism = [*line.split(" "), ""][1].upper()
                reply = self.auth.get(mechanism, "535 5.7.8 Authentication credentials invalid")
                client.sendall(f"{reply}\r\n".encode())
                if reply.startswith("334"):
                    self.lines.append(reader.readline().decode("utf-8", "replace").rstrip("\r\n"))
                    client.sendall(b"235 2.7.0 Authentication successful\r\n")
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                client.sendall(b"250 OK\r\n")
            else:
                client.sendall(b"502 5.5.1 not implemented\r\n")


# -- helpers shared by the SMTP and sending tests ------------------------------------


def trusting(settings: Settings, server: SmtpServer) -> Settings:
    """Settings that trust the fixture server's self-signed certificate (as a company CA would be)."""
    return settings.model_copy(update={"extra_ca_file": server.cert_pem_path})


async def make_user(db: Database, email: str = "alice@example.test", display_name: str = "") -> int:
    return (await users.add_user(db=db, email=email, password="long enough", display_name=display_name)).id


def account_input(host: str, port: int | None, **overrides: Any) -> SmtpAccountInput:
    values: dict[str, Any] = {
        "email_address": "alice@example.test",
        "host": host,
        "port": port,
        "security": Security.NONE,
        "auth_required": False,
        "timeout_seconds": TIMEOUT,
    }
    values.update(overrides)
    return SmtpAccountInput(**values)


async def make_account(
    db: Database,
    secret_box: SecretBox,
    user_id: int,
    host: str,
    port: int,
    password: str | None = None,
    **overrides: Any,
) -> int:
    created = await smtp_accounts.add_smtp_account(
        db=db, secret_box=secret_box, user_id=user_id, account=account_input(host, port, **overrides), password=password
    )
    return created.id


# -- the fakes do what they say ----------------------------------------------------------


async def test_scripted_aiosmtpd_follows_its_script() -> None:
    with scripted_aiosmtpd(rcpt={"b@x.test": ["450 4.2.1 busy"]}, data=["451 4.3.0 later"]) as server:
        client = aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=TIMEOUT, start_tls=False)
        async with client:
            with pytest.raises(aiosmtplib.SMTPDataError, match="later"):
                await client.sendmail("a@x.test", ["a@x.test", "b@x.test"], b"Subject: x\r\n\r\nhi\r\n")
            errors, _ = await client.sendmail("a@x.test", ["a@x.test", "b@x.test"], b"Subject: x\r\n\r\nhi\r\n")
    assert errors == {}
    assert server.handler.attempts == [["a@x.test"], ["a@x.test", "b@x.test"]]


async def test_raw_server_records_lines_and_can_drop_after_data() -> None:
    with RawSmtpServer(drop_after_data=True) as server:
        client = aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=TIMEOUT, start_tls=False)
        await client.connect()
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await client.sendmail("a@x.test", ["b@x.test"], b"Subject: x\r\n\r\nhi\r\n")
        client.close()
    assert server.lines[0].startswith("EHLO")
    assert server.messages == [b"Subject: x\r\n\r\nhi\r\n.\r\n"]


def test_helpers_build_valid_input() -> None:
    assert account_input("127.0.0.1", 25).checked().port == 25
