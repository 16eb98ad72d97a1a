"""IMAP retrieval against the real Dovecot fixture: every folder, exactly once, clear errors."""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter

import pytest
from sqlmodel import select

from service.config import Settings
from service.domain.values import FolderTransfer, LogLevel, Protocol, Security
from service.errors import NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Message, RetrievalTask
from service.usecases import domains, retrieval_tasks
from service.usecases.retrieval import run_task
from service.usecases.users import add_user
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.faults import CuttingProxy, FakeImapServer, TricklingServer
from tests.mail_samples import EIGHT_BIT, MALFORMED, sample
from tests.retrieval_env import Env, make_env
from tests.stored_bodies import stored_raws


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


FOLDERS = ["INBOX", "Entwürfe", "Archiv/2024", "Reisen/Ça va", "Rechnungen & Belege"]


def fill(env: Env, per_folder: int = 3) -> dict[str, list[bytes]]:
    delivered: dict[str, list[bytes]] = {}
    for folder in FOLDERS:
        delivered[folder] = [sample(f"{folder} #{n}") for n in range(per_folder)]
        for raw in delivered[folder]:
            env.dovecot.deliver(env.mailbox.email, raw, folder=folder)
    return delivered


async def test_every_folder_lands_under_the_destination_exactly_once(env: Env) -> None:
    fill(env)
    env.dovecot.deliver(env.mailbox.email, sample("already read"), folder="INBOX", flags=["\\Seen"])
    task_id = await env.add_task()

    first = await env.run(task_id)
    assert first.errors == []
    assert first.imported == 3 * len(FOLDERS) + 1
    counts = await env.local_counts()
    assert {path: n for path, n in counts.items() if path.startswith("Remote/")} == {
        "Remote/INBOX": 4,
        "Remote/Entwürfe": 3,
        "Remote/Archiv/2024": 3,
        "Remote/Reisen/Ça va": 3,
        "Remote/Rechnungen & Belege": 3,
    }

    second = await env.run(task_id)
    assert (second.imported, second.errors) == (0, [])

    env.dovecot.deliver(env.mailbox.email, sample("late arrival"), folder="Archiv/2024")
    third = await env.run(task_id)
    assert third.imported == 1
    assert (await env.local_counts())["Remote/Archiv/2024"] == 4
    assert (await env.run(task_id)).imported == 0

    async with env.db.read() as session:
        seen = {m.subject: m.seen for m in (await session.exec(select(Message))).all()}
        task = await session.get(RetrievalTask, task_id)
    assert seen["already read"] is True
    assert seen["INBOX #0"] is False
    assert task is not None
    assert (task.messages_imported, task.last_error, task.needs_action) == (3 * len(FOLDERS) + 2, None, False)
    # BODY.PEEK[] leaves the remote \Seen flags alone.
    unseen = env.dovecot.doveadm("search", "-u", env.mailbox.email, "mailbox", "INBOX", "unseen")
    assert len(unseen.splitlines()) == 3
    assert any("Imported 16 messages" in text and "Remote/Entwürfe" in text for text in await env.logs(LogLevel.INFO))


async def test_root_transfer_maps_inbox_and_keeps_paths(env: Env) -> None:
    fill(env, per_folder=1)
    env.dovecot.deliver(env.mailbox.email, sample("sent one"), folder="Sent")
    env.dovecot.deliver(env.mailbox.email, sample("inbox child"), folder="INBOX/Child")
    task_id = await env.add_task(folder_transfer=FolderTransfer.ROOT)
    result = await env.run(task_id)
    assert result.errors == []
    counts = await env.local_counts()
    assert counts["Inbox"] == 1
    assert counts["Inbox/Child"] == 1
    assert counts["Sent"] == 1
    assert counts["Entwürfe"] == 1
    assert counts["Reisen/Ça va"] == 1
    assert not any(path.startswith(("INBOX", "Remote")) for path in counts)


async def test_uidvalidity_change_duplicates_nothing(env: Env) -> None:
    delivered = fill(env, per_folder=2)
    task_id = await env.add_task()
    assert (await env.run(task_id)).imported == 2 * len(FOLDERS)

    # The server loses the folder's UIDs: deleted and recreated with the same messages, plus one new.
    env.dovecot.doveadm("mailbox", "delete", "-u", env.mailbox.email, "Archiv/2024")
    for raw in delivered["Archiv/2024"]:
        env.dovecot.deliver(env.mailbox.email, raw, folder="Archiv/2024")
    env.dovecot.deliver(env.mailbox.email, sample("new after reset"), folder="Archiv/2024")

    result = await env.run(task_id)
    assert result.errors == []
    assert result.imported == 1
    assert (await env.local_counts())["Remote/Archiv/2024"] == 3
    assert any("UIDVALIDITY changed" in text for text in await env.logs(LogLevel.WARNING))
    assert (await env.run(task_id)).imported == 0


