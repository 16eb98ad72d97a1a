"""SMTP Accounts: add, edit, delete and list the external servers a user sends through
(Test Connection: `connection_tests`).

Everything but deleting is refused with FeatureDisabled while the user's domain
has SMTP Accounts turned off (deleting stays allowed: a user may always remove
their stored credentials). Passwords are encrypted with the SecretBox, are
write-only (views only say whether one is stored) and are never logged.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import func
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.domain.connection_test import ConnectionReport
from service.domain.oauth import AuthKind, require_tls
from service.domain.outbound import OutboundPolicy
from service.domain.outbox import OutboxStatus
from service.domain.smtp_accounts import SmtpAccountInput, SmtpAccountView, files_sent_itself
from service.domain.values import Protocol
from service.errors import Conflict, FeatureDisabled, InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, OutboxEntry, RetrievalTask, SmtpAccount, User
from service.persistence.types import utcnow
from service.protocols import smtp

NO_ACCOUNT = "This SMTP account does not exist."
NO_COPY_TASK = "Choose one of your IMAP retrieval tasks for the copy in the remote Sent folder."
# The form's fields that are columns of SmtpAccount (the default From is a column of User).
EDITABLE = tuple(field.name for field in dataclasses.fields(SmtpAccountInput) if field.name != "is_default")


def disabled_message(domain: Domain) -> str:
    return f"Your administrator turned off SMTP accounts for {domain.name}."


async def user_id_for_email(*, db: Database, email: str) -> int:
    """The id of the active user with this address (the CLI names users by address)."""
    async with db.read() as session:
        user_id = (
            await session.exec(select(User.id).where(User.email == email.strip().lower(), User.is_active))
        ).first()
    if user_id is None:
        raise NotFound(f"There is no user {email.strip()}.")
    return user_id


async def owner_of_smtp_account(*, db: Database, account_id: int) -> int:
    """Whose account this is (for operator commands that name an account by id only)."""
    async with db.read() as session:
        owner = (await session.exec(select(SmtpAccount.user_id).where(SmtpAccount.id == account_id))).first()
    if owner is None:
        raise NotFound(NO_ACCOUNT)
    return owner


async def user_and_domain(session: AsyncSession, user_id: int) -> tuple[User, Domain]:
    row = (await session.exec(select(User, Domain).join(Domain).where(User.id == user_id, User.is_active))).first()
    if row is None:
        raise NotFound("This user does not exist.")
    return row


async def _enabled_user(session: AsyncSession, user_id: int) -> User:
    user, domain = await user_and_domain(session, user_id)
    if not domain.smtp_accounts_enabled:
        raise FeatureDisabled(disabled_message(domain))
    return user


async def load_account(session: AsyncSession, account_id: int, user_id: int | None) -> SmtpAccount:
    """The account, if it exists and (unless user_id is None, the operator) belongs to this user."""
    account = await session.get(SmtpAccount, account_id)
    if account is None or (user_id is not None and account.user_id != user_id):
        raise NotFound(NO_ACCOUNT)
    return account


async def _owned(session: AsyncSession, user_id: int, account_id: int) -> SmtpAccount:
    return await load_account(session, account_id, user_id)


def view(account: SmtpAccount, user: User) -> SmtpAccountView:
    assert account.id is not None
    return SmtpAccountView(
        id=account.id,
        email_address=account.email_address,
        display_name=account.display_name,
        host=account.host,
        port=account.port,
        security=account.security,
        auth_required=account.auth_required,
        username=account.username,
        has_password=account.password_encrypted is not None,
        verify_certificate=account.verify_certificate,
        timeout_seconds=account.timeout_seconds,
        signature_text=account.signature_text,
        signature_html=account.signature_html,
        save_copy_in_sent=account.save_copy_in_sent,
        messages_per_minute=account.messages_per_minute,
        enable_debug=account.enable_debug,
        is_active=account.is_active,
        is_default=user.default_from_account_id == account.id,
        last_used_at=account.last_used_at,
        last_success_at=account.last_success_at,
        last_error=account.last_error,
        needs_action=account.needs_action,
        sent_copy_task=account.sent_copy_task_id,
        sent_copy_note=files_sent_itself(account.host) if account.sent_copy_task_id is not None else None,
    )


def _apply(account: SmtpAccount, settings: SmtpAccountInput, secret_box: SecretBox, password: str | None) -> None:
    for name in EDITABLE:
        setattr(account, name, getattr(settings, name))
    if account.auth is AuthKind.OAUTH2:  # signs in with the provider's token: no password to ask for or keep
        require_tls(account.security, account.verify_certificate)
        account.auth_required = True
        account.password_encrypted = None
    elif not settings.auth_required:
        account.password_encrypted = None
    elif password:
        account.password_encrypted = secret_box.encrypt(password)
    elif account.password_encrypted is None:
        raise InvalidInput("Enter the password for this SMTP account, or turn authentication off.")
    account.updated_at = utcnow()
    account.needs_action = False


async def _check_copy_task(session: AsyncSession, user_id: int, settings: SmtpAccountInput) -> None:
    """The Sent copy's task must be one of this user's IMAP retrieval tasks (another user's is
    refused in the same words as a missing one, so ids say nothing about other users)."""
    if settings.sent_copy_task_id is None:
        return
    if not 1 <= settings.sent_copy_task_id < 2**31:  # beyond any id (and PostgreSQL's integer)
        raise InvalidInput(NO_COPY_TASK)
    task = await session.get(RetrievalTask, settings.sent_copy_task_id)
    if task is None or task.user_id != user_id or task.protocol is not Protocol.IMAP:
        raise InvalidInput(NO_COPY_TASK)


async def sent_copy_choices(*, db: Database, user_id: int) -> list[tuple[int, str, str]]:
    """The user's IMAP retrieval tasks a Sent copy may go to: (id, "name (username on host)", host)."""
    async with db.read() as session:
        tasks = (
            await session.exec(
                select(RetrievalTask)
                .where(RetrievalTask.user_id == user_id, RetrievalTask.protocol == Protocol.IMAP)
                .order_by(col(RetrievalTask.id))
            )
        ).all()
    return [
        (task.id or 0, f"{task.name or task.username} ({task.username} on {task.host})", task.host) for task in tasks
    ]


