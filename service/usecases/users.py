"""Tributary's own users: the first administrator, adding users, signing in, changing one's
own password. What administrators do to other users is in `user_admin`.

A user's domain is the part of their address after the @; it is created with
both features switched on the first time a user of it is added.

Sessions end without a session table: a signed-in session keeps the stamp of the password
hash it was started with (`session_stamp_of`), and `signed_in_user` ends a session whose
stamp is no longer the user's (the password was changed or reset), or whose user was
disabled or deleted. Changing one's own password returns the new stamp, so the face can keep
the session it was changed from.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain import passwords
from service.domain.users import (
    Authenticated,
    UserView,
    normalise_email,
    same_stamp,
    session_stamp_of,
)
from service.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.mailstore import ensure_special_folders
from service.persistence.tables import Domain, User
from service.persistence.types import utcnow
from service.usecases.attention import needs_action_in

if TYPE_CHECKING:  # login_throttle imports this module
    from service.usecases.login_throttle import LoginThrottle

SIGN_IN_FAILED = "The email address or password is not correct."
ADMIN_EXISTS = "An administrator already exists; sign in instead."
CURRENT_PASSWORD_WRONG = "Your current password is not correct."  # noqa: S105 (a message)
SAME_PASSWORD = "The new password is the same as the current one; choose another."  # noqa: S105 (a message)
PASSWORD_CHANGED_MEANWHILE = "Your password was changed meanwhile; sign in again."  # noqa: S105 (a message)


class SessionEnded(NotFound):
    """The session's user is gone, disabled, or changed their password since it began: sign in again."""


def _view(user: User, domain: Domain) -> UserView:
    assert user.id is not None
    return UserView(
        id=user.id, email=user.email, display_name=user.display_name, is_admin=user.is_admin, domain=domain.name
    )


async def get_or_create_domain(session: AsyncSession, name: str) -> Domain:
    domain = (await session.exec(select(Domain).where(Domain.name == name))).first()
    if domain is None:
        domain = Domain(name=name)
        session.add(domain)
        await session.flush()
    return domain


async def needs_first_admin(*, db: Database) -> bool:
    """True while the database has no user at all: the first page then offers to create one."""
    async with db.read() as session:
        count = (await session.exec(select(func.count()).select_from(User))).one()
    return count == 0


async def _insert_user(
    session: AsyncSession, *, address: str, password_hash: str, is_admin: bool, display_name: str
) -> UserView:
    if (await session.exec(select(User.id).where(User.email == address))).first() is not None:
        raise Conflict(f"A user with the address {address} already exists.")
    domain = await get_or_create_domain(session, address.split("@", 1)[1])
    assert domain.id is not None
    user = User(
        domain_id=domain.id,
        email=address,
        display_name=display_name.strip(),
        password_hash=password_hash,
        is_admin=is_admin,
    )
    session.add(user)
    await session.flush()
    assert user.id is not None
    await ensure_special_folders(session, user.id)
    return _view(user, domain)


async def _checked_hash(password: str) -> str:
    passwords.check_strength(password)
    return await asyncio.to_thread(passwords.hash_password, password)


async def add_user(
    *, db: Database, email: str, password: str, is_admin: bool = False, display_name: str = ""
) -> UserView:
    """Create a user with their special folders. Refuses a duplicate address or a weak password."""
    address = normalise_email(email)
    password_hash = await _checked_hash(password)
    async with db.write() as session:
        return await _insert_user(
            session, address=address, password_hash=password_hash, is_admin=is_admin, display_name=display_name
        )


async def create_first_admin(*, db: Database, email: str, password: str, display_name: str = "") -> Authenticated:
    """Create the first administrator; refused once any user exists."""
    if not await needs_first_admin(db=db):
        raise Conflict(ADMIN_EXISTS)
    address = normalise_email(email)
    password_hash = await _checked_hash(password)
    async with db.write() as session:
        # Checked again inside the write transaction: two browsers may race here.
        if (await session.exec(select(func.count()).select_from(User))).one():
            raise Conflict(ADMIN_EXISTS)
        admin = await _insert_user(
            session, address=address, password_hash=password_hash, is_admin=True, display_name=display_name
        )
    return _authenticated(admin, password_hash)


def _authenticated(user: UserView, password_hash: str) -> Authenticated:
    return Authenticated(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        is_admin=user.is_admin,
        domain=user.domain,
        session_stamp=session_stamp_of(password_hash),
    )


async def _locked_user(session: AsyncSession, user_id: int) -> User | None:
    """The user's row, locked until the transaction ends (PostgreSQL; SQLite writes are serialised)."""
    return (await session.exec(select(User).where(User.id == user_id).with_for_update())).first()


