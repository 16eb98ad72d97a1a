"""Spam filtering of retrieved mail against the real Dovecot and a real spamd: upstream spam
headers and spamd's verdict send mail to Junk, only for mail arriving in the Inbox of a task
with "Apply spam and content filtering" on; a spamd that is down or slow never loses or holds
mail; the spamd client on its own."""

from __future__ import annotations

import time

import pytest
from sqlmodel import col, select

from service.config import Settings
from service.domain.values import FolderTransfer, LogLevel, Protocol
from service.errors import ServerUnavailable
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Folder, Message
from service.protocols.spamd import SpamdAddress, SpamdClient
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.faults import TricklingServer
from tests.fixtures.spamd import GTUBE, SpamdServer, closed_port
from tests.mail_samples import sample
from tests.retrieval_env import Env, make_env

POP3 = Protocol.POP3
FLAGGED_UPSTREAM = b"X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=12.0 required=5.0\r\n" + sample("Cheap pills")


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


def with_spamd(env: Env, address: str, timeout: float = 5) -> Settings:
    return env.settings.model_copy(update={"spamd_address": address, "spamd_timeout_seconds": timeout})


def deliver_mix(env: Env, folder: str = "INBOX") -> None:
    """An ordinary message, one upstream filters marked, and GTUBE (which spamd calls spam)."""
    for raw in (sample("Lunch tomorrow?"), FLAGGED_UPSTREAM, sample("Win big", body=GTUBE + "\r\n")):
        env.dovecot.deliver(env.mailbox.email, raw, folder=folder)


async def subjects_by_folder(env: Env) -> dict[str, list[str]]:
    async with env.db.read() as session:
        rows = (
            await session.exec(
                select(Folder.path, Message.subject)
                .join(Message, col(Message.folder_id) == Folder.id)
                .order_by(col(Message.subject))
            )
        ).all()
    found: dict[str, list[str]] = {}
    for path, subject in rows:
        found.setdefault(path, []).append(subject)
    return found


async def test_spamd_client_against_the_real_spamd(spamd: SpamdServer) -> None:
    client = SpamdClient(SpamdAddress.parse(spamd.address), timeout=10)
    await client.ping()
    spam = await client.check(sample("Win big", body=GTUBE + "\r\n"))
    assert spam.is_spam
    assert spam.score >= spam.threshold == 5.0
    ham = await client.check(sample("Lunch tomorrow?"))
    assert not ham.is_spam
    assert ham.score < ham.threshold


async def test_spamd_client_failures_are_server_unavailable() -> None:
    down = SpamdClient(SpamdAddress("127.0.0.1", closed_port()), timeout=2)
    with pytest.raises(ServerUnavailable, match="could not be reached"):
        await down.check(sample("x"))
    with (
        TricklingServer(line=b"SPAMD/1.1 0 EX_OK\r\n", interval=0.3) as slow,
        pytest.raises(ServerUnavailable, match=r"did not answer within 0\.5 s"),
    ):
        await SpamdClient(SpamdAddress("127.0.0.1", slow.port), timeout=0.5).check(sample("x"))
    assert SpamdAddress.parse("[::1]:7830") == SpamdAddress("::1", 7830)
    assert SpamdAddress.parse("spam.example.test").port == 783


async def test_pop3_spam_goes_to_junk_by_headers_and_by_spamd(env: Env, spamd: SpamdServer) -> None:
    deliver_mix(env)
    task_id = await env.add_task(POP3, apply_filters=True)
    result = await env.run(task_id, with_spamd(env, spamd.address))
    assert (result.imported, result.errors) == (3, [])
    assert await subjects_by_folder(env) == {"Inbox": ["Lunch tomorrow?"], "Junk": ["Cheap pills", "Win big"]}
    assert "Filtering: 2 to Junk as spam." in await env.logs(LogLevel.INFO)
    assert await env.logs(LogLevel.WARNING) == []


