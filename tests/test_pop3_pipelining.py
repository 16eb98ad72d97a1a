"""Pipelined RETR and DELE (RFC 2449 section 6.6): against Dovecot, which lists PIPELINING,
every message comes back once and byte for byte; against a scripted maildrop, a server without
PIPELINING gets one command at a time, and a -ERR, a cut connection or an oversized message in
the middle of a window raises the typed error without shifting any response onto another
message, deleting nothing (no QUIT) and keeping the batches committed before."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import poplib
import select
import socket
import time
from collections.abc import Iterable

import pytest

from service.config import Settings
from service.domain.outbound import OutboundPolicy
from service.domain.values import Protocol, Security
from service.errors import ServerUnavailable
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.protocols.pop3 import Pop3Account, Pop3Session, open_session
from service.protocols.pop3.transfer import Replies
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.faults import _Server
from tests.mail_samples import sample
from tests.retrieval_env import Env, make_env
from tests.stored_bodies import stored_raws
from tests.test_pop3_retr import MESSAGES, _stuffed, _Trickle

POP3 = Protocol.POP3
LOOPBACK = OutboundPolicy(networks=(ipaddress.ip_network("127.0.0.0/8"),))
CHUNK = 256 * 1024  # service.protocols.pop3.transfer reads this much at a time


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


async def stored(env: Env) -> list[bytes]:
    async with env.db.read() as session:
        return sorted(await stored_raws(session))


def batches_of(env: Env, messages: int) -> Settings:
    return env.settings.model_copy(update={"retrieval_batch_messages": messages})


def exact(size: int, subject: str) -> bytes:
    """A message of exactly `size` bytes, with lines that start with dots."""
    head = sample(subject, body="")
    line = b"..and a line that starts with dots\r\n"
    body = line * ((size - len(head)) // len(line))
    return head + body + b"x" * (size - len(head) - len(body) - 2) + b"\r\n"


def mailbox() -> list[bytes]:
    """40 messages (more than two windows): small, stuffed, empty-bodied, on a chunk's size."""
    messages = [sample(f"pipelined {n}", body=f"line {n}\r\n" * (1 + n * 50)) for n in range(34)]
    messages += [
        sample("dots", body=".first\r\n..two\r\n.\r\nmiddle\r\n...\r\nlast line .\r\n.\r\n"),
        sample("no body", body=""),
        exact(CHUNK, "one chunk"),
        exact(CHUNK - 3, "one chunk less the terminator"),
        exact(2 * CHUNK + 1, "two chunks and a byte"),
        sample("last", body="." * 5000 + "\r\n"),
    ]
    return messages


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 64, 4096, 1 << 20])
def test_responses_read_together_come_apart_at_their_terminators(step: int) -> None:
    """Pipelined answers arrive back to back; wherever the reads split them, each message is its
    own bytes, and a -ERR between them is that command's error only."""
    answers = [b"+OK %d octets\r\n" % len(m) + _stuffed(m) for m in MESSAGES]
    answers.insert(2, b"-ERR no such message\r\n")
    replies = Replies(io.BufferedReader(_Trickle(b"".join(answers), step), buffer_size=step), None)
    got = []
    for index in range(len(answers)):
        if index == 2:
            with pytest.raises(poplib.error_proto, match="no such message"):
                replies.status()
            continue
        replies.status()
        got.append(replies.message(index, None))
    assert got == MESSAGES
    replies.check_drained()


@pytest.mark.parametrize("leave_on_server", [True, False])
async def test_dovecot_retrieval_through_the_pipeline_stores_each_once(env: Env, leave_on_server: bool) -> None:
    messages = mailbox()
    for raw in messages:
        env.dovecot.deliver(env.mailbox.email, raw)
    task_id = await env.add_task(POP3, leave_on_server=leave_on_server)
    result = await env.run(task_id, batches_of(env, 7))  # six batches: DELEs go out between them
    assert (result.imported, result.errors) == (len(messages), [])
    assert await stored(env) == sorted(messages)
    assert env.dovecot.message_count(env.mailbox.email) == (len(messages) if leave_on_server else 0)
    again = await env.run(task_id)
    assert (again.imported, again.errors) == (0, [])
    assert await stored(env) == sorted(messages)


def dovecot_account(env: Env) -> Pop3Account:
    return Pop3Account(
        host=env.dovecot.host,
        port=env.dovecot.pop3_port,
        security=Security.NONE,
        username=env.mailbox.email,
        password=env.mailbox.password,
        timeout_seconds=10,
        policy=LOOPBACK,
    )


async def test_dovecot_offers_pipelining_and_answers_in_order(env: Env) -> None:
    messages = mailbox()
    for raw in messages:
        env.dovecot.deliver(env.mailbox.email, raw)
    with open_session(dovecot_account(env)) as session:
        assert "PIPELINING" in session.capabilities()
        sizes = session.listing().sizes
        numbers = sorted(sizes)
        assert list(session.retrieve_many(numbers, sizes)) == list(zip(numbers, messages, strict=True))
        session.mark_deleted_many(numbers[:20])
        assert session.message_count() == len(messages) - 20  # marked, not yet gone
        session.quit()
    assert env.dovecot.message_count(env.mailbox.email) == len(messages) - 20