async def test_connection_cut_mid_fetch_then_next_run_has_exactly_the_servers_set(env: Env) -> None:
    delivered = fill(env, per_folder=40)
    expected = Counter(hashlib.sha256(raw).hexdigest() for raws in delivered.values() for raw in raws)
    with CuttingProxy(env.dovecot.host, env.dovecot.imap_port, cut_after_bytes=60_000) as proxy:
        task_id = await env.add_task(port=proxy.port, security=Security.NONE)
        cut = await env.run(task_id)
        assert cut.errors, "the proxy should have cut the first run"
        assert "closed the connection" in cut.errors[0] or "stopped answering" in cut.errors[0]
        assert proxy.cuts == 1
        assert 0 < sum((await env.local_hashes()).values()) < sum(expected.values())
        finished = await env.run(task_id)
    assert finished.errors == []
    assert await env.local_hashes() == expected
    assert (await env.run(task_id)).imported == 0


async def test_8bit_and_malformed_messages_are_stored_byte_for_byte(env: Env) -> None:
    for raw in (EIGHT_BIT, MALFORMED):
        env.dovecot.deliver(env.mailbox.email, raw)
    task_id = await env.add_task()
    assert (await env.run(task_id)).imported == 2
    async with env.db.read() as session:
        stored = await stored_raws(session)
    assert sorted(stored) == sorted([EIGHT_BIT, MALFORMED])


async def test_self_signed_certificate_is_refused_unless_verification_is_off(env: Env) -> None:
    env.dovecot.deliver(env.mailbox.email, sample("over tls"))
    untrusting = env.settings.model_copy(update={"extra_ca_file": None})
    task_id = await env.add_task()
    refused = await env.run(task_id, untrusting)
    assert refused.imported == 0
    assert len(refused.errors) == 1
    assert "certificate of 127.0.0.1 could not be verified" in refused.errors[0]
    assert "self-signed" in refused.errors[0] or "self signed" in refused.errors[0]

    lenient = await env.add_task(verify_certificate=False, destination_folder="Lenient")
    accepted = await env.run(lenient, untrusting)
    assert (accepted.imported, accepted.errors) == (1, [])


async def test_wrong_password_is_a_clear_error_that_needs_the_user(env: Env) -> None:
    task_id = await env.add_task(password="not the password")
    result = await env.run(task_id)
    assert result.imported == 0
    assert len(result.errors) == 1
    assert "rejected the username or password" in result.errors[0]
    async with env.db.read() as session:
        task = await session.get(RetrievalTask, task_id)
    assert task is not None
    assert task.needs_action
    assert task.last_error == result.errors[0]
    assert task.failing_since is not None


@pytest.mark.parametrize(
    ("security", "port_name", "message"),
    [
        (Security.SSL, "imap_port", "did not answer with TLS"),
        (Security.STARTTLS, "imaps_port", "did not answer on port"),
    ],
)
async def test_wrong_port_for_the_security_is_explained(
    env: Env, security: Security, port_name: str, message: str
) -> None:
    task_id = await env.add_task(security=security, port=getattr(env.dovecot, port_name), timeout_seconds=5)
    result = await env.run(task_id)
    assert len(result.errors) == 1
    assert message in result.errors[0]
    assert "port may not match the security setting" in result.errors[0]


async def test_starttls_not_offered_is_an_error_not_a_plaintext_login(env: Env) -> None:
    with FakeImapServer(capabilities="IMAP4rev1 AUTH=PLAIN") as fake:
        task_id = await env.add_task(port=fake.port, security=Security.STARTTLS)
        result = await env.run(task_id)
    assert len(result.errors) == 1
    assert "does not offer STARTTLS" in result.errors[0]
    assert not any(b"LOGIN" in line.upper() for line in fake.received), "credentials were sent in clear"


async def test_message_over_the_domain_limit_is_skipped_with_a_warning(env: Env) -> None:
    await domains.set_domain(db=env.db, name="example.test", max_message_bytes=4096)
    env.dovecot.deliver(env.mailbox.email, sample("small"))
    env.dovecot.deliver(env.mailbox.email, sample("huge", body="x" * 10_000))
    env.dovecot.deliver(env.mailbox.email, sample("small too"))
    task_id = await env.add_task()
    result = await env.run(task_id)
    assert (result.imported, result.skipped, result.errors) == (2, 1, [])
    assert any("larger than the 4,096 bytes" in text for text in await env.logs(LogLevel.WARNING))
    assert (await env.run(task_id)).imported == 0


