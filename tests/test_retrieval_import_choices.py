"""What to import (issue 18) against the real Dovecot fixture: each initial import choice on IMAP
and POP3, folder include and exclude patterns with non-ASCII (modified UTF-7) names, a folder
included later, and the worst inputs for patterns and dates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlmodel import col, select

from service.config import Settings
from service.domain.import_choices import FolderSelection, InitialImport, check_patterns, wildcard_match
from service.domain.values import Protocol
from service.errors import InvalidInput, ServerUnavailable
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Message, PopUidl, RetrievalTask
from service.protocols.imap import FetchedMessage, ImapSession
from service.protocols.pop3 import Pop3Session
from service.usecases import retrieval_tasks
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.mail_samples import sample
from tests.retrieval_env import Env, make_env
from tests.test_imap_rename import as_the_user as remote


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


def append(env: Env, folder: str, subject: str, received: datetime) -> None:
    """A message whose internal date (what SEARCH SINCE looks at) is `received`."""
    with remote(env) as client:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        client.append(folder, sample(subject), msg_time=received)


def dated(subject: str, date_header: str) -> bytes:
    """A message with the given Date header (what POP3's "since" looks at)."""
    return sample(subject).replace(b"Tue, 05 Mar 2024", date_header.encode(), 1)


async def subjects(env: Env) -> set[str]:
    async with env.db.read() as session:
        return set((await session.exec(select(Message.subject))).all())


OLD = datetime(2020, 1, 10, 12, 0, tzinfo=UTC)
RECENT = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


# -- the initial import, IMAP ---------------------------------------------------------------


async def test_imap_all_messages_is_the_default(env: Env) -> None:
    append(env, "INBOX", "old", OLD)
    append(env, "INBOX", "recent", RECENT)
    task_id = await env.add_task()
    assert (await retrieval_tasks.get_task(db=env.db, task_id=task_id, user_id=None)).initial == "all"
    assert (await env.run(task_id)).imported == 2
    assert await subjects(env) == {"old", "recent"}


async def test_imap_only_new_messages_skips_what_is_there_and_imports_what_arrives(env: Env) -> None:
    append(env, "INBOX", "before", RECENT)
    append(env, "Ärchiv", "before in a folder", RECENT)
    task_id = await env.add_task(initial="new")

    first = await env.run(task_id)
    assert (first.imported, first.errors) == (0, [])
    assert await subjects(env) == set()

    append(env, "INBOX", "after", OLD)  # arrives later: imported, whatever its date
    append(env, "Ärchiv", "after in a folder", OLD)
    second = await env.run(task_id)
    assert second.imported == 2
    assert await subjects(env) == {"after", "after in a folder"}

    append(env, "Later folder", "in a folder created later", OLD)
    assert (await env.run(task_id)).imported == 1  # a folder first met later comes whole
    assert (await env.run(task_id)).imported == 0


async def test_imap_since_a_date_uses_the_internal_date_and_leaves_older_mail_behind(env: Env) -> None:
    append(env, "INBOX", "recent", RECENT)
    append(env, "INBOX", "old, after the recent one", OLD)  # a higher UID than "recent"
    append(env, "Sent", "old sent", OLD)
    task_id = await env.add_task(initial="since:2024-01-01")

    first = await env.run(task_id)
    assert (first.imported, first.errors) == (1, [])
    assert await subjects(env) == {"recent"}
    assert (await env.run(task_id)).imported == 0  # the old ones are never fetched later

    append(env, "INBOX", "arrives later with an old date", OLD)
    assert (await env.run(task_id)).imported == 1


async def test_an_unfinished_first_run_applies_the_choice_again(env: Env) -> None:
    """The choice holds until a run completes: a first run that cannot sign in changes nothing."""
    append(env, "INBOX", "before", RECENT)
    task_id = await env.add_task(initial="new", password="wrong password")
    assert (await env.run(task_id)).errors
    async with env.db.write() as session:
        task = await session.get(RetrievalTask, task_id)
        assert task is not None
        assert task.initial_done is False
        task.password_encrypted = env.secret_box.encrypt(env.mailbox.password)
        session.add(task)
    assert (await env.run(task_id)).imported == 0
    async with env.db.read() as session:
        task = await session.get(RetrievalTask, task_id)
    assert task is not None
    assert task.initial_done is True


async def test_an_interrupted_since_import_still_leaves_older_mail_behind(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A "since" run cut after its first batch committed: the next run still leaves the old
    mail between the batches behind, and still imports what the cut run did not reach."""
    append(env, "INBOX", "recent 1", RECENT)
    append(env, "INBOX", "old between", OLD)
    append(env, "INBOX", "recent 2", RECENT)
    append(env, "INBOX", "old last", OLD)
    task_id = await env.add_task(initial="since:2024-01-01")
    one_at_a_time = env.settings.model_copy(update={"retrieval_batch_messages": 1})
    real_fetch = ImapSession.fetch
    calls = 0

    def cut_after_one(self: ImapSession, uids: Sequence[int], *, folder: str = "") -> list[FetchedMessage]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise ServerUnavailable("The connection was lost.")
        return real_fetch(self, uids, folder=folder)

    monkeypatch.setattr(ImapSession, "fetch", cut_after_one)
    assert (await env.run(task_id, one_at_a_time)).errors
    assert await subjects(env) == {"recent 1"}
    monkeypatch.setattr(ImapSession, "fetch", real_fetch)

    assert (await env.run(task_id, one_at_a_time)).imported == 1
    assert await subjects(env) == {"recent 1", "recent 2"}
    append(env, "INBOX", "arrives later", RECENT)
    assert (await env.run(task_id)).imported == 1
    assert await subjects(env) == {"recent 1", "recent 2", "arrives later"}


# -- the initial import, POP3 ---------------------------------------------------------------


async def test_pop3_all_new_and_since(env: Env) -> None:
    env.dovecot.deliver(env.mailbox.email, dated("pop old", "Fri, 10 Jan 2020"))
    env.dovecot.deliver(env.mailbox.email, dated("pop recent", "Sat, 01 Jun 2024"))
    env.dovecot.deliver(env.mailbox.email, sample("pop undated").replace(b"Date: ", b"X-Not-Date: ", 1))

    everything = await env.add_task(Protocol.POP3, name="all")
    assert (await env.run(everything)).imported == 3

    only_new = await env.add_task(Protocol.POP3, name="new", initial="new")
    assert (await env.run(only_new)).imported == 0
    since = await env.add_task(Protocol.POP3, name="since", initial="since:2024-01-01")
    assert (await env.run(since)).imported == 2  # the recent one, and the undated one (never guessed away)

    env.dovecot.deliver(env.mailbox.email, dated("pop later", "Fri, 10 Jan 2020"))
    for task_id in (everything, only_new, since):
        assert (await env.run(task_id)).imported == 1
        assert (await env.run(task_id)).imported == 0


async def test_pop3_messages_left_behind_are_never_deleted_from_the_server(env: Env) -> None:
    for n in range(3):
        env.dovecot.deliver(env.mailbox.email, sample(f"kept {n}"))
    task_id = await env.add_task(Protocol.POP3, initial="new", leave_on_server=False)
    assert (await env.run(task_id)).imported == 0
    env.dovecot.deliver(env.mailbox.email, sample("new one"))
    assert (await env.run(task_id)).imported == 1
    assert (await env.run(task_id)).imported == 0
    assert env.dovecot.message_count(env.mailbox.email) == 3  # the new one went once stored; the rest stay
    async with env.db.read() as session:
        recorded = (await session.exec(select(PopUidl).where(col(PopUidl.not_imported).is_(True)))).all()
    assert len(recorded) == 3


async def test_pop3_new_mail_after_a_first_run_that_failed_at_the_end_is_imported(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only messages from now on: a first run that recorded what to leave behind and then lost
    the connection (at QUIT) has applied the choice; mail arriving after it is imported."""
    env.dovecot.deliver(env.mailbox.email, sample("there before"))
    task_id = await env.add_task(Protocol.POP3, initial="new")
    real_quit = Pop3Session.quit

    def lost(self: Pop3Session) -> None:
        raise ServerUnavailable("The connection was lost.")

    monkeypatch.setattr(Pop3Session, "quit", lost)
    assert (await env.run(task_id)).errors
    monkeypatch.setattr(Pop3Session, "quit", real_quit)

    env.dovecot.deliver(env.mailbox.email, sample("arrives after"))
    assert (await env.run(task_id)).imported == 1
    assert await subjects(env) == {"arrives after"}


# -- folders --------------------------------------------------------------------------------

FOLDERS = ["INBOX", "Entwürfe", "Архив/2024", "Архив/2025", "日本語", "Spam & Junk"]


def fill(env: Env) -> None:
    for folder in FOLDERS:
        env.dovecot.deliver(env.mailbox.email, sample(f"in {folder}"), folder=folder)


async def test_include_and_exclude_patterns_with_non_ascii_names(env: Env) -> None:
    fill(env)
    task_id = await env.add_task(include_folders=["INBOX", "архив/*", "日*"], exclude_folders=["*2025"])
    result = await env.run(task_id)
    assert result.errors == []
    assert await subjects(env) == {"in INBOX", "in Архив/2024", "in 日本語"}
    view = await retrieval_tasks.get_task(db=env.db, task_id=task_id, user_id=None)
    assert (view.include_folders, view.exclude_folders) == (("INBOX", "архив/*", "日*"), ("*2025",))


async def test_exclude_only_takes_new_remote_folders_too(env: Env) -> None:
    fill(env)
    task_id = await env.add_task(exclude_folders=["Entwürfe", "Spam*"])
    await env.run(task_id)
    assert await subjects(env) == {"in INBOX", "in Архив/2024", "in Архив/2025", "in 日本語"}
    env.dovecot.deliver(env.mailbox.email, sample("in Neu"), folder="Neu")
    assert (await env.run(task_id)).imported == 1


async def test_a_folder_included_later_comes_from_the_start_and_nothing_stored_is_lost(env: Env) -> None:
    fill(env)
    task_id = await env.add_task(initial="new", exclude_folders=["Entwürfe"])
    assert (await env.run(task_id)).imported == 0  # "from now on": nothing yet
    env.dovecot.deliver(env.mailbox.email, sample("new in INBOX"), folder="INBOX")
    assert (await env.run(task_id)).imported == 1

    view = await retrieval_tasks.get_task(db=env.db, task_id=task_id, user_id=None)
    changed = retrieval_tasks.NewTask(
        protocol=view.protocol,
        host=view.host,
        port=view.port,
        security=view.security,
        username=view.username,
        password="",
        name=view.name,
        timeout_seconds=view.timeout_seconds,
        initial=view.initial,
        include_folders=["INBOX", "Entwürfe"],  # "only these folders" now, Entwürfe ticked
    )
    await retrieval_tasks.update_task(db=env.db, secret_box=env.secret_box, user_id=None, task_id=task_id, new=changed)
    result = await env.run(task_id)
    assert result.imported == 1  # Entwürfe, from the start; INBOX keeps its cursor
    assert await subjects(env) == {"new in INBOX", "in Entwürfe"}
    assert (await env.run(task_id)).imported == 0


async def test_an_excluded_folder_renamed_and_recreated_on_the_server_is_not_imported_twice(env: Env) -> None:
    """A folder imported, then excluded, then renamed on the server with a new folder made under
    its old name (which stays excluded): the renamed one (included) is the same mail, not new."""
    append(env, "Archiv", "archived 1", RECENT)
    append(env, "Archiv", "archived 2", RECENT)
    task_id = await env.add_task()
    assert (await env.run(task_id)).imported == 2
    await retrieval_tasks.set_import_choices(db=env.db, task_id=task_id, user_id=None, exclude_folders=["Archiv"])
    with remote(env) as client:
        client.rename_folder("Archiv", "Archiv alt")
        client.create_folder("Archiv")
    append(env, "Archiv", "in the new excluded folder", RECENT)

    result = await env.run(task_id)
    assert (result.imported, result.errors) == (0, [])
    assert await subjects(env) == {"archived 1", "archived 2"}
    append(env, "Archiv alt", "later in the renamed folder", RECENT)
    assert (await env.run(task_id)).imported == 1


# -- worst inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", " ", "since:", "since:2024-13-01", "since:2024-02-30", "since:24-01-01", "since:2024-1-1",
     "since:\uff12\uff10\uff12\uff14-01-01", "since:1899-12-31", "since:2024-01-01\r\nnew", "everything",
     "x" * 100_000],
)  # fmt: skip
def test_invalid_initial_choices_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        InitialImport.parse(text)


