"""Retrieval tasks and SMTP accounts that sign in with an OAuth2 provider (issue 15): create one, reconnect one.

`begin_oauth` is "Sign in with Google" (or Microsoft, or a configured provider)
on "New Retrieval Task" / "New SMTP Account", the API's `POST /api/v1/oauth/start`
and `tributary retrieval|smtp add --oauth-provider`. It creates the task or
account in `oauth_status = pending` with `auth = oauth2` (server, port and
security from the provider's ServerDefaults unless overridden), not scheduled
and not offered in Send From, and returns the provider's consent URL
(service.usecases.oauth.start_authorization: code flow with PKCE, state bound
to the user and the browser session, or to nobody for the CLI).

`reconnect_oauth` is "Reconnect" on a row in needs action (and `tributary
retrieval|smtp reconnect`): a fresh consent URL for the same target; its status
stays reconnect (or pending) until the callback completes.

Completing is the callback's `service.usecases.oauth.complete_authorization`
alone: it stores the tokens, sets the status ok, fills the address the
provider reported, and makes an automatic retrieval task due at once. No
further step is needed here (the faces call it directly).

`sign_in_states` gives "auth" and "status" per task or account for the lists.

Both starts are refused (FeatureDisabled, one sentence) while the user's domain
has "OAuth2 sign-in" turned off on the Administration page; `oauth_offered`
tells the faces whether to show the provider buttons at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.config import Settings
from service.domain.compose import check_header_text, parse_address
from service.domain.import_choices import check_initial, check_patterns
from service.domain.oauth import AuthKind, CredentialStatus, ServerDefaults, TargetKind, require_tls
from service.domain.smtp_accounts import check_host
from service.domain.values import FolderTransfer, Protocol, RetrievalMethod, Security, default_port
from service.errors import Conflict, FeatureDisabled, InvalidInput, NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, RetrievalTask, SmtpAccount, User
from service.usecases.domains import oauth_disabled_message
from service.usecases.oauth.targets import load_target, provider_named, target_kind
from service.usecases.retrieval_tasks import disabled_message as retrieval_disabled
from service.usecases.retrieval_tasks import limit_message
from service.usecases.smtp_accounts import disabled_message as smtp_disabled

E = TypeVar("E", bound=Enum)


@dataclass(frozen=True, slots=True)
class OAuthStart:
    """What "Sign in with <provider>" starts from. None (or "") means the provider's default."""

    kind: str  # "retrieval" | "smtp"
    provider: str
    protocol: Protocol | None = None  # retrieval only: imap | pop3
    host: str | None = None
    port: int | None = None
    security: Security | None = None
    username: str | None = None  # default: the address the provider reports
    email: str | None = None  # smtp: the From address (default: the address the provider reports)
    display_name: str = ""
    name: str = ""
    folder_transfer: FolderTransfer = FolderTransfer.SUBFOLDERS
    destination_folder: str | None = None
    method: RetrievalMethod = RetrievalMethod.AUTOMATIC
    is_default: bool = False  # smtp: the default Send From address once signed in
    # retrieval only: the task's options, as on New Retrieval Task
    apply_filters: bool = True
    push: bool = True  # IMAP: Push new mail (IMAP IDLE)
    leave_on_server: bool = True  # POP3
    delete_after_days: int | None = None  # POP3
    enable_debug: bool = False
    # retrieval only: what to import (service.domain.import_choices), as on New Retrieval Task
    initial: str = "all"
    include_folders: Sequence[str] = ()  # IMAP
    exclude_folders: Sequence[str] = ()  # IMAP


@dataclass(frozen=True, slots=True)
class OAuthStarted:
    """A target waiting for its consent: where to send the browser."""

    id: int
    status: str
    authorize_url: str


@dataclass(frozen=True, slots=True)
class SignIn:
    """How a task or account signs in, for the lists: "password" | "oauth2", and "pending" | "ok" | "reconnect"."""

    auth: str
    status: str


def _clean(value: str | None, what: str) -> str:
    text = (value or "").strip()
    if any(c in text for c in "\r\n\0"):
        raise InvalidInput(f"The {what} cannot contain line breaks.")
    return text


def _server(
    start: OAuthStart, protocol: str, provider_label: str, fallback: ServerDefaults | None
) -> tuple[str, int, Security]:
    """Host, port and security: the overrides, else the provider's defaults for this protocol."""
    host = start.host or (fallback.host if fallback else None)
    if not host:
        raise InvalidInput(f"{provider_label} has no {protocol.upper()} server set up: enter the server address.")
    chosen = None if not start.security else _choice(Security, start.security, "Choose a security mode.")
    security = chosen or (fallback.security if fallback else Security.SSL)
    if start.port is not None and not 1 <= start.port <= 65535:
        raise InvalidInput("The port must be a number from 1 to 65535.")
    if start.port is not None:
        port = start.port
    elif fallback is not None and chosen in (None, fallback.security) and host == fallback.host:
        port = fallback.port
    else:
        port = default_port(protocol, security)
    require_tls(security, verify_certificate=True)
    return check_host(host), port, security


