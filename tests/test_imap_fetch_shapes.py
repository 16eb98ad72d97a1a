"""Every shape of a FETCH answer ends in a stored message, a failed batch, or a message that is
really gone: never a cursor that passes a message that was not stored (issue 14).

A scripted server answers each shape (a real server will not produce them on demand): a
literal, a quoted string, NIL, a UID left out of the answer, and a message expunged
between SEARCH and FETCH.
"""

from __future__ import annotations

import ipaddress

import pytest
from sqlmodel import col, select

from service.config import Settings
from service.domain.outbound import OutboundPolicy
from service.domain.values import Security
from service.errors import MessageWithheld
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Message
from service.protocols.imap import ImapAccount, open_session
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.scripted_imap import ScriptedFolder, ScriptedImapServer, ScriptedMessage
from tests.mail_samples import sample
from tests.retrieval_env import Env, make_env
from tests.stored_bodies import stored_raws


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


def inbox(*messages: ScriptedMessage) -> ScriptedFolder:
    return ScriptedFolder("INBOX", list(messages))


async def stored(env: Env) -> list[bytes]:
    async with env.db.read() as session:
        uids = (await session.exec(select(Message.remote_uid).order_by(col(Message.id)))).all()
        raws = await stored_raws(session)
    return [raw for _, raw in sorted(zip(uids, raws, strict=True), key=lambda row: row[0] or 0)]


async def scripted_task(env: Env, server: ScriptedImapServer) -> int:
    return await env.add_task(port=server.port, security=Security.NONE)


@pytest.mark.parametrize(
    ("shapes", "raw"),
    [
        (["literal"], sample("as a literal")),
        (["quoted"], b"Subject: sent as a quoted string"),
        (["quoted"], b""),
        (["nil", "literal"], sample("NIL at first, then a literal")),
        (["missing", "literal"], sample("left out at first, then a literal")),
    ],
    ids=["literal", "quoted", "empty-quoted", "nil-then-literal", "missing-then-literal"],
)
async def test_each_body_shape_is_stored_once(env: Env, shapes: list[str], raw: bytes) -> None:
    first, last = sample("before"), sample("after")
    folder = inbox(ScriptedMessage(1, first), ScriptedMessage(2, raw, shapes), ScriptedMessage(3, last))
    with ScriptedImapServer([folder]) as server:
        task_id = await scripted_task(env, server)
        result = await env.run(task_id)
        assert (result.imported, result.errors) == (3, [])
        assert await stored(env) == [first, raw, last]
        again = await env.run(task_id)
    assert (again.imported, again.errors) == (0, [])


@pytest.mark.parametrize("withheld", ["nil", "missing"])
async def test_a_body_the_server_keeps_withholding_fails_the_batch_and_the_next_run_gets_it(
    env: Env, withheld: str
) -> None:
    raws = [sample(f"message {uid}") for uid in (1, 2, 3)]
    stubborn = ScriptedMessage(2, raws[1], [withheld])
    folder = inbox(ScriptedMessage(1, raws[0]), stubborn, ScriptedMessage(3, raws[2]))
    with ScriptedImapServer([folder]) as server:
        task_id = await scripted_task(env, server)
        failed = await env.run(task_id)
        assert failed.imported == 0
        assert len(failed.errors) == 1
        assert "did not send the content of message 2 in INBOX" in failed.errors[0]
        assert "Nothing from UID 1 on in this folder was stored this time" in failed.errors[0]
        assert "did not send the content of message 2 in INBOX although it still lists it" in failed.errors[0]
        assert await stored(env) == []

        stubborn.shapes, stubborn.fetches = ["literal"], 0  # the server recovers
        healed = await env.run(task_id)
        assert (healed.imported, healed.errors) == (3, [])
        assert await stored(env) == raws
        assert (await env.run(task_id)).imported == 0


async def test_a_message_expunged_between_search_and_fetch_is_passed_and_nothing_else(env: Env) -> None:
    raws = [sample(f"message {uid}") for uid in (1, 2, 3)]
    folder = inbox(ScriptedMessage(1, raws[0]), ScriptedMessage(2, raws[1], ["gone"]), ScriptedMessage(3, raws[2]))
    with ScriptedImapServer([folder]) as server:
        task_id = await scripted_task(env, server)
        result = await env.run(task_id)
        assert (result.imported, result.errors) == (2, [])
        assert await stored(env) == [raws[0], raws[2]]
        assert any(b"SEARCH UID 2" in line for line in server.received), "gone was checked, not assumed"

        late = sample("message 4")
        folder.messages.append(ScriptedMessage(4, late))
        following = await env.run(task_id)
        assert (following.imported, following.errors) == (1, [])
        assert await stored(env) == [raws[0], raws[2], late]


def test_a_withheld_body_is_its_own_error_not_a_missing_folder() -> None:
    folder = inbox(ScriptedMessage(1, sample("withheld"), ["nil"]))
    with ScriptedImapServer([folder]) as server:
        account = ImapAccount(
            host="127.0.0.1",
            port=server.port,
            security=Security.NONE,
            username="u",
            password="p",
            policy=OutboundPolicy(networks=(ipaddress.ip_network("127.0.0.0/8"),)),
        )
        with open_session(account) as session:
            session.select(session.list_folders()[0])
            with pytest.raises(MessageWithheld, match="did not send the content of message 1 in INBOX"):
                session.fetch([1], folder="INBOX")


async def test_a_size_the_server_leaves_out_fails_the_folder_and_the_next_run_gets_it(env: Env) -> None:
    """A UID left out of the RFC822.SIZE answer is gone only if UID SEARCH no longer finds it;
    otherwise the folder fails before any batch, so no cursor passes it."""
    raws = [sample(f"message {uid}") for uid in (1, 2, 3)]
    stubborn = ScriptedMessage(2, raws[1], size_shapes=["missing"])
    folder = inbox(ScriptedMessage(1, raws[0]), stubborn, ScriptedMessage(3, raws[2]))
    with ScriptedImapServer([folder]) as server:
        task_id = await scripted_task(env, server)
        failed = await env.run(task_id)
        assert (failed.imported, len(failed.errors)) == (0, 1)
        assert "did not send the size of message 2 in INBOX although it still lists it" in failed.errors[0]
        assert await stored(env) == []

        stubborn.size_shapes = ["given"]  # the server recovers
        healed = await env.run(task_id)
        assert (healed.imported, healed.errors) == (3, [])
        assert await stored(env) == raws


async def test_a_message_expunged_before_its_size_is_fetched_is_passed_and_nothing_else(env: Env) -> None:
    raws = [sample(f"message {uid}") for uid in (1, 2, 3)]
    folder = inbox(
        ScriptedMessage(1, raws[0]), ScriptedMessage(2, raws[1], size_shapes=["gone"]), ScriptedMessage(3, raws[2])
    )
    with ScriptedImapServer([folder]) as server:
        task_id = await scripted_task(env, server)
        result = await env.run(task_id)
        assert (result.imported, result.errors) == (2, [])
        assert await stored(env) == [raws[0], raws[2]]
        assert any(b"SEARCH UID 2" in line for line in server.received), "gone was checked, not assumed"
