"""The IMAP push connection (service/protocols/imap/push): against Dovecot for what a real server
does (security modes, sign-in, IDLE and NOTIFY news, renewal), against a scripted server for what
it will not do on demand (no IDLE, odd folder names, EXISTS that does not grow, BYE, a cut)."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import ipaddress
import socket
from collections.abc import AsyncIterator

import pytest
from imapclient import imap_utf7

from service.domain.outbound import STRICT, OutboundPolicy
from service.domain.values import Security
from service.errors import (
    ConnectionNotAllowed,
    CredentialsRejected,
    ServerUnavailable,
    TlsFailure,
    TokenRejected,
    UnsupportedByServer,
)
from service.protocols import outbound
from service.protocols.imap import ImapAccount
from service.protocols.imap.push import PushConnection, PushNews
from service.protocols.tls import CertificateNotVerified, shared_client_context
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.dovecot_oauth import OAuthDovecot
from tests.fixtures.faults import FakeImapServer, TricklingServer
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.scripted_push import ScriptedPushServer

LOOPBACK = OutboundPolicy(networks=(ipaddress.ip_network("127.0.0.0/8"),))
SOON = 15.0  # generous: Dovecot announces an APPEND within a second
MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: push\r\n\r\nHello.\r\n"


def account(server: DovecotServer, user: MailUser, security: Security = Security.SSL, **changes: object) -> ImapAccount:
    values: dict[str, object] = {
        "host": server.host,
        "port": server.imaps_port if security is Security.SSL else server.imap_port,
        "security": security,
        "username": user.email,
        "password": user.password,
        "timeout_seconds": 10.0,
        "extra_ca_file": server.cert_pem_path,
        "policy": LOOPBACK,
    }
    values.update(changes)
    return ImapAccount(**values)  # type: ignore[arg-type]


def scripted(port: int, security: Security = Security.NONE, **changes: object) -> ImapAccount:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "username": "user",
        "password": "secret",
        "timeout_seconds": 5.0,
        "policy": LOOPBACK,
    }
    values.update(changes)
    return ImapAccount(**values)  # type: ignore[arg-type]


async def append(server: DovecotServer, user: MailUser, folder: str = "INBOX") -> None:
    """APPEND a message as another client would (imaplib, in a thread)."""

    def run() -> None:
        client = imaplib.IMAP4(server.host, server.imap_port)
        try:
            client.login(user.email, user.password)
            mailbox = '"' + imap_utf7.encode(folder).decode("ascii") + '"'
            typ, data = client.append(mailbox, "", None, MESSAGE)
            assert typ == "OK", data
        finally:
            client.logout()

    await asyncio.to_thread(run)


@pytest.fixture
async def connections() -> AsyncIterator[list[PushConnection]]:
    """PushConnections the test opens; each is closed at the end (twice: that must be harmless)."""
    opened: list[PushConnection] = []
    yield opened
    for connection in opened:
        await connection.close()
        await connection.close()


async def opened(connections: list[PushConnection], acc: ImapAccount, renew_seconds: float = 25 * 60) -> PushConnection:
    connection = PushConnection(acc, renew_seconds=renew_seconds)
    connections.append(connection)
    await connection.open()
    return connection


# -- against Dovecot ---------------------------------------------------------------------------------


@pytest.mark.parametrize("security", [Security.NONE, Security.STARTTLS, Security.SSL])
async def test_an_append_to_inbox_is_announced_over_every_security(
    dovecot: DovecotServer, mail_user: MailUser, connections: list[PushConnection], security: Security
) -> None:
    connection = await opened(connections, account(dovecot, mail_user, security))
    assert connection.mode == "notify"  # Dovecot with the mailbox list index offers NOTIFY
    await append(dovecot, mail_user)
    assert await asyncio.wait_for(connection.wait(), SOON) == PushNews(frozenset({"INBOX"}))
    await append(dovecot, mail_user)
    assert await asyncio.wait_for(connection.wait(), SOON) == PushNews(frozenset({"INBOX"}))


async def test_notify_announces_an_append_to_another_folder_by_its_decoded_name(
    dovecot: DovecotServer, mail_user: MailUser, connections: list[PushConnection]
) -> None:
    dovecot.create_folder(mail_user.email, "Archiv/Entwürfe")
    connection = await opened(connections, account(dovecot, mail_user))
    await append(dovecot, mail_user, "Archiv/Entwürfe")
    assert await asyncio.wait_for(connection.wait(), SOON) == PushNews(frozenset({"Archiv/Entwürfe"}))


@pytest.mark.parametrize("password", ['with "quotes" and \\ backslash', "nön-ascii pässword ✓"])
async def test_passwords_are_quoted_or_sent_as_literals(
    dovecot: DovecotServer, connections: list[PushConnection], password: str
) -> None:
    user = dovecot.add_user(f"p{abs(hash(password)) % 10**8}@example.test", password)
    connection = await opened(connections, account(dovecot, user, Security.STARTTLS))
    assert connection.mode == "notify"


async def test_a_wrong_password_is_credentials_rejected(dovecot: DovecotServer, mail_user: MailUser) -> None:
    connection = PushConnection(account(dovecot, mail_user, password="wrong-password-x"))
    with pytest.raises(CredentialsRejected, match="rejected the username or password") as refused:
        await connection.open()
    assert "wrong-password-x" not in refused.value.message
    await connection.close()  # after a failed open: harmless


async def test_renewal_keeps_the_connection_listening(
    dovecot: DovecotServer, mail_user: MailUser, connections: list[PushConnection]
) -> None:
    connection = await opened(connections, account(dovecot, mail_user), renew_seconds=0.2)
    # No news for a while: wait() renews IDLE several times; cancelling it mid-way loses nothing.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(connection.wait(), 1.5)
    await append(dovecot, mail_user)
    assert await asyncio.wait_for(connection.wait(), SOON) == PushNews(frozenset({"INBOX"}))


async def test_an_unverified_certificate_is_refused_unless_verification_is_off(
    dovecot: DovecotServer, mail_user: MailUser, connections: list[PushConnection]
) -> None:
    for security in (Security.SSL, Security.STARTTLS):
        with pytest.raises(CertificateNotVerified, match="could not be verified"):
            await PushConnection(account(dovecot, mail_user, security, extra_ca_file=None)).open()
    connection = await opened(connections, account(dovecot, mail_user, extra_ca_file=None, verify_certificate=False))
    assert connection.mode == "notify"


async def test_ssl_to_a_plain_port_is_a_tls_failure(dovecot: DovecotServer, mail_user: MailUser) -> None:
    with pytest.raises(TlsFailure, match="did not answer with TLS"):
        await PushConnection(account(dovecot, mail_user, Security.SSL, port=dovecot.imap_port)).open()


async def test_one_tls_context_is_shared_by_every_connection(
    dovecot: DovecotServer, mail_user: MailUser, connections: list[PushConnection]
) -> None:
    first = await opened(connections, account(dovecot, mail_user))
    second = await opened(connections, account(dovecot, mail_user, Security.STARTTLS))
    contexts = [c._wire.tls_object.context for c in (first, second) if c._wire and c._wire.tls_object]
    assert len(contexts) == 2
    assert contexts[0] is contexts[1] is shared_client_context(True, dovecot.cert_pem_path)
    assert shared_client_context(False, None) is shared_client_context(False, None)
    assert shared_client_context(False, None) is not contexts[0]


async def test_oauthbearer_sign_in_and_a_revoked_token(
    dovecot_oauth: OAuthDovecot,
    oauth_server: OAuthServer,
    oauth_mail_user: MailUser,
    connections: list[PushConnection],
) -> None:
    token = oauth_server.issue_tokens(oauth_mail_user.email).access_token
    acc = account(dovecot_oauth, oauth_mail_user, password="", oauth_token=token)
    connection = await opened(connections, acc)
    assert connection.mode == "notify"
    oauth_server.revoke_user(oauth_mail_user.email)
    with pytest.raises(TokenRejected, match="Reconnect the account") as refused:
        await PushConnection(acc).open()
    assert token[:24] not in refused.value.message


# -- against a scripted server -------------------------------------------------------------------------


async def test_a_server_without_idle_is_unsupported() -> None:
    with ScriptedPushServer(capabilities="IMAP4rev1") as server, pytest.raises(UnsupportedByServer) as refused:
        await PushConnection(scripted(server.port)).open()
    assert refused.value.message == (
        "127.0.0.1 does not announce new mail (no IMAP IDLE); Tributary checks it at the interval instead."
    )


async def test_starttls_not_offered_is_a_tls_failure_before_any_password() -> None:
    with (
        FakeImapServer(capabilities="IMAP4rev1 IDLE") as server,
        pytest.raises(TlsFailure, match="does not offer STARTTLS"),
    ):
        await PushConnection(scripted(server.port, Security.STARTTLS)).open()
    assert not any(b"LOGIN" in line.upper() or b"secret" in line for line in server.received)


async def test_idle_mode_without_notify(connections: list[PushConnection]) -> None:
    with ScriptedPushServer(capabilities="IMAP4rev1 IDLE", exists=5) as server:
        connection = await opened(connections, scripted(server.port))
        assert connection.mode == "idle"
        commands = [line.split()[1] for line in server.received]
        assert commands == [b"LOGIN", b"CAPABILITY", b"EXAMINE", b"IDLE"]
        server.send(b"* 6 EXISTS\r\n")
        assert await asyncio.wait_for(connection.wait(), SOON) == PushNews(frozenset({"INBOX"}))


async def test_exists_that_does_not_grow_is_no_news(connections: list[PushConnection]) -> None:
    with ScriptedPushServer(capabilities="IMAP4rev1 IDLE NOTIFY", exists=5) as server:
        connection = await opened(connections, scripted(server.port))
        server.send(b"* 5 EXISTS\r\n* 2 EXPUNGE\r\n* 4 EXISTS\r\n* 3 RECENT\r\n")  # no growth
        server.send(b"* STATUS Marker (MESSAGES 1)\r\n")
        assert await asyncio.wait_for(connection.wait(), SOON) == PushNews(frozenset({"Marker"}))
        server.send(b"* 5 EXISTS\r\n")  # one more than after the expunge
        assert await asyncio.wait_for(connection.wait(), SOON) == PushNews(frozenset({"INBOX"}))


async def test_status_names_quoted_literal_and_modified_utf7(connections: list[PushConnection]) -> None:
    with ScriptedPushServer(capabilities="IMAP4rev1 IDLE NOTIFY", exists=1) as server:
        connection = await opened(connections, scripted(server.port))
        assert connection.mode == "notify"
        assert any(line.upper().startswith(b"P") and b" NOTIFY SET " in line for line in server.received)
        server.send(
            b'* STATUS "Sent \\"Items\\"" (MESSAGES 3 UIDNEXT 4)\r\n'
            b"* STATUS {11}\r\nDraft (Old) (MESSAGES 1 UIDNEXT 2)\r\n"
            b'* STATUS "Entw&APw-rfe/2024" (UIDNEXT 9 MESSAGES 2)\r\n'
            b"* STATUS Lists (MESSAGES 7)\r\n"
        )
        seen: set[str] = set()
        for _ in range(4):  # usually one wait(): what arrives together is merged
            seen |= (await asyncio.wait_for(connection.wait(), SOON)).folders
            if len(seen) == 4:
                break
        assert seen == {'Sent "Items"', "Draft (Old)", "Entwürfe/2024", "Lists"}


async def test_only_growth_in_status_is_news(connections: list[PushConnection]) -> None:
    with ScriptedPushServer(capabilities="IMAP4rev1 IDLE NOTIFY", exists=1) as server:
        connection = await opened(connections, scripted(server.port))
        server.send(b"* STATUS Lists (MESSAGES 7 UIDNEXT 10)\r\n")
        assert await asyncio.wait_for(connection.wait(), SOON) == PushNews(frozenset({"Lists"}))
        # An expunge (fewer messages, same UIDNEXT) is no news; Marker's news then comes alone.
        server.send(b"* STATUS Lists (MESSAGES 6 UIDNEXT 10)\r\n* STATUS Lists (MESSAGES 6)\r\n")
        server.send(b"* STATUS Marker (MESSAGES 1)\r\n")
        assert await asyncio.wait_for(connection.wait(), SOON) == PushNews(frozenset({"Marker"}))
        # One message in, one out: MESSAGES stays, UIDNEXT grows.
        server.send(b"* STATUS Lists (MESSAGES 6 UIDNEXT 11)\r\n")
        assert await asyncio.wait_for(connection.wait(), SOON) == PushNews(frozenset({"Lists"}))


async def test_news_between_waits_is_kept_and_merged(connections: list[PushConnection]) -> None:
    with ScriptedPushServer(capabilities="IMAP4rev1 IDLE NOTIFY", exists=1) as server:
        connection = await opened(connections, scripted(server.port))
        server.send(b"* STATUS A (MESSAGES 1)\r\n* 2 EXISTS\r\n* STATUS B (MESSAGES 1)\r\n")
        await asyncio.sleep(0.5)  # the news arrives while nobody waits
        seen: set[str] = set()
        for _ in range(3):
            seen |= (await asyncio.wait_for(connection.wait(), SOON)).folders
            if seen == {"A", "B", "INBOX"}:
                break
        assert seen == {"A", "B", "INBOX"}


async def test_bye_while_idling_is_server_unavailable(connections: list[PushConnection]) -> None:
    with ScriptedPushServer() as server:
        connection = await opened(connections, scripted(server.port))
        server.send(b"* BYE Server shutting down\r\n")
        with pytest.raises(ServerUnavailable, match=r"closed the connection \(Server shutting down\)"):
            await asyncio.wait_for(connection.wait(), SOON)
        with pytest.raises(ServerUnavailable):
            await connection.wait()  # and it stays unusable


async def test_a_cut_connection_is_server_unavailable(connections: list[PushConnection]) -> None:
    with ScriptedPushServer() as server:
        connection = await opened(connections, scripted(server.port, Security.NONE))
        server.cut()
        with pytest.raises(ServerUnavailable, match="closed the connection"):  # wording: service.protocols.network
            await asyncio.wait_for(connection.wait(), SOON)


async def test_renewal_every_renew_seconds_and_a_silent_server(connections: list[PushConnection]) -> None:
    with ScriptedPushServer() as server:
        connection = await opened(connections, scripted(server.port), renew_seconds=0.1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(connection.wait(), 1.0)
        assert server.idles >= 3
        assert sum(line == b"DONE\r\n" for line in server.received) == server.idles - 1
    with ScriptedPushServer(answer_done=False) as server:  # DONE unanswered: the server is gone
        connection = await opened(connections, scripted(server.port, timeout_seconds=0.5), renew_seconds=0.2)
        with pytest.raises(ServerUnavailable, match="stopped answering"):
            await asyncio.wait_for(connection.wait(), SOON)


async def test_a_server_refusing_passwords_in_clear_is_never_sent_one() -> None:
    refused = pytest.raises(TlsFailure, match="does not accept a password without TLS")
    with ScriptedPushServer(capabilities="IMAP4rev1 IDLE LOGINDISABLED") as server, refused:
        await PushConnection(scripted(server.port)).open()
    assert not any(b"LOGIN" in line.upper() for line in server.received)


async def test_the_outbound_policy_and_given_targets(
    dovecot: DovecotServer, mail_user: MailUser, connections: list[PushConnection]
) -> None:
    strict = account(dovecot, mail_user, policy=STRICT)
    with pytest.raises(ConnectionNotAllowed):
        await PushConnection(strict).open()
    # Targets the caller resolved and checked already are used as they are.
    targets = await outbound.resolve_async(dovecot.host, dovecot.imaps_port, LOOPBACK)
    connection = PushConnection(strict, targets=targets)
    connections.append(connection)
    await connection.open()
    assert connection.mode == "notify"


async def test_a_port_that_is_not_imap(dovecot: DovecotServer, mail_user: MailUser) -> None:
    not_imap = account(dovecot, mail_user, Security.NONE, port=dovecot.pop3_port)
    with pytest.raises(ServerUnavailable, match="did not greet like an IMAP server"):
        await PushConnection(not_imap).open()


async def test_a_tarpit_times_out() -> None:
    with TricklingServer(interval=0.2) as server, pytest.raises(ServerUnavailable, match="did not answer on port"):
        await asyncio.wait_for(PushConnection(scripted(server.port, timeout_seconds=0.5)).open(), SOON)


async def test_a_bye_greeting_says_why() -> None:
    refused = pytest.raises(ServerUnavailable, match=r"closed the connection \(Too many connections\)")
    with ScriptedPushServer(greeting="* BYE Too many connections") as server, refused:
        await PushConnection(scripted(server.port)).open()


class FloodingServer(ScriptedPushServer):
    """Sends `flood()`; the client hangs up with most of it unread (a reset here is expected)."""

    def __enter__(self) -> FloodingServer:
        super().__enter__()
        return self

    def handle(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            super().handle(client)

    def flood(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.send(data)


async def test_many_literals_in_one_response_are_refused_not_held(connections: list[PushConnection]) -> None:
    with FloodingServer() as server:
        connection = await opened(connections, scripted(server.port))
        chunk = b"X" * 8192
        flood = b"* 1 FETCH (X {8192}\r\n" + (chunk + b" Y {8192}\r\n") * 40  # 320 KiB, never ending
        sending = asyncio.create_task(asyncio.to_thread(server.flood, flood))
        with pytest.raises(ServerUnavailable, match="malformed response"):
            await asyncio.wait_for(connection.wait(), SOON)
        await connection.close()
        await sending


class QuickIdleServer(ScriptedPushServer):
    """Ends every IDLE at once, right after its "+" (a broken server or proxy)."""

    def handle(self, client: socket.socket) -> None:
        with self._lock:
            self._client = client
        with client, client.makefile("rb") as lines:
            self._write(self.greeting + "\r\n")
            for line in lines:
                tag, _, rest = line.decode().rstrip("\r\n").partition(" ")
                command = rest.split(" ", 1)[0].upper()
                if command == "IDLE":
                    self.idles += 1
                    self._write(f"+ idling\r\n{tag} OK IDLE terminated\r\n")
                elif command == "LOGOUT":
                    self._write(f"{tag} OK bye\r\n")
                    return
                elif command != "DONE":
                    self._write(self._answer(tag, command))


async def test_a_server_ending_idle_at_once_is_idled_with_less_and_less_often(
    connections: list[PushConnection],
) -> None:
    with QuickIdleServer(exists=1) as server:
        connection = await opened(connections, scripted(server.port))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(connection.wait(), 3.0)
        assert 2 <= server.idles <= 5  # paused 1 s, then 2 s: not a busy loop of IDLE commands


async def test_a_folder_name_that_is_not_modified_utf7_is_kept_as_sent(connections: list[PushConnection]) -> None:
    with ScriptedPushServer(capabilities="IMAP4rev1 IDLE NOTIFY", exists=1) as server:
        connection = await opened(connections, scripted(server.port))
        server.send(b"* STATUS &Zm9v- (MESSAGES 3 UIDNEXT 4)\r\n")  # invalid: partial shift sequence
        assert await asyncio.wait_for(connection.wait(), SOON) == PushNews(frozenset({"&Zm9v-"}))
        server.send(b"* 2 EXISTS\r\n")  # and the connection still listens
        assert await asyncio.wait_for(connection.wait(), SOON) == PushNews(frozenset({"INBOX"}))


async def test_push_sockets_send_tcp_keepalives(connections: list[PushConnection]) -> None:
    with ScriptedPushServer() as server:
        connection = await opened(connections, scripted(server.port))
        assert connection._wire is not None
        sock = connection._wire._socket()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 120
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
