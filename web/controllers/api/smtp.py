"""/api/v1/smtp-accounts: the "SMTP Accounts" card as JSON (service.usecases.smtp_accounts).

GET    /smtp-accounts                 list
POST   /smtp-accounts                 create (201)
POST   /smtp-accounts/test            Test Connection before saving
GET    /smtp-accounts/{id}            one
PUT    /smtp-accounts/{id}            replace every setting (no password or "": keep the stored one)
DELETE /smtp-accounts/{id}            delete (204)
POST   /smtp-accounts/{id}/test       Test Connection for the saved account
POST   /smtp-accounts/{id}/reconnect  an account signing in with a provider: a fresh consent URL (api.oauth)

"sent_copy_task" names one of the user's IMAP retrieval tasks (the same mailbox): each message sent is
also appended, marked read, to that mailbox's Sent folder; "sent_copy_note" says why that is skipped for
providers that file sent mail themselves (Gmail, Microsoft 365). Another user's task is refused (400).

"auth" and "status" say how an account signs in: "password" (status "ok"), or "oauth2" with "pending",
"ok" or "reconnect" (the provider refused to renew the sign-in: needs_action, and Reconnect).
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.config import Settings
from service.domain.oauth import AuthKind, CredentialStatus, TargetKind
from service.domain.smtp_accounts import SmtpAccountInput, SmtpAccountView
from service.domain.users import UserView
from service.domain.values import Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import smtp_accounts
from service.usecases.connection_tests import SavedSmtpAccount, SmtpSettings, run_connection_test
from service.usecases.oauth_targets import SignIn
from web.controllers.api.contract import reads, writes
from web.controllers.api.oauth import auth_and_status, sign_ins
from web.controllers.api.schemas import ConnectionReportOut, Id, IdParam, Number


class SmtpAccountIn(msgspec.Struct):
    """An SMTP account's settings. `password` is write-only; `port` null: the security's default."""

    email_address: str
    host: str
    port: Number | None = None
    security: Security = Security.STARTTLS
    display_name: str = ""
    auth_required: bool = True
    username: str = ""
    password: str | None = None
    verify_certificate: bool = True
    timeout_seconds: Number = 30
    signature_text: str = ""
    signature_html: str = ""
    save_copy_in_sent: bool = True
    messages_per_minute: Number | None = None
    enable_debug: bool = False
    is_active: bool = True
    is_default: bool = False
    sent_copy_task: Id | None = None  # an IMAP retrieval task of the same mailbox: copies go to its Sent folder

    def settings(self) -> SmtpAccountInput:
        fields = msgspec.structs.asdict(self)
        fields.pop("password")
        fields["sent_copy_task_id"] = fields.pop("sent_copy_task")
        return SmtpAccountInput(**fields)


class SmtpTestIn(SmtpAccountIn):
    """Settings to test before saving; with `account_id`, an empty password means the stored one."""

    account_id: Id | None = None


class SmtpAccountOut(msgspec.Struct):
    """An SMTP account. The password is never returned: `has_password` says whether one is stored."""

    id: int
    email_address: str
    display_name: str
    host: str
    port: int
    security: Security
    auth_required: bool
    username: str
    has_password: bool
    verify_certificate: bool
    timeout_seconds: int
    signature_text: str
    signature_html: str
    save_copy_in_sent: bool
    messages_per_minute: int | None
    enable_debug: bool
    is_active: bool
    is_default: bool
    last_used_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    needs_action: bool
    sent_copy_task: int | None  # the retrieval task whose remote Sent folder gets a copy of each message
    sent_copy_note: str | None  # why no copy is appended although a task is chosen (Gmail, Microsoft 365)
    auth: AuthKind  # "password", or "oauth2": signs in with a provider (POST /oauth/start)
    status: CredentialStatus  # oauth2: "pending" (consent not given yet), "ok", "reconnect"; password: "ok"

    @classmethod
    def from_view(cls, v: SmtpAccountView, sign_in: SignIn | None) -> SmtpAccountOut:
        auth, status = auth_and_status(sign_in)
        names = [f.name for f in msgspec.structs.fields(cls) if f.name not in ("auth", "status")]
        return cls(**{name: getattr(v, name) for name in names}, auth=auth, status=status)


async def _out(db: Database, user_id: int, account: SmtpAccountView) -> SmtpAccountOut:
    return SmtpAccountOut.from_view(account, (await sign_ins(db, TargetKind.SMTP, user_id)).get(account.id))


class SmtpAccountsController(Controller):
    path = "/smtp-accounts"
    tags = ["SMTP accounts"]

    @get("/", **reads(403))
    async def list_accounts(
        self, db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> list[SmtpAccountOut]:
        accounts = await smtp_accounts.list_smtp_accounts(db=db, user_id=user.id)
        states = await sign_ins(db, TargetKind.SMTP, user.id)
        return [SmtpAccountOut.from_view(a, states.get(a.id)) for a in accounts]

    @post("/", **writes(400, 409, body=True))
    async def create_account(
        self,
        data: JSONBody[SmtpAccountIn],
        db: NamedDependency[Database],
        secret_box: NamedDependency[SecretBox],
        user: NamedDependency[UserView],
    ) -> SmtpAccountOut:
        saved = await smtp_accounts.add_smtp_account(
            db=db, secret_box=secret_box, user_id=user.id, account=data.settings(), password=data.password or None
        )
        return await _out(db, user.id, saved)

    @post("/test", status_code=200, **writes(400, 404, 429, body=True))
    async def test_unsaved(
        self,
        data: JSONBody[SmtpTestIn],
        db: NamedDependency[Database],
        secret_box: NamedDependency[SecretBox],
        settings: NamedDependency[Settings],
        user: NamedDependency[UserView],
    ) -> ConnectionReportOut:
        """Test Connection with settings as typed (with `account_id`: edits to that account)."""
        settings_in = SmtpAccountIn(**{k: v for k, v in msgspec.structs.asdict(data).items() if k != "account_id"})
        subject = SmtpSettings(settings_in.settings(), password=data.password or None, account_id=data.account_id)
        report = await run_connection_test(
            db=db, secret_box=secret_box, settings=settings, user_id=user.id, subject=subject
        )
        return ConnectionReportOut.from_report(report)

    @get("/{account_id:int}", **reads(400, 403, 404))
    async def get_account(
        self, account_id: FromPath[IdParam], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> SmtpAccountOut:
        account = await smtp_accounts.get_smtp_account(db=db, user_id=user.id, account_id=account_id)
        return await _out(db, user.id, account)

    @put("/{account_id:int}", **writes(400, 404, 409, body=True))
    async def update_account(
        self,
        account_id: FromPath[IdParam],
        data: JSONBody[SmtpAccountIn],
        db: NamedDependency[Database],
        secret_box: NamedDependency[SecretBox],
        user: NamedDependency[UserView],
    ) -> SmtpAccountOut:
        saved = await smtp_accounts.update_smtp_account(
            db=db,
            secret_box=secret_box,
            user_id=user.id,
            account_id=account_id,
            account=data.settings(),
            password=data.password or None,
        )
        return await _out(db, user.id, saved)

    @delete("/{account_id:int}", **writes(400, 404))
    async def delete_account(
        self, account_id: FromPath[IdParam], db: NamedDependency[Database], user: NamedDependency[UserView]
    ) -> None:
        await smtp_accounts.delete_smtp_account(db=db, user_id=user.id, account_id=account_id)

    @post("/{account_id:int}/test", status_code=200, **writes(400, 404, 429))
    async def test_saved(
        self,
        account_id: FromPath[IdParam],
        db: NamedDependency[Database],
        secret_box: NamedDependency[SecretBox],
        settings: NamedDependency[Settings],
        user: NamedDependency[UserView],
    ) -> ConnectionReportOut:
        report = await run_connection_test(
            db=db, secret_box=secret_box, settings=settings, user_id=user.id, subject=SavedSmtpAccount(account_id)
        )
        return ConnectionReportOut.from_report(report)