async def _check_unique(session: AsyncSession, user_id: int, address: str, account_id: int | None) -> None:
    query = select(SmtpAccount.id).where(
        SmtpAccount.user_id == user_id, func.lower(SmtpAccount.email_address) == address.lower()
    )
    if account_id is not None:
        query = query.where(SmtpAccount.id != account_id)
    if (await session.exec(query)).first() is not None:
        raise Conflict(f"You already have an SMTP account for {address}.")


def _set_default(user: User, account_id: int, wanted: bool) -> None:
    if wanted:
        user.default_from_account_id = account_id
    elif user.default_from_account_id == account_id:
        user.default_from_account_id = None


async def list_smtp_accounts(*, db: Database, user_id: int, even_if_turned_off: bool = False) -> list[SmtpAccountView]:
    """The user's accounts. FeatureDisabled while the domain's switch is off, unless
    `even_if_turned_off` (the settings card still lists them so the user can delete them)."""
    async with db.read() as session:
        if even_if_turned_off:
            user, _domain = await user_and_domain(session, user_id)
        else:
            user = await _enabled_user(session, user_id)
        accounts = (await session.exec(select(SmtpAccount).where(SmtpAccount.user_id == user_id))).all()
    return [view(account, user) for account in sorted(accounts, key=lambda a: a.id or 0)]


async def get_smtp_account(*, db: Database, user_id: int, account_id: int) -> SmtpAccountView:
    async with db.read() as session:
        user = await _enabled_user(session, user_id)
        return view(await _owned(session, user_id, account_id), user)


def limit_message(count: int, limit: int) -> str:
    """Why no account can be added: the limit, and how many the user has when that is more."""
    allowed = f"You can have at most {limit} SMTP account{'s' if limit != 1 else ''}"
    if count > limit:
        return f"{allowed}, and you have {count}: delete {count - limit + 1} to add another."
    return f"{allowed}." if limit == 0 else f"{allowed}: delete one to add another."


async def _require_room(session: AsyncSession, domain: Domain, user_id: int) -> None:
    """Conflict (`limit_message`) when the user has as many accounts as the domain allows, or more."""
    limit = domain.max_smtp_accounts_per_user
    if limit is None:
        return
    count = (
        await session.exec(select(func.count()).select_from(SmtpAccount).where(SmtpAccount.user_id == user_id))
    ).one()
    if count >= limit:
        raise Conflict(limit_message(count, limit))


async def check_room_for_account(*, db: Database, user_id: int) -> None:
    """What "New SMTP Account" checks before showing its form: SMTP Accounts on (FeatureDisabled)
    and the limit not reached (Conflict), so nobody fills in a form that cannot be saved."""
    async with db.read() as session:
        _, domain = await user_and_domain(session, user_id)
        if not domain.smtp_accounts_enabled:
            raise FeatureDisabled(disabled_message(domain))
        await _require_room(session, domain, user_id)


