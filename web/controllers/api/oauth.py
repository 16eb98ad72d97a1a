"""OAuth2 sign-in through the API (issue 15; service.usecases.oauth_targets).

POST /oauth/start                         a retrieval task or SMTP account that signs in with a provider:
                                          created pending (201), with the consent URL to open in a browser
POST /retrieval-tasks/{id}/reconnect      a fresh consent URL for a task ("Reconnect")
POST /smtp-accounts/{id}/reconnect        the same for an SMTP account

The browser that opens `authorize_url` returns to {TRIBUTARY_PUBLIC_URL}/oauth/callback; the state
is bound to the session that called (support.oauth_binding), so it must be the same browser
session, signed in. Tokens are never returned: the task and account resources show only "auth"
("password" | "oauth2") and "status" ("pending" | "ok" | "reconnect").
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.config import Settings
from service.domain.oauth import AuthKind, CredentialStatus, TargetKind
from service.domain.users import UserView
from service.domain.values import FolderTransfer, Protocol, RetrievalMethod, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases.oauth_targets import (
    OAuthStart,
    OAuthStarted,
    SignIn,
    begin_oauth,
    reconnect_oauth,
    sign_in_states,
)
from web.controllers.api.contract import writes
from web.controllers.api.schemas import IdParam, Number
from web.support.oauth_binding import session_binding

AnyRequest = Request[Any, Any, Any]


class OAuthStartIn(msgspec.Struct):
    """What to create. `kind` "retrieval" (with `protocol`, IMAP by default) or "smtp"; `server`, `port`,
    `security`, `username` and `email` override the provider's defaults (null: the provider's, and the
    address it reports)."""

    provider: str
    kind: TargetKind
    protocol: Protocol | None = None
    server: str | None = None
    port: Number | None = None
    security: Security | None = None
    username: str | None = None
    email: str | None = None
    display_name: str = ""
    name: str = ""
    folder_transfer: FolderTransfer = FolderTransfer.SUBFOLDERS
    destination_folder: str | None = None
    method: RetrievalMethod = RetrievalMethod.AUTOMATIC
    is_default: bool = False
    initial: str = "all"  # retrieval: what to import, as POST /retrieval-tasks (service.domain.import_choices)
    include_folders: list[str] = msgspec.field(default_factory=list)
    exclude_folders: list[str] = msgspec.field(default_factory=list)

    def start(self) -> OAuthStart:
        retrieval = self.kind is TargetKind.RETRIEVAL
        return OAuthStart(
            kind=self.kind.value,
            provider=self.provider,
            protocol=(self.protocol or Protocol.IMAP) if retrieval else None,
            host=self.server or None,
            port=self.port,
            security=self.security,
            username=self.username or None,
            email=self.email or None,
            display_name=self.display_name,
            name=self.name,
            folder_transfer=self.folder_transfer,
            destination_folder=self.destination_folder,
            method=self.method,
            is_default=self.is_default,
            initial=self.initial,
            include_folders=self.include_folders,
            exclude_folders=self.exclude_folders,
        )


class OAuthStartedOut(msgspec.Struct):
    """The task or account (pending until the browser returns from the provider) and the consent URL to open."""

    id: int
    status: CredentialStatus
    authorize_url: str

    @classmethod
    def of(cls, started: OAuthStarted) -> OAuthStartedOut:
        return cls(started.id, CredentialStatus(started.status), started.authorize_url)


def auth_and_status(sign_in: SignIn | None) -> tuple[AuthKind, CredentialStatus]:
    """The "auth" and "status" fields of a task or account resource."""
    if sign_in is None:
        return AuthKind.PASSWORD, CredentialStatus.OK
    return AuthKind(sign_in.auth), CredentialStatus(sign_in.status)


async def sign_ins(db: Database, kind: TargetKind, user_id: int) -> dict[int, SignIn]:
    """How each of the user's tasks (or accounts) signs in, by id."""
    return await sign_in_states(db=db, kind=kind.value, user_id=user_id)


@post("/oauth/start", tags=["OAuth2 sign-in"], status_code=201, **writes(400, 403, 409, 502, body=True))
async def start(
    data: JSONBody[OAuthStartIn],
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    settings: NamedDependency[Settings],
    user: NamedDependency[UserView],
) -> OAuthStartedOut:
    """Create a retrieval task or SMTP account that signs in with `provider`, and return the provider's
    consent URL. 403: the provider is not configured, or the feature is turned off; 502: the provider
    could not be reached."""
    started = await begin_oauth(
        db=db,
        settings=settings,
        secret_box=secret_box,
        user_id=user.id,
        start=data.start(),
        session_binding=session_binding(request),
    )
    return OAuthStartedOut.of(started)


async def _reconnect(
    request: AnyRequest,
    kind: TargetKind,
    target_id: int,
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    user: UserView,
) -> OAuthStartedOut:
    started = await reconnect_oauth(
        db=db,
        settings=settings,
        secret_box=secret_box,
        user_id=user.id,
        kind=kind.value,
        target_id=target_id,
        session_binding=session_binding(request),
    )
    return OAuthStartedOut.of(started)


@post(
    "/retrieval-tasks/{task_id:int}/reconnect",
    tags=["Retrieval tasks"],
    status_code=200,
    **writes(400, 403, 404, 502),
)
async def reconnect_task(
    task_id: FromPath[IdParam],
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    settings: NamedDependency[Settings],
    user: NamedDependency[UserView],
) -> OAuthStartedOut:
    """Reconnect: a fresh consent URL for a task that signs in with a provider (400 for a password task)."""
    return await _reconnect(request, TargetKind.RETRIEVAL, task_id, db, settings, secret_box, user)


@post(
    "/smtp-accounts/{account_id:int}/reconnect",
    tags=["SMTP accounts"],
    status_code=200,
    **writes(400, 403, 404, 502),
)
async def reconnect_smtp(
    account_id: FromPath[IdParam],
    request: AnyRequest,
    db: NamedDependency[Database],
    secret_box: NamedDependency[SecretBox],
    settings: NamedDependency[Settings],
    user: NamedDependency[UserView],
) -> OAuthStartedOut:
    """Reconnect: a fresh consent URL for an SMTP account that signs in with a provider."""
    return await _reconnect(request, TargetKind.SMTP, account_id, db, settings, secret_box, user)


ROUTES = [start, reconnect_task, reconnect_smtp]