class ScriptedPop3(_Server):
    """A maildrop that answers slowly (20 ms per command) and notes every command that arrived
    before the one before it was answered: a client that does not pipeline leaves `early` empty.
    Faults: -ERR to RETR or DELE of some numbers, the connection cut half-way through one RETR
    (once), LIST announcing fewer bytes than RETR sends. DELE marks; QUIT removes the marked."""

    def __init__(
        self,
        messages: list[bytes],
        *,
        capa: list[bytes] | None = None,
        refuse_retr: Iterable[int] = (),
        refuse_dele: Iterable[int] = (),
        cut_in_retr: int | None = None,
        announced: dict[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.messages = [(f"uid-{n}".encode(), raw) for n, raw in enumerate(messages)]
        self.capa = capa
        self.refuse_retr, self.refuse_dele = set(refuse_retr), set(refuse_dele)
        self.cut_in_retr = cut_in_retr
        self.announced = announced or {}
        self.received: list[bytes] = []
        self.early: list[bytes] = []
        self.quits = 0

    def __enter__(self) -> ScriptedPop3:
        super().__enter__()
        return self

    def handle(self, client: socket.socket) -> None:
        marked: set[int] = set()
        buffer = b""
        with client, contextlib.suppress(OSError):  # a client that gave up closes mid-window
            client.sendall(b"+OK scripted\r\n")
            while True:
                while b"\n" not in buffer:
                    data = client.recv(65536)
                    if not data:
                        return
                    buffer += data
                line, _, buffer = buffer.partition(b"\n")
                time.sleep(0.02)  # a pipelining client's next commands arrive meanwhile
                if select.select([client], [], [], 0)[0]:
                    buffer += client.recv(65536)
                if buffer:
                    self.early.append(line.strip())
                self.received.append(line.strip())
                command, _, argument = line.strip().partition(b" ")
                number = int(argument) if argument.isdigit() else 0
                if command.upper() == b"RETR" and number == self.cut_in_retr:
                    self.cut_in_retr = None
                    raw = self.messages[number - 1][1]
                    client.sendall(b"+OK\r\n" + raw[: len(raw) // 2])
                    client.shutdown(socket.SHUT_RDWR)
                    return
                client.sendall(self._answer(command.upper(), number, marked))
                if command.upper() == b"QUIT":
                    self.quits += 1
                    self.messages = [m for n, m in enumerate(self.messages, 1) if n not in marked]
                    return

    def _answer(self, command: bytes, number: int, marked: set[int]) -> bytes:
        live = [n for n in range(1, len(self.messages) + 1) if n not in marked]
        if command in (b"USER", b"PASS", b"NOOP", b"QUIT"):
            return b"+OK\r\n"
        if command == b"CAPA":
            return b"-ERR unknown command\r\n" if self.capa is None else b"\r\n".join([b"+OK", *self.capa, b".\r\n"])
        if command == b"LIST":
            sizes = [(n, self.announced.get(n, len(self.messages[n - 1][1]))) for n in live]
            return b"+OK\r\n" + b"".join(b"%d %d\r\n" % pair for pair in sizes) + b".\r\n"
        if command == b"UIDL":
            return b"+OK\r\n" + b"".join(b"%d %s\r\n" % (n, self.messages[n - 1][0]) for n in live) + b".\r\n"
        if command == b"RETR" and number in live and number not in self.refuse_retr:
            body = self.messages[number - 1][1].replace(b"\r\n.", b"\r\n..")
            return b"+OK\r\n" + (b"." if body.startswith(b".") else b"") + body + b".\r\n"
        if command == b"DELE" and number in live and number not in self.refuse_dele:
            marked.add(number)
            return b"+OK marked\r\n"
        return b"-ERR no such message\r\n"


PIPELINING = [b"USER", b"UIDL", b"PIPELINING"]


def scripted_account(server: ScriptedPop3) -> Pop3Account:
    return Pop3Account(
        host="127.0.0.1", port=server.port, security=Security.NONE, username="u", password="p", policy=LOOPBACK
    )


def twelve() -> list[bytes]:
    return [sample(f"scripted {n}", body=f".dotted {n}\r\n" * 40) for n in range(1, 13)]


@pytest.mark.parametrize("capa", [None, [b"USER", b"UIDL"]], ids=["no CAPA", "CAPA without PIPELINING"])
async def test_without_pipelining_one_command_at_a_time(env: Env, capa: list[bytes] | None) -> None:
    messages = twelve()
    with ScriptedPop3(messages, capa=capa) as server:
        task_id = await env.add_task(POP3, port=server.port, security=Security.NONE, leave_on_server=False)
        result = await env.run(task_id, batches_of(env, 5))
    assert (result.imported, result.errors) == (12, [])
    assert server.early == []
    assert server.messages == []  # every message DELEd and QUIT committed it
    assert await stored(env) == sorted(messages)


async def test_with_pipelining_commands_go_ahead_of_their_answers(env: Env) -> None:
    """The same check as above, with PIPELINING: it does see commands sent ahead."""
    messages = twelve()
    with ScriptedPop3(messages, capa=PIPELINING) as server:
        task_id = await env.add_task(POP3, port=server.port, security=Security.NONE, leave_on_server=False)
        result = await env.run(task_id, batches_of(env, 5))
    assert (result.imported, result.errors) == (12, [])
    assert any(line.startswith(b"RETR") for line in server.early)
    assert any(line.startswith(b"DELE") for line in server.early)
    assert server.messages == []
    assert await stored(env) == sorted(messages)


def test_an_err_in_the_middle_of_a_window_is_that_message_s_error() -> None:
    messages = twelve()
    with ScriptedPop3(messages, capa=PIPELINING, refuse_retr=[3]) as server:
        session = Pop3Session(scripted_account(server))
        session.connect()
        session.login()
        got: list[tuple[int, bytes]] = []
        with pytest.raises(ServerUnavailable, match="refused retrieve message 3: -ERR no such message"):
            got.extend(session.retrieve_many(range(1, 13), dict.fromkeys(range(1, 13), 2000)))
        assert session.client is None  # RETR 4 and on were outstanding: the connection is closed, no QUIT
        session.close()
    assert got == [(1, messages[0]), (2, messages[1])]
    assert b"RETR 3" in server.early  # RETR 4 was sent ahead: the error really was in the middle of a window
    assert server.quits == 0


def test_an_err_to_one_dele_in_a_window_is_an_error_and_nothing_is_deleted() -> None:
    with ScriptedPop3(twelve(), capa=PIPELINING, refuse_dele=[3]) as server:
        session = Pop3Session(scripted_account(server))
        session.connect()
        session.login()
        with pytest.raises(ServerUnavailable, match="refused mark for deletion"):
            session.mark_deleted_many(range(1, 7))
        assert session.client is None
        with pytest.raises(ServerUnavailable, match="already closed"):
            session.mark_deleted_many([7])
        session.close()
    assert b"DELE 3" in server.early
    assert (server.quits, len(server.messages)) == (0, 12)


async def test_a_refused_retr_mid_window_keeps_earlier_batches_and_deletes_nothing(env: Env) -> None:
    messages = twelve()
    with ScriptedPop3(messages, capa=PIPELINING, refuse_retr=[8]) as server:
        task_id = await env.add_task(POP3, port=server.port, security=Security.NONE, leave_on_server=False)
        result = await env.run(task_id, batches_of(env, 5))
        assert len(result.errors) == 1
        assert "refused retrieve message 8" in result.errors[0]
        assert b"RETR 8" in server.early
        assert await stored(env) == sorted(messages[:5])  # the first batch, committed; nothing of 9 as 8
        assert (server.quits, len(server.messages)) == (0, 12)  # its DELEs never committed: no QUIT
        server.refuse_retr.clear()
        finished = await env.run(task_id, batches_of(env, 5))
    assert (finished.imported, finished.errors) == (7, [])
    assert await stored(env) == sorted(messages)
    assert server.messages == []


async def test_a_connection_cut_mid_window_keeps_earlier_batches(env: Env) -> None:
    messages = twelve()
    with ScriptedPop3(messages, capa=PIPELINING, cut_in_retr=7) as server:
        task_id = await env.add_task(POP3, port=server.port, security=Security.NONE, leave_on_server=False)
        result = await env.run(task_id, batches_of(env, 5))
        assert len(result.errors) == 1
        assert "127.0.0.1" in result.errors[0]
        assert b"RETR 7" in server.early  # cut while RETR 8 was outstanding
        assert await stored(env) == sorted(messages[:5])
        assert (server.quits, len(server.messages)) == (0, 12)
        finished = await env.run(task_id, batches_of(env, 5))
    assert (finished.imported, finished.errors) == (7, [])
    assert await stored(env) == sorted(messages)
    assert server.messages == []


@pytest.mark.parametrize("capa", [None, PIPELINING], ids=["one at a time", "pipelined"])
async def test_a_message_longer_than_announced_is_cut_off(env: Env, capa: list[bytes] | None) -> None:
    messages = twelve()
    messages[1] = sample("huge", body="y" * 100 + "\r\n" * 700_000)  # 1.4 MB for an announced 500 bytes
    with ScriptedPop3(messages, capa=capa, announced={2: 500}) as server:
        task_id = await env.add_task(POP3, port=server.port, security=Security.NONE, leave_on_server=False)
        result = await env.run(task_id, batches_of(env, 5))
    assert len(result.errors) == 1
    assert "message 2 is longer than the server announced" in result.errors[0]
    assert await stored(env) == []
    assert (server.quits, len(server.messages)) == (0, 12)