async def add_smtp_account(
    *, db: Database, secret_box: SecretBox, user_id: int, account: SmtpAccountInput, password: str | None = None
) -> SmtpAccountView:
    """Create an account (the "New SMTP Account" form). The password is required when it authenticates."""
    settings = account.checked()
    async with db.write() as session:
        user, domain = await user_and_domain(session, user_id)
        if not domain.smtp_accounts_enabled:
            raise FeatureDisabled(disabled_message(domain))
        await _require_room(session, domain, user_id)
        await _check_unique(session, user_id, settings.email_address, None)
        await _check_copy_task(session, user_id, settings)
        row = SmtpAccount(user_id=user_id, email_address=settings.email_address, host=settings.host, port=0)
        _apply(row, settings, secret_box, password)
        session.add(row)
        await session.flush()
        assert row.id is not None
        _set_default(user, row.id, settings.is_default)
        session.add(user)
        return view(row, user)


async def update_smtp_account(
    *,
    db: Database,
    secret_box: SecretBox,
    user_id: int,
    account_id: int,
    account: SmtpAccountInput,
    password: str | None = None,
) -> SmtpAccountView:
    """Replace an account's settings. An empty or missing password keeps the stored one."""
    settings = account.checked()
    async with db.write() as session:
        user = await _enabled_user(session, user_id)
        row = await _owned(session, user_id, account_id)
        await _check_unique(session, user_id, settings.email_address, account_id)
        await _check_copy_task(session, user_id, settings)
        _apply(row, settings, secret_box, password)
        _set_default(user, account_id, settings.is_default)
        session.add_all([row, user])
        return view(row, user)


async def delete_smtp_account(*, db: Database, user_id: int, account_id: int) -> None:
    """Delete an account and its stored password; its messages still waiting in the outbox fail."""
    async with db.write() as session:
        user, _domain = await user_and_domain(session, user_id)
        row = await _owned(session, user_id, account_id)
        await session.exec(
            update(OutboxEntry)
            .where(col(OutboxEntry.smtp_account_id) == account_id, col(OutboxEntry.status) == OutboxStatus.QUEUED)
            .values(
                status=OutboxStatus.FAILED,
                last_error="The SMTP account this message was to go through was deleted.",
                next_attempt_at=None,
                updated_at=utcnow(),
            )
        )
        _set_default(user, account_id, False)
        session.add(user)
        await session.delete(row)


def endpoint_for(
    account: SmtpAccount,
    *,
    secret_box: SecretBox,
    settings: Settings,
    policy: OutboundPolicy,
    password: str | None = None,
) -> smtp.SmtpEndpoint:
    """How to reach an account's server (and which addresses the outbound policy lets it reach);
    `password` overrides the stored one (Test Connection before saving)."""
    if password is None and account.auth_required and account.password_encrypted:
        password = secret_box.decrypt(account.password_encrypted)
    return smtp.SmtpEndpoint(
        host=account.host,
        port=account.port,
        security=account.security,
        verify_certificate=account.verify_certificate,
        auth_required=account.auth_required,
        username=account.username,
        password=password or "",
        timeout_seconds=account.timeout_seconds,
        extra_ca_file=settings.extra_ca_file,
        policy=policy,
    )


# Shorthands for Test Connection, which is `connection_tests.run_connection_test` (the rate limit and the
# outbound policy live there, so every caller gets them). Imported late: connection_tests imports this module.


async def probe_smtp_account(
    *, db: Database, secret_box: SecretBox, settings: Settings, user_id: int, account_id: int
) -> ConnectionReport:
    """Test Connection for a saved account: resolve, connect, TLS, EHLO, STARTTLS, AUTH, each timed."""
    from service.usecases.connection_tests import SavedSmtpAccount, run_connection_test

    subject = SavedSmtpAccount(account_id)
    return await run_connection_test(db=db, secret_box=secret_box, settings=settings, user_id=user_id, subject=subject)


async def probe_smtp_settings(
    *,
    db: Database,
    secret_box: SecretBox,
    settings: Settings,
    user_id: int,
    account: SmtpAccountInput,
    password: str | None = None,
    account_id: int | None = None,
) -> ConnectionReport:
    """Test Connection from the form, before saving; for an existing account an empty password means the stored one."""
    from service.usecases.connection_tests import SmtpSettings, run_connection_test

    subject = SmtpSettings(account, password=password, account_id=account_id)
    return await run_connection_test(db=db, secret_box=secret_box, settings=settings, user_id=user_id, subject=subject)