def test_initial_choices_round_trip() -> None:
    assert str(InitialImport.parse(" NEW ")) == "new"
    assert str(InitialImport.parse("since:2024-02-29")) == "since:2024-02-29"
    assert InitialImport.parse("since:2024-02-29").label() == "Messages since 2024-02-29"


@pytest.mark.parametrize(
    "patterns",
    [
        [""],
        ["   "],
        ["Inbox\r\nBcc"],
        ["a\0b"],
        ["Inbox\u2028Spam"],
        ["Inbox\u2029"],
        ["Inbox\x85Spam"],
        ["x" * 1001],
        [f"f{n}" for n in range(201)],
        "INBOX",
    ],
)
def test_invalid_patterns_are_refused(patterns: list[str]) -> None:  # U+2028/2029: a line break on the form
    with pytest.raises(InvalidInput):
        check_patterns(patterns)


def test_star_storms_and_huge_names_match_at_once() -> None:
    storm = "*a" * 500 + "*c"
    assert check_patterns(["**" * 400 + "x"]) == ["*x"]
    assert not wildcard_match(storm, "a" * 100_000)  # would take ages with a backtracking regex
    assert wildcard_match("*" + "*a" * 30, "a" * 30)
    assert wildcard_match("a*b*a", "aba")
    assert not wildcard_match("a*a", "a")
    assert FolderSelection.of(["*"], []).includes("Anything/At all")
    assert not FolderSelection.of([], ["*"]).includes("INBOX")


async def test_the_cli_and_the_api_refuse_bad_choices_in_words(env: Env) -> None:
    for changes in ({"initial": "since:2024-02-30"}, {"include_folders": ["a\nb"]}, {"exclude_folders": [""]}):
        with pytest.raises(InvalidInput):
            await env.add_task(**changes)
    problems = retrieval_tasks.task_problems(
        retrieval_tasks.NewTask(
            protocol=Protocol.IMAP, host="imap.example.test", username="u", password="p", initial="later"
        )
    )
    assert set(problems) == {"initial"}