async def test_test_connection_reports_each_step(env: Env) -> None:
    task_id = await env.add_task()
    report = await retrieval_tasks.test_task(
        db=env.db, secret_box=env.secret_box, settings=env.settings, task_id=task_id, user_id=env.user_id
    )
    assert report.ok
    assert [s.name for s in report.steps] == [
        "resolve",
        "connect",
        "greeting",
        "tls",
        "capabilities",
        "login",
        "folders",
    ]
    tls = next(s for s in report.steps if s.name == "tls")
    assert "commonName=localhost" in tls.detail
    assert "verified" in tls.detail

    bad = await env.add_task(password="wrong", destination_folder="Bad")
    failed = await retrieval_tasks.test_task(
        db=env.db, secret_box=env.secret_box, settings=env.settings, task_id=bad, user_id=env.user_id
    )
    assert not failed.ok
    assert failed.steps[-1].name == "login"
    assert "rejected the username or password" in failed.steps[-1].detail
    assert failed.steps[-1].hint


async def test_debug_transcript_is_logged_without_the_password(env: Env) -> None:
    env.dovecot.deliver(env.mailbox.email, sample("traced"))
    task_id = await env.add_task(enable_debug=True)
    assert (await env.run(task_id)).imported == 1
    [transcript] = await env.logs(LogLevel.DEBUG)
    assert "LOGIN" in transcript
    assert "[redacted]" in transcript
    assert env.mailbox.password not in transcript
    assert "EXAMINE" in transcript


def _commands(transcript: str) -> list[tuple[int, str]]:
    """(tag number, verb) of each command sent. imaplib numbers its tags in order, and a command
    the transcript does not show (SEARCH goes around the debug hook) still takes a number."""
    sent = [line.split() for line in transcript.splitlines() if line.startswith("> ")]
    return [(int(re.sub(r"^[A-Z]+", "", words[1])), words[2]) for words in sent]


async def test_a_poll_with_nothing_new_examines_each_folder_and_searches_none(env: Env) -> None:
    """UIDNEXT in the EXAMINE answer (RFC 3501 2.3.1.1) already says nothing arrived: no SEARCH,
    no FETCH; a folder that did get mail is searched and its message imported."""
    env.dovecot.deliver(env.mailbox.email, sample("first"))
    task_id = await env.add_task(enable_debug=True)
    assert (await env.run(task_id)).imported == 1
    quiet = await env.run(task_id)
    assert (quiet.imported, quiet.errors) == (0, [])
    assert _commands((await env.logs(LogLevel.DEBUG))[-1]) == [
        (1, "LOGIN"),
        (2, "LIST"),
        (3, "EXAMINE"),
        (4, "LOGOUT"),
    ]

    env.dovecot.deliver(env.mailbox.email, sample("second"))
    assert (await env.run(task_id)).imported == 1
    commands = _commands((await env.logs(LogLevel.DEBUG))[-1])
    assert len(commands) < commands[-1][0]  # the SEARCH took a tag


async def test_another_users_task_cannot_be_run(env: Env) -> None:
    task_id = await env.add_task()
    other = await add_user(db=env.db, email="other@example.test", password="long enough")
    with pytest.raises(NotFound):
        await run_task(db=env.db, secret_box=env.secret_box, settings=env.settings, task_id=task_id, user_id=other.id)


async def test_a_trickling_server_cannot_hold_a_run_past_its_deadline(env: Env) -> None:
    """Every read gets a byte in time, so only the run's deadline can end this."""
    impatient = env.settings.model_copy(update={"run_deadline_seconds": 2})
    with TricklingServer() as tarpit:
        task_id = await env.add_task(port=tarpit.port, security=Security.NONE, timeout_seconds=5)
        started = time.monotonic()
        result = await env.run(task_id, impatient)
    assert time.monotonic() - started < 8
    assert len(result.errors) == 1
    assert "too slow" in result.errors[0]


async def test_test_connection_before_saving(env: Env) -> None:
    new = retrieval_tasks.NewTask(
        protocol=Protocol.IMAP,
        host="127.0.0.1",
        port=env.dovecot.imap_port,
        security=Security.STARTTLS,
        username=env.mailbox.email,
        password=env.mailbox.password,
    )
    report = await retrieval_tasks.test_unsaved(
        db=env.db, secret_box=env.secret_box, settings=env.settings, user_id=env.user_id, new=new
    )
    assert report.ok, report.steps
    assert [s.name for s in report.steps][2:4] == ["greeting", "tls"]
    assert await retrieval_tasks.list_tasks(db=env.db, user_id=env.user_id) == []
