"""Editing and resuming retrieval tasks (the use cases behind "Edit" and "Resume"), and the count
behind the header's "needs your action" badge."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlmodel import col, update

from service.config import Settings
from service.domain.values import FolderTransfer, Protocol, RetrievalMethod, Security
from service.errors import FeatureDisabled, InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import RetrievalTask, SmtpAccount
from service.persistence.types import utcnow
from service.usecases import domains, retrieval_tasks
from service.usecases.attention import needs_action_count
from service.usecases.retrieval_tasks import NewTask
from service.usecases.users import add_user
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.retrieval_env import make_env

NEW = NewTask(
    protocol=Protocol.IMAP,
    host="imap.example.test",
    username="me@example.test",
    password="first-Password",
    name="Work",
    method=RetrievalMethod.MANUAL,
)


async def _user(db: Database, email: str = "me@example.test") -> int:
    return (await add_user(db=db, email=email, password="long enough")).id


async def _stored(db: Database, task_id: int) -> RetrievalTask:
    async with db.read() as session:
        task = await session.get(RetrievalTask, task_id)
    assert task is not None
    return task


async def _pause(db: Database, task_id: int) -> None:
    async with db.write() as session:
        await session.exec(
            update(RetrievalTask)
            .where(col(RetrievalTask.id) == task_id)
            .values(paused_reason="Paused after 3 failed sign-ins.", auth_failures=3, needs_action=True)
        )


async def test_update_replaces_every_setting_and_keeps_an_unchanged_password(
    db: Database, secret_box: SecretBox
) -> None:
    user_id = await _user(db)
    task = await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=user_id, new=NEW)
    before = await _stored(db, task.id)

    edited = replace(
        NEW,
        protocol=Protocol.POP3,
        host=" POP.Example.test ",
        security=Security.STARTTLS,
        port=None,
        password="",
        name="Home",
        verify_certificate=False,
        method=RetrievalMethod.AUTOMATIC,
        folder_transfer=FolderTransfer.ROOT,
        destination_folder="/Home/",
        use_apop=True,
        leave_on_server=True,
        delete_after_days=14,
        apply_filters=False,
        enable_debug=True,
        timeout_seconds=30,
    )
    view = await retrieval_tasks.update_task(db=db, secret_box=secret_box, user_id=user_id, task_id=task.id, new=edited)
    assert (view.protocol, view.host, view.port, view.security) == (
        Protocol.POP3,
        "pop.example.test",
        110,
        Security.STARTTLS,
    )
    assert (view.name, view.verify_certificate, view.method, view.folder_transfer) == (
        "Home",
        False,
        RetrievalMethod.AUTOMATIC,
        FolderTransfer.ROOT,
    )
    assert (view.destination_folder, view.use_apop, view.delete_after_days) == ("Home", True, 14)
    assert (view.apply_filters, view.enable_debug, view.timeout_seconds) == (False, True, 30)
    assert view.next_run_at is not None  # automatic now: due at once
    after = await _stored(db, task.id)
    assert after.password_encrypted == before.password_encrypted
    assert "first-Password" not in repr(view)

    manual = await retrieval_tasks.update_task(
        db=db, secret_box=secret_box, user_id=user_id, task_id=task.id, new=replace(NEW, password="second-Password")
    )
    assert manual.next_run_at is None
    stored = (await _stored(db, task.id)).password_encrypted
    assert stored is not None
    assert secret_box.decrypt(stored) == "second-Password"


async def test_update_validates_and_is_scoped_to_the_owner(db: Database, secret_box: SecretBox) -> None:
    owner = await _user(db)
    stranger = await _user(db, "stranger@example.test")
    task = await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=owner, new=NEW)

    with pytest.raises(InvalidInput, match="host name"):
        await retrieval_tasks.update_task(
            db=db, secret_box=secret_box, user_id=owner, task_id=task.id, new=replace(NEW, host="bad host")
        )
    with pytest.raises(InvalidInput, match="from 1 to 65535"):
        await retrieval_tasks.update_task(
            db=db, secret_box=secret_box, user_id=owner, task_id=task.id, new=replace(NEW, port=0)
        )
    for call in (
        retrieval_tasks.update_task(db=db, secret_box=secret_box, user_id=stranger, task_id=task.id, new=NEW),
        retrieval_tasks.resume_task(db=db, task_id=task.id, user_id=stranger),
    ):
        with pytest.raises(NotFound):
            await call
    assert (await _stored(db, task.id)).name == "Work"

    await domains.set_domain(db=db, name="example.test", retrieval_enabled=False)
    with pytest.raises(FeatureDisabled, match=r"turned off IMAP/POP Retrieval for example\.test"):
        await retrieval_tasks.update_task(db=db, secret_box=secret_box, user_id=owner, task_id=task.id, new=NEW)
    with pytest.raises(FeatureDisabled):
        await retrieval_tasks.resume_task(db=db, task_id=task.id, user_id=owner)
    with pytest.raises(FeatureDisabled):
        await retrieval_tasks.check_retrieval_enabled(db=db, user_id=owner)


def test_task_problems_name_each_field() -> None:
    bad = replace(NEW, host="", port=70000, username=" ", password="", delete_after_days=0, timeout_seconds=1)
    assert set(retrieval_tasks.task_problems(bad)) == {
        "host",
        "port",
        "username",
        "password",
        "delete_after_days",
        "timeout_seconds",
    }
    assert "password" not in retrieval_tasks.task_problems(bad, password_required=False)
    assert retrieval_tasks.task_problems(replace(NEW, password="a\nb")) == {
        "password": "The password cannot contain line breaks."
    }
    assert retrieval_tasks.task_problems(NEW) == {}


async def test_resume_and_a_new_password_lift_the_pause(db: Database, secret_box: SecretBox) -> None:
    user_id = await _user(db)
    automatic = replace(NEW, method=RetrievalMethod.AUTOMATIC)
    task = await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=user_id, new=automatic)
    await _pause(db, task.id)
    assert await needs_action_count(db=db, user_id=user_id) == 1
    paused = await retrieval_tasks.get_task(db=db, task_id=task.id, user_id=user_id)
    assert paused.paused_reason == "Paused after 3 failed sign-ins."

    before = utcnow()
    resumed = await retrieval_tasks.resume_task(db=db, task_id=task.id, user_id=user_id)
    assert (resumed.paused_reason, resumed.needs_action) == (None, False)
    assert resumed.next_run_at is not None
    assert resumed.next_run_at >= before
    assert (await _stored(db, task.id)).auth_failures == 0
    assert await needs_action_count(db=db, user_id=user_id) == 0

    await _pause(db, task.id)
    renamed = await retrieval_tasks.update_task(
        db=db, secret_box=secret_box, user_id=user_id, task_id=task.id, new=replace(automatic, password="", name="X")
    )
    assert renamed.paused_reason is not None  # nothing the pause asked for changed
    fixed = await retrieval_tasks.update_task(
        db=db, secret_box=secret_box, user_id=user_id, task_id=task.id, new=replace(automatic, password="fixed-Pw")
    )
    assert (fixed.paused_reason, fixed.needs_action) == (None, False)


async def test_needs_action_counts_tasks_and_smtp_accounts_of_one_user(db: Database, secret_box: SecretBox) -> None:
    me = await _user(db)
    other = await _user(db, "other@example.test")
    mine = await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=me, new=NEW)
    theirs = await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=other, new=NEW)
    assert await needs_action_count(db=db, user_id=me) == 0
    await _pause(db, mine.id)
    await _pause(db, theirs.id)
    async with db.write() as session:
        session.add(
            SmtpAccount(user_id=me, email_address="me@example.test", host="smtp.test", port=587, needs_action=True)
        )
        session.add(SmtpAccount(user_id=me, email_address="me2@example.test", host="smtp.test", port=587))
    assert await needs_action_count(db=db, user_id=me) == 2
    assert await needs_action_count(db=db, user_id=other) == 1


async def test_test_changes_uses_the_stored_password_when_none_is_typed(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    env = await make_env(db, settings, secret_box, dovecot, mail_user)
    task_id = await env.add_task()
    edited = retrieval_tasks.NewTask(
        protocol=Protocol.POP3,
        host="127.0.0.1",
        port=env.dovecot.pop3s_port,
        security=Security.SSL,
        username=env.mailbox.email,
        password="",
        timeout_seconds=10,
    )
    report = await retrieval_tasks.test_changes(
        db=db, secret_box=secret_box, settings=env.settings, task_id=task_id, user_id=env.user_id, new=edited
    )
    assert report.ok, report.steps
    assert [s.name for s in report.steps][-2:] == ["login", "messages"]
    wrong = await retrieval_tasks.test_changes(
        db=db,
        secret_box=secret_box,
        settings=env.settings,
        task_id=task_id,
        user_id=env.user_id,
        new=replace(edited, password="wrong"),
    )
    assert not wrong.ok
    assert wrong.steps[-1].name == "login"
    with pytest.raises(NotFound):
        await retrieval_tasks.test_changes(
            db=db, secret_box=secret_box, settings=env.settings, task_id=task_id, user_id=env.user_id + 1, new=edited
        )