async def authenticate(*, db: Database, email: str, password: str) -> Authenticated:
    """Check a sign-in. Unknown address and wrong password give the same error in the same time.

    The stamp returned is that of the hash the password was checked against (or of its re-hash):
    if the password changed between the check and now, the sign-in fails instead."""
    address = email.strip().lower()
    async with db.read() as session:
        row = (
            await session.exec(select(User, Domain).join(Domain).where(User.email == address, User.is_active))
        ).first()
    user, domain = row if row is not None else (None, None)
    ok = await asyncio.to_thread(passwords.verify_password, user.password_hash if user else None, password)
    if not ok or user is None or domain is None:
        raise AuthenticationFailed(SIGN_IN_FAILED)
    assert user.id is not None
    async with db.write() as session:
        fresh = await _locked_user(session, user.id)
        if fresh is None or not fresh.is_active or fresh.password_hash != user.password_hash:
            raise AuthenticationFailed(SIGN_IN_FAILED)
        fresh.last_login_at = utcnow()
        if passwords.needs_rehash(fresh.password_hash):
            fresh.password_hash = await asyncio.to_thread(passwords.hash_password, password)
        stamp_of = fresh.password_hash
    return _authenticated(_view(user, domain), stamp_of)


async def get_user(*, db: Database, user_id: int) -> UserView:
    async with db.read() as session:
        return await _active_user(session, user_id)


async def signed_in_user(*, db: Database, user_id: int, session_stamp: object) -> tuple[UserView, int]:
    """What every page needs of its viewer, in one read: the active user and how many of their
    tasks and accounts need them to act (the header's badge).

    Raises SessionEnded when the user is gone or disabled, or when `session_stamp` (kept in the
    session at sign-in) is not the stamp of their password hash now."""
    async with db.read() as session:
        row = (await session.exec(select(User, Domain).join(Domain).where(User.id == user_id, User.is_active))).first()
        if row is None or not same_stamp(session_stamp, session_stamp_of(row[0].password_hash)):
            raise SessionEnded("This session has ended; sign in again.")
        return _view(*row), await needs_action_in(session, user_id)


async def _active_user(session: AsyncSession, user_id: int) -> UserView:
    row = (await session.exec(select(User, Domain).join(Domain).where(User.id == user_id, User.is_active))).first()
    if row is None:
        raise NotFound("This user does not exist.")
    return _view(*row)


async def list_users(*, db: Database) -> list[UserView]:
    async with db.read() as session:
        rows = (await session.exec(select(User, Domain).join(Domain).order_by(User.email))).all()
    return [_view(user, domain) for user, domain in rows]


async def find_user(*, db: Database, email: str) -> UserView:
    """The user with this address (case-insensitive); NotFound otherwise."""
    async with db.read() as session:
        row = (await session.exec(select(User, Domain).join(Domain).where(User.email == email.strip().lower()))).first()
    if row is None:
        raise NotFound(f"There is no user {email.strip()}.")
    return _view(*row)


async def _current_hash(db: Database, user_id: int) -> tuple[str, str]:
    """The active user's address and password hash; SessionEnded when they are gone or disabled."""
    async with db.read() as session:
        row = (
            await session.exec(select(User.email, User.password_hash).where(User.id == user_id, User.is_active))
        ).first()
    if row is None:
        raise SessionEnded("This session has ended; sign in again.")
    return row[0], row[1]


async def _verify_current(
    password_hash: str, password: str, *, email: str, throttle: LoginThrottle | None, client: str | None
) -> None:
    """Check the current password, counted by the login throttle like a sign-in at the user's address
    (so a stolen session cannot guess it faster than a sign-in form could)."""
    attempt = throttle.begin(address=email, client=client) if throttle is not None else None
    try:
        if attempt is not None and throttle is not None:
            await throttle.pause(attempt)
        ok = await asyncio.to_thread(passwords.verify_password, password_hash, password)
    finally:
        if attempt is not None and throttle is not None:
            throttle.finished(attempt)
    if not ok:
        raise AuthenticationFailed(CURRENT_PASSWORD_WRONG)
    if attempt is not None and throttle is not None:
        throttle.succeeded(attempt)


async def change_password(
    *,
    db: Database,
    user_id: int,
    current_password: str,
    new_password: str,
    throttle: LoginThrottle | None = None,
    client: str | None = None,
) -> str:
    """A user changes their own password; returns the new session stamp.

    The new password must meet the password rules (InvalidInput) and differ from the current one;
    the current one must be right (AuthenticationFailed; SignInThrottled past the login budget).
    Every session holding the old stamp ends at its next request: the caller re-stamps (and
    rotates) the session the change was made from."""
    passwords.check_strength(new_password)
    if new_password == current_password:
        raise InvalidInput(SAME_PASSWORD)
    email, old_hash = await _current_hash(db, user_id)
    await _verify_current(old_hash, current_password, email=email, throttle=throttle, client=client)
    new_hash = await asyncio.to_thread(passwords.hash_password, new_password)
    async with db.write() as session:
        fresh = await _locked_user(session, user_id)
        if fresh is None or not fresh.is_active:
            raise SessionEnded("This session has ended; sign in again.")
        if fresh.password_hash != old_hash:  # another session changed it after our check
            raise Conflict(PASSWORD_CHANGED_MEANWHILE)
        fresh.password_hash = new_hash
    return session_stamp_of(new_hash)
