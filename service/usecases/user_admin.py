"""What administrators do to users: list them with their state, edit (display name,
administrator role), disable and enable, delete, and set a new password.

Rules that hold for the web page and the CLI alike:

- an administrator cannot disable, delete or demote themselves (`actor_id`; the CLI, run by
  whoever runs the server, passes None), and the last active administrator can be neither
  disabled, deleted nor demoted by anyone, so the Administration page stays reachable;
- a disabled user cannot sign in, and their sessions end at their next request
  (`users.signed_in_user` checks `is_active`); enabling them again lets them sign in with the
  password they had;
- a new password set by an administrator changes the user's password hash, which ends every
  session of theirs (see `users`), and must meet the same password rules;
- deleting a user deletes everything that is theirs (the schema's ON DELETE CASCADE: folders,
  messages, retrieval tasks and their cursors, SMTP accounts, outbox, filters, OAuth2
  sign-ins, log entries); their domain stays.

"The last active administrator" holds under concurrency too: on PostgreSQL (READ COMMITTED)
two administrators disabling, demoting or deleting each other at the same moment would each
count the other as still active. So those changes first lock every active administrator's row
FOR UPDATE, in id order, before the target's; the second waits for the first to commit and
then counts what it left. SQLite runs one write transaction at a time (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain import passwords
from service.domain.compose import check_header_text
from service.domain.users import AdminUserView
from service.errors import Conflict, InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.tables import Domain, User

NOT_YOURSELF = "You cannot {what} your own account; ask another administrator."
LAST_ADMIN = "{email} is the last active administrator; make another user an administrator first."
SELF_SERVICE = "Change your own password under Settings, Account (/settings/account), which asks for your current one."
MAX_DISPLAY_NAME = 200


def _view(user: User, domain: Domain) -> AdminUserView:
    assert user.id is not None
    return AdminUserView(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        is_admin=user.is_admin,
        domain=domain.name,
        is_active=user.is_active,
    )


async def list_user_accounts(*, db: Database) -> list[AdminUserView]:
    """Every user, by address, with whether they may sign in."""
    async with db.read() as session:
        rows = (await session.exec(select(User, Domain).join(Domain).order_by(User.email))).all()
    return [_view(user, domain) for user, domain in rows]


async def _target(session: AsyncSession, user_id: int) -> tuple[User, Domain]:
    row = (
        await session.exec(select(User, Domain).join(Domain).where(User.id == user_id).with_for_update(of=User))
    ).first()
    if row is None:
        raise NotFound("This user does not exist.")
    return row[0], row[1]


async def _lock_admins(session: AsyncSession) -> None:
    """Lock the active administrators' rows (see the module docstring); a no-op on SQLite."""
    query = select(User.id).where(col(User.is_admin), col(User.is_active)).order_by(col(User.id))
    await session.exec(query.with_for_update())


async def _keep_an_admin(session: AsyncSession, user: User) -> None:
    """Refuse when `user` is the only active administrator (they are about to stop being one)."""
    if not (user.is_admin and user.is_active):
        return
    others = select(func.count()).select_from(User).where(col(User.is_admin), col(User.is_active), User.id != user.id)
    if not (await session.exec(others)).one():
        raise Conflict(LAST_ADMIN.format(email=user.email))


def _not_yourself(actor_id: int | None, user_id: int, what: str) -> None:
    if actor_id is not None and actor_id == user_id:
        raise Conflict(NOT_YOURSELF.format(what=what))


async def update_user(
    *, db: Database, actor_id: int | None, user_id: int, display_name: str, is_admin: bool
) -> AdminUserView:
    """Change a user's display name and administrator role."""
    name = check_header_text(display_name, "display name").strip()
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidInput(f"The display name can be at most {MAX_DISPLAY_NAME} characters long.")
    async with db.write() as session:
        await _lock_admins(session)
        user, domain = await _target(session, user_id)
        if user.is_admin and not is_admin:
            _not_yourself(actor_id, user_id, "remove the administrator role from")
            await _keep_an_admin(session, user)
        user.display_name = name
        user.is_admin = is_admin
        return _view(user, domain)


async def set_user_active(*, db: Database, actor_id: int | None, user_id: int, active: bool) -> AdminUserView:
    """Disable a user (they cannot sign in; their sessions end) or enable them again."""
    async with db.write() as session:
        await _lock_admins(session)
        user, domain = await _target(session, user_id)
        if not active:
            _not_yourself(actor_id, user_id, "disable")
            await _keep_an_admin(session, user)
        user.is_active = active
        return _view(user, domain)


async def delete_user(*, db: Database, actor_id: int | None, user_id: int) -> AdminUserView:
    """Delete a user and everything that is theirs; returns who they were."""
    async with db.write() as session:
        await _lock_admins(session)
        user, domain = await _target(session, user_id)
        _not_yourself(actor_id, user_id, "delete")
        await _keep_an_admin(session, user)
        gone = _view(user, domain)
        await session.exec(delete(User).where(col(User.id) == user_id))
    return gone


async def set_user_password(*, db: Database, user_id: int, password: str, actor_id: int | None = None) -> AdminUserView:
    """Give a user a new password (typed by an administrator); every session of theirs ends.

    Not the administrator's own (`actor_id`): that would end the very session they typed it in,
    and Settings, Account asks for the current password first."""
    if actor_id is not None and actor_id == user_id:
        raise Conflict(SELF_SERVICE)
    passwords.check_strength(password)
    password_hash = await asyncio.to_thread(passwords.hash_password, password)
    async with db.write() as session:
        user, domain = await _target(session, user_id)
        user.password_hash = password_hash
        return _view(user, domain)
