"""POP3 retrieval against the real Dovecot fixture: APOP, TLS, leave on server or delete
only after a durable commit, and a run killed before QUIT."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from service.config import Settings
from service.domain.values import LogLevel, Protocol, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import PopUidl, RetrievalTask
from service.persistence.types import utcnow
from service.usecases import domains, retrieval_tasks
from service.usecases.retrieval.pop3_run import uidl_key
from tests.cli_runner import TRIBUTARY, cli_environment
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.faults import CuttingProxy, FakePop3Server, HoldingProxy
from tests.mail_samples import EIGHT_BIT, sample
from tests.retrieval_env import Env, make_env
from tests.stored_bodies import stored_raws

POP3 = Protocol.POP3


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


def fill(env: Env, count: int) -> list[bytes]:
    messages = [sample(f"pop #{n}") for n in range(count)]
    for raw in messages:
        env.dovecot.deliver(env.mailbox.email, raw)
    return messages


async def stored(env: Env) -> list[bytes]:
    async with env.db.read() as session:
        return sorted(await stored_raws(session))


@pytest.mark.parametrize(
    ("security", "port_name"),
    [(Security.SSL, "pop3s_port"), (Security.STARTTLS, "pop3_port"), (Security.NONE, "pop3_port")],
)
async def test_leave_on_server_imports_once_and_deletes_nothing(env: Env, security: Security, port_name: str) -> None:
    messages = fill(env, 3)
    task_id = await env.add_task(POP3, security=security, port=getattr(env.dovecot, port_name))
    first = await env.run(task_id)
    assert (first.imported, first.errors) == (3, [])
    assert await stored(env) == sorted(messages)
    assert (await env.local_counts()) == {"Inbox": 3}
    assert (await env.run(task_id)).imported == 0
    assert env.dovecot.message_count(env.mailbox.email) == 3
    env.dovecot.deliver(env.mailbox.email, sample("later"))
    assert (await env.run(task_id)).imported == 1


async def test_delete_mode_empties_the_server_inbox(env: Env) -> None:
    messages = fill(env, 5)
    task_id = await env.add_task(POP3, leave_on_server=False, destination_folder="From POP")
    result = await env.run(task_id)
    assert (result.imported, result.errors) == (5, [])
    assert env.dovecot.message_count(env.mailbox.email) == 0
    assert await stored(env) == sorted(messages)
    assert (await env.local_counts()) == {"From POP": 5}
    async with env.db.read() as session:
        assert (await session.exec(select(PopUidl))).all() == []  # pruned: nothing is on the server


async def test_apop_success_and_failure(env: Env) -> None:
    fill(env, 1)
    good = await env.add_task(POP3, use_apop=True)
    assert (await env.run(good)).imported == 1
    bad = await env.add_task(POP3, use_apop=True, password="wrong", destination_folder="Bad")
    result = await env.run(bad)
    assert len(result.errors) == 1
    assert "rejected the username or password" in result.errors[0]


async def test_apop_without_a_timestamp_in_the_greeting_is_explained(env: Env) -> None:
    with FakePop3Server(greeting=b"+OK no timestamp here") as fake:
        task_id = await env.add_task(POP3, port=fake.port, security=Security.NONE, use_apop=True)
        result = await env.run(task_id)
    assert len(result.errors) == 1
    assert "does not support APOP" in result.errors[0]
    assert not any(line.upper().startswith((b"APOP", b"PASS")) for line in fake.received)


async def test_a_run_killed_before_quit_duplicates_nothing_and_the_next_run_deletes(env: Env) -> None:
    messages = fill(env, 4)
    with HoldingProxy(env.dovecot.host, env.dovecot.pop3_port, hold=b"QUIT") as proxy:
        task_id = await env.add_task(POP3, port=proxy.port, security=Security.NONE, leave_on_server=False)
        process = await asyncio.create_subprocess_exec(  # the real CLI, so SIGKILL hits a real process
            *(TRIBUTARY, "retrieval", "run", str(task_id), "--json"),
            env=cli_environment(env.settings),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert await asyncio.to_thread(proxy.held.wait, 60), "the run never reached QUIT"
            os.kill(process.pid, signal.SIGKILL)
        finally:
            _, stderr = await process.communicate()
        assert process.returncode == -signal.SIGKILL, stderr
    # Committed locally, marked DELE remotely, but QUIT never arrived: the server keeps them all.
    assert await stored(env) == sorted(messages)
    assert env.dovecot.message_count(env.mailbox.email) == 4

    await _point_at(env, task_id, env.dovecot.pop3_port)  # the proxy is gone: straight to Dovecot
    finished = await env.run(task_id)  # at once: the killed run's lease names a process that is gone
    assert (finished.already_running, finished.imported, finished.errors) == (False, 0, [])
    assert env.dovecot.message_count(env.mailbox.email) == 0
    assert await stored(env) == sorted(messages)


async def test_connection_cut_in_the_middle_of_retr_stores_no_partial_message(env: Env) -> None:
    big = sample("big", body="line of text\r\n" * 20_000)
    env.dovecot.deliver(env.mailbox.email, big)
    with CuttingProxy(env.dovecot.host, env.dovecot.pop3_port, cut_after_bytes=100_000) as proxy:
        task_id = await env.add_task(POP3, port=proxy.port, security=Security.NONE, leave_on_server=False)
        cut = await env.run(task_id)
        assert cut.errors
        assert proxy.cuts == 1
        assert await stored(env) == []
        assert env.dovecot.message_count(env.mailbox.email) == 1
        finished = await env.run(task_id)
    assert (finished.imported, finished.errors) == (1, [])
    assert await stored(env) == [big]
    assert env.dovecot.message_count(env.mailbox.email) == 0


async def test_long_lines_and_8bit_come_through_unchanged(env: Env) -> None:
    long_line = sample("long line", body="x" * 10_000 + "\r\n")
    for raw in (long_line, EIGHT_BIT):
        env.dovecot.deliver(env.mailbox.email, raw)
    task_id = await env.add_task(POP3)
    result = await env.run(task_id)
    assert (result.imported, result.errors) == (2, [])
    assert await stored(env) == sorted([long_line, EIGHT_BIT])


async def test_lines_starting_with_dots_come_through_unchanged(env: Env) -> None:
    """RETR byte-stuffs lines that begin with "." (RFC 1939 section 3) and ends with CRLF.CRLF:
    stuffing is undone, and a lone "." inside the body is not the end."""
    dotted = sample("dots", body=".first\r\n..two\r\n.\r\nmiddle\r\n...\r\nlast line .\r\n.\r\n")
    env.dovecot.deliver(env.mailbox.email, dotted)
    task_id = await env.add_task(POP3)
    result = await env.run(task_id)
    assert (result.imported, result.errors) == (1, [])
    assert await stored(env) == [dotted]


async def test_delete_after_n_days(env: Env) -> None:
    fill(env, 2)
    task_id = await env.add_task(POP3, leave_on_server=True, delete_after_days=3)
    assert (await env.run(task_id)).imported == 2
    assert (await env.run(task_id)).imported == 0
    assert env.dovecot.message_count(env.mailbox.email) == 2  # not old enough yet
    async with env.db.write() as session:
        await session.exec(update(PopUidl).values(retrieved_at=utcnow() - timedelta(days=4)))
    env.dovecot.deliver(env.mailbox.email, sample("fresh"))
    result = await env.run(task_id)
    assert (result.imported, result.errors) == (1, [])
    assert env.dovecot.message_count(env.mailbox.email) == 1  # only the fresh one stays
    async with env.db.read() as session:
        keys = (await session.exec(select(PopUidl.uidl))).all()
    assert len(keys) == 1  # the deleted ones were forgotten


async def test_message_over_the_limit_is_skipped_with_a_warning_and_never_deleted(env: Env) -> None:
    await domains.set_domain(db=env.db, name="example.test", max_message_bytes=4096)
    env.dovecot.deliver(env.mailbox.email, sample("huge", body="y" * 10_000))
    env.dovecot.deliver(env.mailbox.email, sample("small"))
    task_id = await env.add_task(POP3, leave_on_server=False)
    result = await env.run(task_id)
    assert (result.imported, result.skipped, result.errors) == (1, 1, [])
    assert env.dovecot.message_count(env.mailbox.email) == 1
    assert any("larger than the 4,096 bytes" in text for text in await env.logs(LogLevel.WARNING))


async def test_test_connection_reports_the_pop3_steps(env: Env) -> None:
    task_id = await env.add_task(POP3, security=Security.STARTTLS, port=env.dovecot.pop3_port, use_apop=True)
    report = await retrieval_tasks.test_task(
        db=env.db, secret_box=env.secret_box, settings=env.settings, task_id=task_id, user_id=env.user_id
    )
    assert report.ok, report.steps
    names = [s.name for s in report.steps]
    assert names == ["resolve", "connect", "greeting", "tls", "capabilities", "login", "messages"]
    details = {s.name: s.detail for s in report.steps}
    assert "APOP timestamp present" in details["greeting"]
    assert "STLS offered" in details["capabilities"]
    assert "with APOP" in details["login"]


def test_odd_uidls_get_safe_keys() -> None:
    assert uidl_key(b"00000001abcdef") == "00000001abcdef"
    for odd in (b"x" * 71, b"with space", b"\x00\xff", b""):
        key = uidl_key(odd)
        assert key.startswith("x:")
        assert len(key) == 66
    assert uidl_key(b"\x00\xff") != uidl_key(b"\xff\x00")


async def _point_at(env: Env, task_id: int, port: int) -> None:
    async with env.db.write() as session:
        await session.exec(update(RetrievalTask).where(col(RetrievalTask.id) == task_id).values(port=port))


async def test_without_uidl_leave_on_server_is_refused_clearly(env: Env) -> None:
    with FakePop3Server(messages=[sample("a")], uidls=None) as fake:
        task_id = await env.add_task(POP3, port=fake.port, security=Security.NONE, leave_on_server=True)
        result = await env.run(task_id)
    assert result.imported == 0
    assert len(result.errors) == 1
    assert "does not support UIDL" in result.errors[0]
    assert len(fake.messages) == 1  # nothing deleted


async def test_without_uidl_messages_are_retrieved_and_deleted_exactly_once(env: Env) -> None:
    messages = [sample(f"no uidl {n}") for n in range(3)]
    with FakePop3Server(messages=messages, uidls=None) as fake:
        task_id = await env.add_task(POP3, port=fake.port, security=Security.NONE, leave_on_server=False)
        result = await env.run(task_id)
        assert (result.imported, result.errors) == (3, [])
        assert fake.messages == []
        assert (await env.run(task_id)).imported == 0
    assert await stored(env) == sorted(messages)


async def test_duplicate_and_odd_uidls_import_once_and_delete_nothing_ambiguous(env: Env) -> None:
    messages = [sample(f"odd {n}") for n in range(4)]
    uidls = [b"same", b"same", b"\x01\x02bin", b"y" * 90]
    with FakePop3Server(messages=messages, uidls=uidls) as fake:
        task_id = await env.add_task(POP3, port=fake.port, security=Security.NONE, leave_on_server=False)
        result = await env.run(task_id)
        assert (result.imported, result.errors) == (4, [])
        assert fake.messages == messages[:2]  # the two copies of "same" are ambiguous: never deleted
        assert (await env.run(task_id)).imported == 0
    assert await stored(env) == sorted(messages)