async def test_without_spamd_only_the_upstream_headers_count(env: Env) -> None:
    deliver_mix(env)
    task_id = await env.add_task(POP3, apply_filters=True)
    assert (await env.run(task_id)).imported == 3
    assert await subjects_by_folder(env) == {"Inbox": ["Lunch tomorrow?", "Win big"], "Junk": ["Cheap pills"]}


async def test_with_filtering_off_everything_stays_in_the_inbox(env: Env, spamd: SpamdServer) -> None:
    deliver_mix(env)
    task_id = await env.add_task(POP3, apply_filters=False)
    assert (await env.run(task_id, with_spamd(env, spamd.address))).imported == 3
    assert await subjects_by_folder(env) == {"Inbox": ["Cheap pills", "Lunch tomorrow?", "Win big"]}


async def test_pop3_into_another_folder_is_not_filtered(env: Env, spamd: SpamdServer) -> None:
    deliver_mix(env)
    task_id = await env.add_task(POP3, apply_filters=True, destination_folder="Old account")
    assert (await env.run(task_id, with_spamd(env, spamd.address))).imported == 3
    assert list(await subjects_by_folder(env)) == ["Old account"]


async def test_imap_filters_only_the_remote_inbox_under_root_transfer(env: Env, spamd: SpamdServer) -> None:
    deliver_mix(env)
    env.dovecot.deliver(env.mailbox.email, FLAGGED_UPSTREAM, folder="Lists")
    task_id = await env.add_task(folder_transfer=FolderTransfer.ROOT, apply_filters=True)
    result = await env.run(task_id, with_spamd(env, spamd.address))
    assert (result.imported, result.errors) == (4, [])
    assert await subjects_by_folder(env) == {
        "Inbox": ["Lunch tomorrow?"],
        "Junk": ["Cheap pills", "Win big"],
        "Lists": ["Cheap pills"],  # not arriving in the Inbox: left alone
    }
    assert (await env.run(task_id, with_spamd(env, spamd.address))).imported == 0


async def test_imap_subfolders_transfer_is_not_filtered(env: Env) -> None:
    deliver_mix(env)
    task_id = await env.add_task(folder_transfer=FolderTransfer.SUBFOLDERS, apply_filters=True)
    assert (await env.run(task_id)).imported == 3
    assert list(await subjects_by_folder(env)) == ["Remote/INBOX"]


@pytest.mark.parametrize("protocol", [Protocol.POP3, Protocol.IMAP])
async def test_a_spamd_that_is_down_delivers_to_the_inbox_with_a_warning(env: Env, protocol: Protocol) -> None:
    deliver_mix(env)
    task_id = await env.add_task(protocol, apply_filters=True, folder_transfer=FolderTransfer.ROOT)
    address = f"127.0.0.1:{closed_port()}"
    result = await env.run(task_id, with_spamd(env, address))
    assert (result.imported, result.errors) == (3, [])
    assert await subjects_by_folder(env) == {"Inbox": ["Lunch tomorrow?", "Win big"], "Junk": ["Cheap pills"]}
    [warning] = await env.logs(LogLevel.WARNING)
    assert f"spamd at {address} could not be reached" in warning
    assert "2 messages were delivered without its spam check" in warning


async def test_a_slow_spamd_costs_one_timeout_not_one_per_message(env: Env) -> None:
    for n in range(6):
        env.dovecot.deliver(env.mailbox.email, sample(f"Note {n}"))
    task_id = await env.add_task(POP3, apply_filters=True)
    with TricklingServer(line=b"SPAMD/1.1 0 EX_OK\r\n", interval=0.5) as slow:
        started = time.monotonic()
        result = await env.run(task_id, with_spamd(env, f"127.0.0.1:{slow.port}", timeout=1))
        elapsed = time.monotonic() - started
    assert (result.imported, result.errors) == (6, [])
    assert elapsed < 5, "spamd should rest after its first timeout"
    assert (await env.local_counts()) == {"Inbox": 6}
    [warning] = await env.logs(LogLevel.WARNING)
    assert "did not answer within 1 s" in warning
