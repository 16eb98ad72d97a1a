"""Content filters on retrieved mail, end to end against the real Dovecot: moves, flags,
deletions that are never fetched again, spam before rules, other users' rules, and a failed
commit that leaves nothing half filtered."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import col, select

from service.config import Settings
from service.domain.filters import Action, ActionKind, Condition, FilterField, FilterOp, FilterRule
from service.domain.values import FolderTransfer, LogLevel, Protocol
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Folder, Message, PopUidl
from service.usecases import filters
from service.usecases.retrieval import store
from service.usecases.users import add_user
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.mail_samples import sample
from tests.retrieval_env import Env, make_env
from tests.test_spam_retrieval import FLAGGED_UPSTREAM, subjects_by_folder

POP3 = Protocol.POP3


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


async def add_rules(db: Database, user_id: int) -> None:
    """Boss mail flagged and read; newsletters to Lists/News; "delete me" deleted."""
    for name, condition, actions in [
        (
            "Boss",
            Condition(FilterField.FROM, FilterOp.IS, "boss@example.test"),
            (ActionKind.FLAG, ActionKind.MARK_READ),
        ),
        ("News", Condition(FilterField.SUBJECT, FilterOp.MATCHES, r"^news(letter)? #\d"), (ActionKind.MOVE,)),
        ("Bin", Condition(FilterField.SUBJECT, FilterOp.IS, "DELETE ME"), (ActionKind.DELETE,)),
    ]:
        rule = FilterRule(
            name=name,
            conditions=(condition,),
            actions=tuple(Action(kind, "Lists/News" if kind is ActionKind.MOVE else "") for kind in actions),
        )
        await filters.create_rule(db=db, user_id=user_id, rule=rule)


def deliver_mail(env: Env) -> None:
    for raw in [
        sample("Quarterly plan", sender="boss@example.test"),
        sample("newsletter #1"),
        sample("News #2"),
        sample("delete me"),
        sample("Hello"),
    ]:
        env.dovecot.deliver(env.mailbox.email, raw)


async def flags(env: Env) -> dict[str, tuple[bool, bool]]:
    async with env.db.read() as session:
        rows = (await session.exec(select(Message.subject, Message.seen, Message.flagged))).all()
    return {subject: (seen, flagged) for subject, seen, flagged in rows}


EXPECTED = {"Inbox": ["Hello", "Quarterly plan"], "Lists/News": ["News #2", "newsletter #1"]}


async def test_pop3_rules_move_flag_and_delete_and_deleted_mail_is_not_fetched_again(env: Env) -> None:
    await add_rules(env.db, env.user_id)
    deliver_mail(env)
    task_id = await env.add_task(POP3, apply_filters=True, leave_on_server=True)
    result = await env.run(task_id)
    assert (result.imported, result.errors) == (4, [])
    assert await subjects_by_folder(env) == EXPECTED
    assert (await flags(env))["Quarterly plan"] == (True, True)
    assert (await flags(env))["Hello"] == (False, False)
    assert "Filtering: 2 moved by your filters, 1 deleted by your filters." in await env.logs(LogLevel.INFO)
    async with env.db.read() as session:
        uidls = (await session.exec(select(PopUidl.message_id))).all()
    assert len(uidls) == 5
    assert uidls.count(None) == 1

    again = await env.run(task_id)
    assert (again.imported, again.errors) == (0, [])
    assert await subjects_by_folder(env) == EXPECTED
    assert env.dovecot.message_count(env.mailbox.email) == 5  # left on the server, as asked


async def test_pop3_delete_mode_removes_filtered_out_mail_from_the_server_too(env: Env) -> None:
    await add_rules(env.db, env.user_id)
    deliver_mail(env)
    task_id = await env.add_task(POP3, apply_filters=True, leave_on_server=False)
    assert (await env.run(task_id)).imported == 4
    assert env.dovecot.message_count(env.mailbox.email) == 0
    assert await subjects_by_folder(env) == EXPECTED


async def test_imap_rules_apply_to_the_remote_inbox_and_the_cursor_covers_deleted_mail(env: Env) -> None:
    await add_rules(env.db, env.user_id)
    deliver_mail(env)
    task_id = await env.add_task(folder_transfer=FolderTransfer.ROOT, apply_filters=True)
    assert (await env.run(task_id)).imported == 4
    assert await subjects_by_folder(env) == EXPECTED
    env.dovecot.deliver(env.mailbox.email, sample("News #3"))
    again = await env.run(task_id)
    assert (again.imported, again.errors) == (1, [])
    assert (await subjects_by_folder(env))["Lists/News"] == ["News #2", "News #3", "newsletter #1"]


async def test_rules_do_nothing_when_the_task_has_filtering_off(env: Env) -> None:
    await add_rules(env.db, env.user_id)
    deliver_mail(env)
    task_id = await env.add_task(POP3, apply_filters=False)
    assert (await env.run(task_id)).imported == 5
    assert list(await subjects_by_folder(env)) == ["Inbox"]


async def test_spam_goes_to_junk_before_any_rule_and_other_users_rules_never_apply(env: Env) -> None:
    other = await add_user(db=env.db, email="other@example.test", password="long enough")
    everything = Condition(FilterField.SIZE, FilterOp.OVER, "0")
    await filters.create_rule(
        db=env.db,
        user_id=other.id,
        rule=FilterRule(name="Delete all", conditions=(everything,), actions=(Action(ActionKind.DELETE),)),
    )
    mine = Condition(FilterField.SUBJECT, FilterOp.CONTAINS, "pills")
    await filters.create_rule(
        db=env.db,
        user_id=env.user_id,
        rule=FilterRule(name="Pills", conditions=(mine,), actions=(Action(ActionKind.MOVE, "Health"),)),
    )
    env.dovecot.deliver(env.mailbox.email, FLAGGED_UPSTREAM)
    env.dovecot.deliver(env.mailbox.email, sample("Vitamin pills"))
    task_id = await env.add_task(POP3, apply_filters=True)
    assert (await env.run(task_id)).imported == 2
    assert await subjects_by_folder(env) == {"Health": ["Vitamin pills"], "Junk": ["Cheap pills"]}


async def test_a_failed_commit_leaves_nothing_half_filtered(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    await add_rules(env.db, env.user_id)
    deliver_mail(env)
    task_id = await env.add_task(folder_transfer=FolderTransfer.ROOT, apply_filters=True)
    real_save = store._save_cursor

    async def crash(*args: Any, **kwargs: Any) -> None:
        if args[2] == "INBOX":
            raise RuntimeError("the database went away")
        await real_save(*args, **kwargs)

    monkeypatch.setattr(store, "_save_cursor", crash)
    failed = await env.run(task_id)
    assert failed.errors
    assert failed.imported == 0
    async with env.db.read() as session:
        assert (await session.exec(select(Message))).all() == []
        paths = (await session.exec(select(Folder.path))).all()
    assert not any(path.startswith("Lists") for path in paths)  # the rule's folder went with the rollback
    assert not any(text.startswith("Filtering:") for text in await env.logs())

    monkeypatch.setattr(store, "_save_cursor", real_save)
    done = await env.run(task_id)
    assert (done.imported, done.errors) == (4, [])
    assert await subjects_by_folder(env) == EXPECTED
    async with env.db.read() as session:
        assert len((await session.exec(select(col(Message.id)))).all()) == 4