def _choice(kind: type[E], value: object, message: str) -> E:
    """`value` as the enum `kind` (the faces may pass the enum or its string), else InvalidInput."""
    try:
        return kind(value)
    except ValueError:
        raise InvalidInput(message) from None


async def _domain_of(session: AsyncSession, user_id: int) -> tuple[User, Domain]:
    row = (await session.exec(select(User, Domain).join(Domain).where(User.id == user_id))).first()
    if row is None:
        raise NotFound("This user does not exist.")
    return row[0], row[1]


def _require_oauth(domain: Domain) -> None:
    """The domain's "OAuth2 sign-in" switch (Administration): off refuses new sign-ins."""
    if not domain.oauth_enabled:
        raise FeatureDisabled(oauth_disabled_message(domain.name))


async def oauth_offered(*, db: Database, user_id: int) -> bool:
    """Whether the user's domain lets them sign in with a provider (the faces show the buttons only then)."""
    async with db.read() as session:
        _, domain = await _domain_of(session, user_id)
    return domain.oauth_enabled


async def _pending_task(
    db: Database, user_id: int, start: OAuthStart, environ: Mapping[str, str] | None, settings: Settings
) -> int:
    provider = provider_named(settings, environ, start.provider)
    protocol = _choice(Protocol, start.protocol, "Choose IMAP or POP3 for the retrieval task.")
    method = _choice(RetrievalMethod, start.method, "The retrieval method is automatic or manual.")
    transfer = _choice(FolderTransfer, start.folder_transfer, "Choose how remote folders are added.")
    host, port, security = _server(start, protocol.value, provider.label, provider.server(protocol))
    name = _clean(start.name, "name")
    destination = (_clean(start.destination_folder, "destination folder")).strip("/ ") or None
    initial = check_initial(start.initial)
    imap = protocol is Protocol.IMAP
    include = check_patterns(start.include_folders) if imap else []
    exclude = check_patterns(start.exclude_folders) if imap else []
    async with db.write() as session:
        _, domain = await _domain_of(session, user_id)
        if not domain.retrieval_enabled:
            raise FeatureDisabled(retrieval_disabled(domain.name))
        _require_oauth(domain)
        if domain.max_tasks_per_user is not None:
            count = (
                await session.exec(
                    select(func.count()).select_from(RetrievalTask).where(RetrievalTask.user_id == user_id)
                )
            ).one()
            if count >= domain.max_tasks_per_user:
                raise InvalidInput(limit_message(count, domain.max_tasks_per_user))
        task = RetrievalTask(
            user_id=user_id,
            name=name,
            protocol=protocol,
            host=host,
            port=port,
            security=security,
            username=_clean(start.username, "username"),
            password_encrypted=None,
            auth=AuthKind.OAUTH2,
            oauth_provider=provider.name,
            oauth_status=CredentialStatus.PENDING,
            method=method,
            folder_transfer=transfer,
            destination_folder=destination,
            apply_filters=start.apply_filters,
            push=start.push and protocol is Protocol.IMAP,
            leave_on_server=start.leave_on_server,
            delete_after_days=start.delete_after_days,
            enable_debug=start.enable_debug,
            initial=initial,
            include_folders=json.dumps(include, ensure_ascii=False),
            exclude_folders=json.dumps(exclude, ensure_ascii=False),
            next_run_at=None,  # runs once the sign-in completes (complete_authorization schedules it)
        )
        session.add(task)
        await session.flush()
        assert task.id is not None
        return task.id


