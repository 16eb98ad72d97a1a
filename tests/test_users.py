"""Users and domains: the first administrator, adding users, signing in, the domain switches."""

from __future__ import annotations

import pytest
from sqlmodel import select

from service.domain.values import SpecialUse
from service.errors import AuthenticationFailed, Conflict, InvalidInput
from service.persistence.database import Database
from service.persistence.mailstore import list_folders
from service.persistence.tables import User
from service.usecases import domains, users


async def test_first_admin_only_once(db: Database) -> None:
    assert await users.needs_first_admin(db=db)
    admin = await users.create_first_admin(db=db, email="Boss@Example.test", password="correct horse")
    assert admin.is_admin
    assert admin.email == "boss@example.test"
    assert not await users.needs_first_admin(db=db)
    with pytest.raises(Conflict, match="already exists"):
        await users.create_first_admin(db=db, email="other@example.test", password="correct horse")


async def test_new_user_has_special_folders_and_a_domain_with_features_on(db: Database) -> None:
    user = await users.add_user(db=db, email="carol@corp.example.test", password="long enough")
    async with db.read() as session:
        folders = await list_folders(session, user.id)
    assert [(f.special_use, f.path) for f in folders] == [
        (SpecialUse.INBOX, "Inbox"),
        (SpecialUse.SENT, "Sent"),
        (SpecialUse.DRAFTS, "Drafts"),
        (SpecialUse.TRASH, "Trash"),
        (SpecialUse.JUNK, "Junk"),
        (SpecialUse.OUTBOX, "Outbox"),
    ]
    [domain] = await domains.list_domains(db=db)
    assert (domain.name, domain.retrieval_enabled, domain.smtp_accounts_enabled) == ("corp.example.test", True, True)


async def test_password_is_stored_as_argon2id(db: Database) -> None:
    await users.add_user(db=db, email="dave@example.test", password="long enough")
    async with db.read() as session:
        stored = (await session.exec(select(User.password_hash))).one()
    assert stored.startswith("$argon2id$")
    assert "long enough" not in stored


async def test_sign_in(db: Database) -> None:
    await users.add_user(db=db, email="erin@example.test", password="long enough")
    signed_in = await users.authenticate(db=db, email=" ERIN@example.test ", password="long enough")
    assert signed_in.email == "erin@example.test"
    with pytest.raises(AuthenticationFailed) as wrong_password:
        await users.authenticate(db=db, email="erin@example.test", password="wrong password")
    with pytest.raises(AuthenticationFailed) as unknown_user:
        await users.authenticate(db=db, email="nobody@example.test", password="long enough")
    assert str(wrong_password.value) == str(unknown_user.value) == users.SIGN_IN_FAILED


@pytest.mark.parametrize(
    ("email", "password", "error"),
    [
        ("not-an-address", "long enough", InvalidInput),
        ("evil@example.test\r\nBcc: x@example.test", "long enough", InvalidInput),
        ("frank@example.test", "short", InvalidInput),
    ],
)
async def test_bad_input_is_refused(db: Database, email: str, password: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        await users.add_user(db=db, email=email, password=password)
    assert await users.list_users(db=db) == []


async def test_duplicate_address_is_refused(db: Database) -> None:
    await users.add_user(db=db, email="gina@example.test", password="long enough")
    with pytest.raises(Conflict):
        await users.add_user(db=db, email="GINA@example.test", password="long enough")


async def test_domain_switches(db: Database) -> None:
    changed = await domains.set_domain(db=db, name="Example.TEST.", retrieval_enabled=False)
    assert (changed.name, changed.retrieval_enabled, changed.smtp_accounts_enabled) == ("example.test", False, True)
    changed = await domains.set_domain(db=db, name="example.test", smtp_accounts_enabled=False)
    assert (changed.retrieval_enabled, changed.smtp_accounts_enabled) == (False, False)
    user = await users.add_user(db=db, email="hank@example.test", password="long enough")
    assert user.domain == "example.test"
    assert len(await domains.list_domains(db=db)) == 1
