"""Tributary's own users: the first administrator, adding users, signing in.

A user's domain is the part of their address after the @; it is created with
both features switched on the first time a user of it is added.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.domain import passwords
from service.domain.users import UserView, normalise_email
from service.errors import AuthenticationFailed, Conflict, NotFound
from service.persistence.database import Database
from service.persistence.mailstore import ensure_special_folders
from service.persistence.tables import Domain, User
from service.persistence.types import utcnow
from service.usecases.attention import needs_action_in

SIGN_IN_FAILED = "The email address or password is not correct."
ADMIN_EXISTS = "An administrator already exists; sign in instead."


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


async def create_first_admin(*, db: Database, email: str, password: str, display_name: str = "") -> UserView:
    """Create the first administrator; refused once any user exists."""
    if not await needs_first_admin(db=db):
        raise Conflict(ADMIN_EXISTS)
    address = normalise_email(email)
    password_hash = await _checked_hash(password)
    async with db.write() as session:
        # Checked again inside the write transaction: two browsers may race here.
        if (await session.exec(select(func.count()).select_from(User))).one():
            raise Conflict(ADMIN_EXISTS)
        return await _insert_user(
            session, address=address, password_hash=password_hash, is_admin=True, display_name=display_name
        )


async def authenticate(*, db: Database, email: str, password: str) -> UserView:
    """Check a sign-in. Unknown address and wrong password give the same error in the same time."""
    address = email.strip().lower()
    async with db.read() as session:
        row = (
            await session.exec(select(User, Domain).join(Domain).where(User.email == address, User.is_active))
        ).first()
    user, domain = row if row is not None else (None, None)
    ok = await asyncio.to_thread(passwords.verify_password, user.password_hash if user else None, password)
    if not ok or user is None or domain is None:
        raise AuthenticationFailed(SIGN_IN_FAILED)
    async with db.write() as session:
        fresh = await session.get(User, user.id)
        if fresh is not None:
            fresh.last_login_at = utcnow()
            if passwords.needs_rehash(fresh.password_hash):
                fresh.password_hash = await asyncio.to_thread(passwords.hash_password, password)
    return _view(user, domain)


async def get_user(*, db: Database, user_id: int) -> UserView:
    async with db.read() as session:
        return await _active_user(session, user_id)


async def signed_in_user(*, db: Database, user_id: int) -> tuple[UserView, int]:
    """What every page needs of its viewer, in one read: the active user and how many of their
    tasks and accounts need them to act (the header's badge)."""
    async with db.read() as session:
        return await _active_user(session, user_id), await needs_action_in(session, user_id)


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