async def _pending_account(
    db: Database, user_id: int, start: OAuthStart, environ: Mapping[str, str] | None, settings: Settings
) -> int:
    provider = provider_named(settings, environ, start.provider)
    host, port, security = _server(start, "smtp", provider.label, provider.smtp)
    # The same rules as "New SMTP Account": an address in ASCII form, header-safe names.
    email = parse_address(start.email, "email address") if start.email else ""
    display_name = " ".join(check_header_text(start.display_name, "display name").split())
    username = check_header_text(_clean(start.username, "username"), "username")
    async with db.write() as session:
        user, domain = await _domain_of(session, user_id)
        if not domain.smtp_accounts_enabled:
            raise FeatureDisabled(smtp_disabled(domain))
        _require_oauth(domain)
        accounts = (await session.exec(select(SmtpAccount).where(SmtpAccount.user_id == user_id))).all()
        limit = domain.max_smtp_accounts_per_user
        if limit is not None and len(accounts) >= limit:
            raise Conflict(f"You can have at most {limit} SMTP account{'s' if limit != 1 else ''}.")
        if email and any(a.email_address.lower() == email.lower() for a in accounts):
            raise Conflict(f"You already have an SMTP account for {email}.")
        account = SmtpAccount(
            user_id=user_id,
            display_name=display_name,
            email_address=email,
            host=host,
            port=port,
            security=security,
            auth_required=True,
            username=username,
            auth=AuthKind.OAUTH2,
            oauth_provider=provider.name,
            oauth_status=CredentialStatus.PENDING,
        )
        session.add(account)
        await session.flush()
        assert account.id is not None
        if start.is_default:
            user.default_from_account_id = account.id
            session.add(user)
        return account.id


async def _discard(db: Database, kind: TargetKind, target_id: int) -> None:
    """Remove a pending target whose sign-in could not even start (nothing would ever complete it)."""
    async with db.write() as session:
        try:
            row = await load_target(session, kind, target_id, None)
        except NotFound:
            return
        if row.oauth_status is CredentialStatus.PENDING:
            if isinstance(row, SmtpAccount):
                user = await session.get(User, row.user_id)
                if user is not None and user.default_from_account_id == row.id:
                    user.default_from_account_id = None
                    session.add(user)
            await session.delete(row)


async def begin_oauth(
    *,
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    user_id: int,
    start: OAuthStart,
    session_binding: str | None,
    environ: Mapping[str, str] | None = None,
) -> OAuthStarted:
    """Create the pending task or account and return the provider's consent URL.

    Raises InvalidInput (bad overrides, no server known, no TRIBUTARY_PUBLIC_URL), FeatureDisabled
    (the domain turned the feature off, or the provider is not configured), Conflict (SMTP address
    taken, limit reached), ServerUnavailable / ConnectionNotAllowed (the provider's discovery);
    on any of them nothing stays saved.
    """
    from service.usecases.oauth import start_authorization  # httpx and authlib: only to start a sign-in

    kind = target_kind(start.kind)
    if kind is TargetKind.RETRIEVAL:
        target_id = await _pending_task(db, user_id, start, environ, settings)
    else:
        target_id = await _pending_account(db, user_id, start, environ, settings)
    try:
        url = await start_authorization(
            db=db,
            settings=settings,
            secret_box=secret_box,
            user_id=user_id,
            kind=kind.value,
            target_id=target_id,
            session_binding=session_binding,
            environ=environ,
        )
    except BaseException:
        await _discard(db, kind, target_id)
        raise
    return OAuthStarted(id=target_id, status=CredentialStatus.PENDING.value, authorize_url=url)


async def reconnect_oauth(
    *,
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    user_id: int | None,
    kind: str,
    target_id: int,
    session_binding: str | None,
    environ: Mapping[str, str] | None = None,
) -> OAuthStarted:
    """A fresh consent URL for a task or account that signs in with a provider ("Reconnect").

    `user_id` None is the operator (the CLI): any target, started as its owner. The status is
    unchanged until the callback completes. Raises NotFound, InvalidInput (a password target),
    FeatureDisabled (the domain turned OAuth2 sign-in off, or the provider is not configured).
    """
    from service.usecases.oauth import start_authorization  # httpx and authlib: only to start a sign-in

    which = target_kind(kind)
    async with db.read() as session:
        row = await load_target(session, which, target_id, user_id)
        owner, status = row.user_id, row.oauth_status
        if row.auth is not AuthKind.OAUTH2:
            raise InvalidInput("This one signs in with a password: there is nothing to reconnect.")
        _require_oauth((await _domain_of(session, owner))[1])
    url = await start_authorization(
        db=db,
        settings=settings,
        secret_box=secret_box,
        user_id=owner,
        kind=which.value,
        target_id=target_id,
        session_binding=session_binding,
        environ=environ,
    )
    return OAuthStarted(id=target_id, status=status.value, authorize_url=url)


async def sign_in_states(*, db: Database, kind: str, user_id: int) -> dict[int, SignIn]:
    """Every task's or account's sign-in method and status, by id, for a user."""
    table = RetrievalTask if target_kind(kind) is TargetKind.RETRIEVAL else SmtpAccount
    async with db.read() as session:
        rows = (
            await session.exec(select(table.id, table.auth, table.oauth_status).where(col(table.user_id) == user_id))
        ).all()
    return {
        row_id: SignIn(AuthKind(auth).value, CredentialStatus(status).value)
        for row_id, auth, status in rows
        if row_id is not None
    }
