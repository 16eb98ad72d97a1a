"""Push's group claim and group commit (push_claim.py, push_batch.py): the fast paths of many tasks
announced at once share their transactions, and each task is still stored exactly once under its
own run lease. A batch whose lease was lost stores nothing while the others of its transaction
commit; a batch that breaks its group's transaction fails alone; Tributary's own Sent copies are
left out as in ordinary runs; a task that should no longer push gets its lease back."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from service.config import Settings
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import ImapCursor, Message, OutboxEntry, RetrievalTask
from service.persistence.types import utcnow
from service.protocols.imap import FetchedMessage
from service.usecases.retrieval.imap_run import incoming_message
from service.usecases.retrieval.lease import Lease, LeaseLost, claim
from service.usecases.retrieval.push_batch import Batch, GroupCommit
from service.usecases.retrieval.push_claim import GroupClaim
from service.usecases.retrieval.push_fetch import NoLongerPushing, read_pushed
from service.usecases.retrieval.runner import Runner
from service.usecases.retrieval.store import Cursor
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.retrieval_env import Env, make_env
from tests.test_push import HOUR, copies, message, polled_task, task_row
from tests.test_push_fast import inbox_cursor, warnings


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    made = await make_env(db, settings, secret_box, dovecot, mail_user)
    made.settings = made.settings.model_copy(update={"retrieval_interval": HOUR})
    return made


class NewMail:
    """A push connection (FetchingConnection) whose INBOX has one new message after the cursor."""

    def __init__(self, raw: bytes, uidvalidity: int, uid: int) -> None:
        self.raw, self._uidvalidity, self.uid = raw, uidvalidity, uid

    @property
    def uidvalidity(self) -> int | None:
        return self._uidvalidity

    async def sizes_after(self, after_uid: int) -> dict[int, int]:
        return {self.uid: len(self.raw)} if self.uid > after_uid else {}

    async def fetch_new(self, after_uid: int, uids: list[int] | None = None) -> list[FetchedMessage]:
        return [FetchedMessage(uid=self.uid, raw=self.raw, flags=frozenset(), internal_date=None)]


async def tasks(env: Env, count: int, *, push_owner: str | None = None) -> list[int]:
    """`count` polled tasks, each with its own local folder, pushed by `push_owner`."""
    made = [await polled_task(env, name=f"Remote {n}") for n in range(count)]
    async with env.db.write() as session:
        await session.exec(update(RetrievalTask).where(col(RetrievalTask.id).in_(made)).values(push_owner=push_owner))
    return made


async def batch_of(env: Env, task_id: int, owner: str, subject: str, uid: int) -> tuple[Batch, str]:
    """A claimed lease and one new message for the task, as the fast path hands them over."""
    lease = await claim(env.db, task_id, owner, seconds=60)
    assert lease is not None
    async with env.db.write() as session:
        pushed = await read_pushed(session, task_id)
    assert pushed.cursor is not None
    assert pushed.folder_id is not None
    raw, message_id = message(subject)
    fetched = FetchedMessage(uid=uid, raw=raw, flags=frozenset(), internal_date=None)
    incoming = incoming_message(fetched, task_id, "INBOX", pushed.cursor.uidvalidity)
    batch = Batch(
        lease=lease,
        user_id=pushed.task.user_id,
        remote_folder="INBOX",
        folder_id=pushed.folder_id,
        messages=[incoming],
        cursor=Cursor(pushed.cursor.uidvalidity, uid),
        summary=lambda stored: f"Imported {stored}.",
    )
    return batch, message_id


async def test_news_for_many_tasks_at_once_is_claimed_and_stored_once_each(env: Env) -> None:
    runner = Runner(db=env.db, secret_box=env.secret_box, settings=env.settings)
    task_ids = await tasks(env, 4, push_owner=runner.worker_id)
    cursor = await inbox_cursor(env, task_ids[0])
    news = {task_id: message(f"news for task {task_id}") for task_id in task_ids}
    connections = {task_id: NewMail(raw, cursor.uidvalidity, 7) for task_id, (raw, _) in news.items()}
    await asyncio.gather(*(runner.push_fetch(t, connections[t], noticed=0.0) for t in task_ids))
    await runner.shutdown()
    for task_id, (_raw, message_id) in news.items():
        assert await copies(env, message_id) == 1
        task = await task_row(env, task_id)
        assert task.lease_owner is None
        assert task.messages_imported == 1
        assert (await inbox_cursor(env, task_id)).last_uid == 7
        assert f"Imported 1 message (INBOX -> Remote {task_ids.index(task_id)}/INBOX: 1 new)." in await warnings(
            env, task_id
        )
    # Nothing new a second time: the cursors moved with the messages.
    await asyncio.gather(*(runner.push_fetch(t, connections[t], noticed=0.0) for t in task_ids))
    assert sum([await copies(env, m) for _, m in news.values()]) == 4


async def test_claims_arriving_together_share_one_transaction(env: Env) -> None:
    pushing, held_elsewhere, pushed_elsewhere = await tasks(env, 3, push_owner="this worker")
    async with env.db.write() as session:
        await session.exec(
            update(RetrievalTask).where(col(RetrievalTask.id) == pushed_elsewhere).values(push_owner="another worker")
        )
    assert await claim(env.db, held_elsewhere, "another run", seconds=60) is not None
    claims = GroupClaim(env.db, owner=lambda: "group#1", push_owner="this worker", seconds=lambda: 60)
    first, second, third = await asyncio.gather(
        claims.claim(pushing), claims.claim(held_elsewhere), claims.claim(pushed_elsewhere), return_exceptions=True
    )
    assert claims.transactions == 1
    assert isinstance(first, tuple)
    lease, pushed = first
    assert lease == Lease(pushing, "group#1", 60)
    assert pushed.cursor is not None
    assert pushed.folder_id is not None
    assert (await task_row(env, pushing)).lease_owner == "group#1"
    assert second is None  # the ordinary claim (and its retries) takes over from here
    assert (await task_row(env, held_elsewhere)).lease_owner == "another run"
    assert isinstance(third, NoLongerPushing)
    assert (await task_row(env, pushed_elsewhere)).lease_owner is None  # given back in the same transaction


async def test_a_batch_whose_lease_was_lost_stores_nothing_while_its_group_commits(env: Env) -> None:
    kept_task, lost_task = await tasks(env, 2)
    kept, kept_id = await batch_of(env, kept_task, "run#1", "kept", 3)
    lost, lost_id = await batch_of(env, lost_task, "run#2", "lost", 3)
    async with env.db.write() as session:  # the lease expired and another worker took the task
        await session.exec(
            update(RetrievalTask).where(col(RetrievalTask.id) == lost_task).values(lease_owner="another worker")
        )
    writer = GroupCommit(env.db)
    stored, failed = await asyncio.gather(writer.store(kept), writer.store(lost), return_exceptions=True)
    assert writer.transactions == 1
    assert stored == 1
    assert isinstance(failed, LeaseLost)
    assert await copies(env, kept_id) == 1
    assert await copies(env, lost_id) == 0
    assert (await inbox_cursor(env, kept_task)).last_uid == 3
    assert (await inbox_cursor(env, lost_task)).last_uid == 0
    assert (await task_row(env, lost_task)).lease_owner == "another worker"
    assert (await task_row(env, lost_task)).messages_imported == 0
    assert await warnings(env, kept_task) == ["Imported 1."]


async def test_a_batch_that_breaks_its_groups_transaction_fails_alone(env: Env) -> None:
    good_task, bad_task = await tasks(env, 2)
    good, good_id = await batch_of(env, good_task, "run#1", "good", 4)
    bad, bad_id = await batch_of(env, bad_task, "run#2", "bad", 4)
    bad.folder_id = 10**9  # a folder that does not exist: the foreign key refuses the message
    writer = GroupCommit(env.db)
    stored, failed = await asyncio.gather(writer.store(good), writer.store(bad), return_exceptions=True)
    assert stored == 1
    assert isinstance(failed, Exception)
    assert not isinstance(failed, LeaseLost)
    assert await copies(env, good_id) == 1
    assert await copies(env, bad_id) == 0
    assert (await inbox_cursor(env, bad_task)).last_uid == 0
    assert (await task_row(env, bad_task)).lease_owner == "run#2"  # the fast path gives it back (Runner)


async def test_tributarys_own_sent_copy_is_left_out_and_covered_by_the_cursor(env: Env) -> None:
    [task_id] = await tasks(env, 1)
    batch, message_id = await batch_of(env, task_id, "run#1", "our own sent copy", 5)
    task = await task_row(env, task_id)
    async with env.db.write() as session:
        session.add(
            OutboxEntry(
                user_id=task.user_id,
                envelope_from=env.mailbox.email,
                give_up_at=utcnow(),
                sent_copy_task_id=task_id,
                sent_copy_folder="INBOX",
                sent_copy_uidvalidity=(await inbox_cursor(env, task_id)).uidvalidity,
                sent_copy_uid=5,
            )
        )
    assert await GroupCommit(env.db).store(batch) == 0
    assert await copies(env, message_id) == 0
    assert (await inbox_cursor(env, task_id)).last_uid == 5
    assert (await task_row(env, task_id)).messages_imported == 0
    async with env.db.read() as session:
        assert (await session.exec(select(Message).where(col(Message.task_id) == task_id))).all() == []
        assert (await session.exec(select(ImapCursor).where(col(ImapCursor.task_id) == task_id))).all() != []
