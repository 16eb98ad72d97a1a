"""Administration, Users: an administrator edits a user (display name, administrator role),
disables and enables them (a disabled user cannot sign in and their sessions end), sets a new
password (their sessions end) and deletes them with everything that is theirs. Nobody can
disable, delete or demote themselves, and the last administrator stays one. The same from the
`tributary user ...` commands."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.domain.values import Protocol, RetrievalMethod
from service.errors import Conflict
from service.persistence.database import Database
from service.persistence.mailstore import deliver, folder_by_path
from service.persistence.secrets import SecretBox
from service.persistence.tables import Folder, Message, RetrievalTask, SmtpAccount, User
from service.usecases import retrieval_tasks, user_admin
from service.usecases.users import add_user, find_user
from tests.cli_runner import tributary
from tests.fixtures.webapp import ADMIN_EMAIL, SESSION_COOKIE, WebClient, log_in, post_form, set_up_admin
from tests.settings_web import text_of
from tests.stored_bodies import body_count
from tests.test_folders_races import eventually, lock_waiters, postgres_only
from tests.test_smtp_fakes import make_account

HOST = "testserver.local"
MEMBER = "dave@example.test"
MEMBER_PASSWORD = "dave's long password"
NEW_PASSWORD = "a fresh password for dave"


async def _member_signed_in_elsewhere(client: WebClient, db: Database) -> tuple[int, str, str]:
    """The administrator and Dave each signed in; returns Dave's id, his session id and the admin's.
    The client is left as the administrator."""
    await set_up_admin(client)
    admin_session = client.cookies[SESSION_COOKIE]
    member = await add_user(db=db, email=MEMBER, password=MEMBER_PASSWORD, display_name="Dave")
    client.cookies.clear()
    assert (await log_in(client, email=MEMBER, password=MEMBER_PASSWORD)).status_code == 303
    member_session = client.cookies[SESSION_COOKIE]
    _use_session(client, admin_session)
    return member.id, member_session, admin_session


def _use_session(client: WebClient, session_id: str) -> None:
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, session_id, domain=HOST)


async def _signed_in(client: WebClient, session_id: str) -> bool:
    _use_session(client, session_id)
    answer = await client.get("/api/v1/session")
    return answer.status_code == 200


async def _as(client: WebClient, session_id: str, path: str, fields: dict[str, str]) -> httpx.Response:
    _use_session(client, session_id)
    return await post_form(client, path, fields)


async def test_the_users_list_links_each_user_to_their_page(web_client: WebClient, db: Database) -> None:
    member_id, _, _ = await _member_signed_in_elsewhere(web_client, db)
    listing = await web_client.get("/admin")
    assert f'href="/admin/users/{member_id}"' in listing.text
    page = await web_client.get(f"/admin/users/{member_id}")
    assert page.status_code == 200
    text = text_of(page.text)
    for words in (MEMBER, "Display name", "Disable user", "Set a new password", "Delete user"):
        assert words in text


async def test_editing_a_user_changes_their_name_and_role(web_client: WebClient, db: Database) -> None:
    member_id, _, _ = await _member_signed_in_elsewhere(web_client, db)
    saved = await post_form(web_client, f"/admin/users/{member_id}", {"display_name": "Dave D.", "is_admin": "on"})
    assert saved.status_code == 303
    assert f"Saved {MEMBER}." in text_of((await web_client.get(saved.headers["location"])).text)
    dave = await find_user(db=db, email=MEMBER)
    assert (dave.display_name, dave.is_admin) == ("Dave D.", True)
    bad = await post_form(web_client, f"/admin/users/{member_id}", {"display_name": "Dave\r\nBcc: x@y.test"})
    assert bad.status_code == 400
    assert (await find_user(db=db, email=MEMBER)).display_name == "Dave D."


async def test_a_disabled_user_is_signed_out_and_cannot_sign_in_until_enabled(
    web_client: WebClient, db: Database
) -> None:
    member_id, member_session, admin_session = await _member_signed_in_elsewhere(web_client, db)
    assert await _signed_in(web_client, member_session)
    disabled = await _as(web_client, admin_session, f"/admin/users/{member_id}/disable", {})
    assert disabled.status_code == 303
    assert "Disabled" in text_of((await web_client.get(f"/admin/users/{member_id}")).text)
    assert not await _signed_in(web_client, member_session)
    web_client.cookies.clear()
    assert (await log_in(web_client, email=MEMBER, password=MEMBER_PASSWORD)).status_code == 401

    assert (await _as(web_client, admin_session, f"/admin/users/{member_id}/enable", {})).status_code == 303
    web_client.cookies.clear()
    assert (await log_in(web_client, email=MEMBER, password=MEMBER_PASSWORD)).status_code == 303


async def test_a_new_password_ends_the_users_sessions(web_client: WebClient, db: Database) -> None:
    member_id, member_session, admin_session = await _member_signed_in_elsewhere(web_client, db)
    path = f"/admin/users/{member_id}/password"
    differ = await post_form(web_client, path, {"password": NEW_PASSWORD, "password_confirm": "something else"})
    assert differ.status_code == 400
    weak = await post_form(web_client, path, {"password": "password1", "password_confirm": "password1"})
    assert weak.status_code == 400
    assert "one of the most common" in text_of(weak.text)
    for response in (differ, weak):
        assert NEW_PASSWORD not in response.text
        assert "password1" not in response.text
    assert await _signed_in(web_client, member_session)  # nothing changed yet

    done = await _as(web_client, admin_session, path, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert done.status_code == 303
    assert not await _signed_in(web_client, member_session)
    assert await _signed_in(web_client, admin_session)  # the administrator's own session is untouched
    web_client.cookies.clear()
    assert (await log_in(web_client, email=MEMBER, password=MEMBER_PASSWORD)).status_code == 401
    assert (await log_in(web_client, email=MEMBER, password=NEW_PASSWORD)).status_code == 303


async def _counts(db: Database, user_id: int) -> dict[str, int]:
    async with db.read() as session:

        async def count(table: type, column: object) -> int:
            return int((await session.exec(select(func.count()).select_from(table).where(column == user_id))).one())

        return {
            "users": await count(User, User.id),
            "folders": await count(Folder, Folder.user_id),
            "messages": await count(Message, Message.user_id),
            "bodies": await body_count(session, col(Message.user_id) == user_id),
            "tasks": await count(RetrievalTask, RetrievalTask.user_id),
            "smtp": await count(SmtpAccount, SmtpAccount.user_id),
        }


async def test_deleting_a_user_needs_confirmation_and_takes_everything_of_theirs(
    web_client: WebClient, db: Database, secret_box: SecretBox
) -> None:
    member_id, member_session, admin_session = await _member_signed_in_elsewhere(web_client, db)
    async with db.write() as session:
        inbox = await folder_by_path(session, member_id, "Inbox")
        assert inbox.id is not None
        await deliver(session, user_id=member_id, folder_id=inbox.id, raw=b"Subject: hi\r\n\r\nhello\r\n")
    new = retrieval_tasks.NewTask(
        protocol=Protocol.IMAP,
        host="imap.example.test",
        username=MEMBER,
        password="remote password",
        method=RetrievalMethod.MANUAL,
    )
    await retrieval_tasks.add_task(db=db, secret_box=secret_box, user_id=member_id, new=new)
    await make_account(db, secret_box, member_id, "smtp.example.test", 587)
    before = await _counts(db, member_id)
    assert before["messages"] == before["bodies"] == before["tasks"] == before["smtp"] == 1

    unconfirmed = await post_form(web_client, f"/admin/users/{member_id}/delete", {})
    assert unconfirmed.status_code == 400
    assert "Tick the box" in text_of(unconfirmed.text)
    assert await _counts(db, member_id) == before

    deleted = await post_form(web_client, f"/admin/users/{member_id}/delete", {"confirm": "on"})
    assert deleted.status_code == 303
    assert deleted.headers["location"] == "/admin#users"
    listing = await web_client.get("/admin")
    assert f"Deleted {MEMBER} and all their mail, tasks and accounts." in text_of(listing.text)
    assert f'href="/admin/users/{member_id}"' not in listing.text
    assert set((await _counts(db, member_id)).values()) == {0}
    assert not await _signed_in(web_client, member_session)
    assert (
        await _as(web_client, admin_session, f"/admin/users/{member_id}/delete", {"confirm": "on"})
    ).status_code == 404


async def test_administrators_cannot_disable_delete_or_demote_themselves(web_client: WebClient, db: Database) -> None:
    await set_up_admin(web_client)
    admin_id = (await find_user(db=db, email=ADMIN_EMAIL)).id
    for path, fields in (
        (f"/admin/users/{admin_id}/disable", {}),
        (f"/admin/users/{admin_id}/delete", {"confirm": "on"}),
        (f"/admin/users/{admin_id}", {"display_name": "Ada"}),  # the administrator box unticked
    ):
        refused = await post_form(web_client, path, fields)
        assert refused.status_code == 409, path
        assert "your own account" in text_of(refused.text)
    ada = await find_user(db=db, email=ADMIN_EMAIL)
    assert ada.is_admin
    assert (await web_client.get("/admin")).status_code == 200


async def test_an_administrators_own_password_is_changed_under_settings_account(
    web_client: WebClient, db: Database
) -> None:
    """Setting it on the Administration page would end the session it was typed in."""
    await set_up_admin(web_client)
    admin_id = (await find_user(db=db, email=ADMIN_EMAIL)).id
    path = f"/admin/users/{admin_id}/password"
    refused = await post_form(web_client, path, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert refused.status_code == 409
    assert "/settings/account" in text_of(refused.text)
    assert NEW_PASSWORD not in refused.text
    assert (await web_client.get("/admin")).status_code == 200  # still signed in
    web_client.cookies.clear()
    assert (await log_in(web_client, email=ADMIN_EMAIL, password=NEW_PASSWORD)).status_code == 401


async def test_members_cannot_manage_users(web_client: WebClient, db: Database) -> None:
    member_id, member_session, _ = await _member_signed_in_elsewhere(web_client, db)
    admin_id = (await find_user(db=db, email=ADMIN_EMAIL)).id
    _use_session(web_client, member_session)
    assert (await web_client.get(f"/admin/users/{admin_id}")).status_code == 403
    assert (await post_form(web_client, f"/admin/users/{admin_id}/disable", {})).status_code == 403
    assert (await post_form(web_client, f"/admin/users/{member_id}", {"is_admin": "on"})).status_code == 403
    assert not (await find_user(db=db, email=MEMBER)).is_admin


async def test_the_cli_disables_enables_sets_passwords_and_deletes(settings: Settings, db: Database) -> None:
    await add_user(db=db, email="root@example.test", password="root's long password", is_admin=True)
    await add_user(db=db, email=MEMBER, password=MEMBER_PASSWORD)

    disabled = tributary(settings, "user", "disable", MEMBER)
    assert disabled.returncode == 0, disabled.stderr
    listed = tributary(settings, "user", "list")
    assert f"{MEMBER} [disabled]" in listed.stdout
    assert tributary(settings, "user", "enable", MEMBER).returncode == 0
    assert f"{MEMBER} [disabled]" not in tributary(settings, "user", "list").stdout

    weak = tributary(settings, "user", "set-password", MEMBER, "--password-stdin", stdin="short\n")
    assert weak.returncode == 1
    assert "at least 8 characters" in weak.stderr
    changed = tributary(settings, "user", "set-password", MEMBER, "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert changed.returncode == 0, changed.stderr
    assert NEW_PASSWORD not in changed.stdout + changed.stderr

    last_admin = tributary(settings, "user", "disable", "root@example.test")
    assert last_admin.returncode == 1
    assert "last active administrator" in last_admin.stderr

    unconfirmed = tributary(settings, "user", "delete", MEMBER, stdin="n\n")
    assert unconfirmed.returncode != 0
    assert MEMBER in tributary(settings, "user", "list").stdout
    deleted = tributary(settings, "user", "delete", MEMBER, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert MEMBER not in tributary(settings, "user", "list").stdout
    missing = tributary(settings, "user", "disable", MEMBER)
    assert missing.returncode == 1
    assert f"There is no user {MEMBER}." in missing.stderr


MUTUAL = {
    "disable": lambda db, actor, target: user_admin.set_user_active(
        db=db, actor_id=actor, user_id=target, active=False
    ),
    "demote": lambda db, actor, target: user_admin.update_user(
        db=db, actor_id=actor, user_id=target, display_name="", is_admin=False
    ),
    "delete": lambda db, actor, target: user_admin.delete_user(db=db, actor_id=actor, user_id=target),
}


@pytest.mark.parametrize("change", sorted(MUTUAL))
async def test_two_administrators_removing_each_other_at_once_leave_one(
    db: Database, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """On PostgreSQL both would count the other as still active. Each is held right after its
    count until the other has counted too, or waits on a lock: then only the lock can have
    kept the second from counting before the first committed."""
    postgres_only(db)
    first = (await add_user(db=db, email="first@example.test", password=MEMBER_PASSWORD, is_admin=True)).id
    second = (await add_user(db=db, email="second@example.test", password=MEMBER_PASSWORD, is_admin=True)).id
    counted = 0
    keep_an_admin = user_admin._keep_an_admin

    async def held_after_counting(session: AsyncSession, user: User) -> None:
        nonlocal counted
        await keep_an_admin(session, user)
        counted += 1

        async def both_counted_or_one_waits() -> bool:
            return counted == 2 or await lock_waiters(db) >= 1

        await eventually(both_counted_or_one_waits, "the other administrator's change counted or waiting")

    monkeypatch.setattr(user_admin, "_keep_an_admin", held_after_counting)
    outcomes = await asyncio.gather(
        MUTUAL[change](db, first, second), MUTUAL[change](db, second, first), return_exceptions=True
    )
    refused = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(refused) == 1, outcomes
    assert isinstance(refused[0], Conflict), outcomes
    assert "is the last active administrator" in str(refused[0])
    async with db.read() as session:
        admins = (await session.exec(select(User.email).where(col(User.is_admin), col(User.is_active)))).all()
    assert len(admins) == 1
