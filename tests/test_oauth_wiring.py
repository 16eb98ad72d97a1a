"""OAuth2 sign-in wired into what signs in (issue 15): retrieval runs, the dispatcher, sending and the outbox,
against the test OAuth server, a Dovecot that checks the tokens by introspection and an aiosmtpd that does too.

What a user would see: a task or account started with "Sign in with <provider>" is pending (not run, not in
Send From) until the consent completes; then retrieval imports and sending sends; an access token the server
refuses is refreshed once and the run goes on, importing nothing twice; a revoked consent puts the task or
account in "reconnect" (the dispatcher leaves it alone, outbox entries wait instead of failing) and Reconnect
resumes both; the token endpoint being down is an ordinary failure, not "needs action".
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text, update
from sqlmodel import col, select

from service.config import Settings
from service.domain.compose import Draft
from service.domain.connection_test import ConnectionReport
from service.domain.oauth import AuthKind, CredentialStatus
from service.domain.outbox import OutboxStatus
from service.domain.retrieval import AUTH_FAILURES_BEFORE_PAUSE
from service.domain.smtp_accounts import SmtpAccountInput
from service.domain.values import Protocol, RetrievalMethod, Security
from service.errors import Conflict, FeatureDisabled, InvalidInput, TlsFailure
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import OutboxEntry, RetrievalTask, SmtpAccount
from service.persistence.types import utcnow
from service.usecases import retrieval_tasks, smtp_accounts
from service.usecases.connection_tests import SavedSmtpAccount, SavedTask, run_connection_test
from service.usecases.oauth import access_token_for, complete_authorization, forget_discovery
from service.usecases.oauth_targets import OAuthStart, OAuthStarted, begin_oauth, reconnect_oauth
from service.usecases.retrieval import imap_run, run_task
from service.usecases.retrieval.lease import claim_due
from service.usecases.retrieval_tasks import NewTask
from service.usecases.sending import list_outbox, process_due_outbox, send_from_choices, send_message
from service.usecases.users import add_user
from tests.fixtures.dovecot import MailUser
from tests.fixtures.dovecot_oauth import OAuthDovecot
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.smtp_oauth import StartSmtpOAuthServer
from tests.mail_samples import sample

PUBLIC_URL = "http://127.0.0.1:8998"


@pytest.fixture(autouse=True)
def _fresh_discovery() -> Iterator[None]:
    forget_discovery()
    yield
    forget_discovery()


@dataclass
class World:
    settings: Settings
    db: Database
    box: SecretBox
    oauth: OAuthServer
    user_id: int

    async def begin(self, kind: str, **overrides: Any) -> OAuthStarted:
        start = OAuthStart(kind=kind, provider="local", **overrides)
        return await begin_oauth(
            db=self.db,
            settings=self.settings,
            secret_box=self.box,
            user_id=self.user_id,
            start=start,
            session_binding=None,
        )

    async def consent(self, authorize_url: str, email: str) -> None:
        """The browser: consent at the provider, then the callback (the web face calls exactly this)."""
        callback = self.oauth.approve(authorize_url, email)
        params = {key: values[0] for key, values in parse_qs(urlsplit(callback).query).items()}
        await complete_authorization(
            db=self.db,
            settings=self.settings,
            secret_box=self.box,
            state=params.get("state"),
            code=params.get("code"),
            error=params.get("error"),
            session_binding=None,
        )

    async def reconnect(self, kind: str, target_id: int) -> OAuthStarted:
        return await reconnect_oauth(
            db=self.db,
            settings=self.settings,
            secret_box=self.box,
            user_id=self.user_id,
            kind=kind,
            target_id=target_id,
            session_binding=None,
        )

    async def task(self, task_id: int) -> RetrievalTask:
        async with self.db.read() as session:
            found = await session.get(RetrievalTask, task_id)
        assert found is not None
        return found

    async def account(self, account_id: int) -> SmtpAccount:
        async with self.db.read() as session:
            found = await session.get(SmtpAccount, account_id)
        assert found is not None
        return found

    async def run(self, task_id: int) -> Any:
        return await run_task(db=self.db, secret_box=self.box, settings=self.settings, task_id=task_id)

    async def claimable(self) -> list[int]:
        """What the dispatcher would claim now, with every task's time come."""
        async with self.db.write() as session:
            await session.exec(update(RetrievalTask).values(next_run_at=utcnow() - timedelta(minutes=1)))
        leases = await claim_due(self.db, owner="probe", limit=10, seconds=60)
        async with self.db.write() as session:
            await session.exec(update(RetrievalTask).values(lease_owner=None, lease_expires_at=None))
        return [lease.task_id for lease in leases]


@pytest.fixture
async def world(
    settings: Settings,
    db: Database,
    secret_box: SecretBox,
    oauth_server: OAuthServer,
    dovecot_oauth: OAuthDovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    configured = settings.model_copy(update={"public_url": PUBLIC_URL, "extra_ca_file": dovecot_oauth.cert_pem_path})
    oauth_server.allow_redirect_uri(configured.oauth_redirect_uri)
    for name, value in oauth_server.provider_env("local").items():
        monkeypatch.setenv(name, value)
    user = await add_user(db=db, email="alice@example.test", password="long enough password")
    return World(configured, db, secret_box, oauth_server, user.id)


async def _raw_rows(db: Database) -> str:
    texts: list[str] = []
    async with db.read() as session:
        for table in ("retrieval_task", "smtp_account", "oauth_state", "log_entry"):
            rows = (await session.exec(text(f"SELECT * FROM {table}"))).all()  # type: ignore[call-overload]  # noqa: S608
            texts.extend(str(value) for row in rows for value in row)
    return "\n".join(texts)


# -- retrieval ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
async def test_a_signed_in_task_imports_mail_verified_by_dovecot(
    world: World, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser, protocol: Protocol
) -> None:
    dovecot_oauth.deliver(oauth_mail_user.email, sample("first"))
    dovecot_oauth.deliver(oauth_mail_user.email, sample("second"))
    port = dovecot_oauth.imaps_port if protocol is Protocol.IMAP else dovecot_oauth.pop3s_port
    started = await world.begin(
        "retrieval",
        protocol=protocol,
        host="127.0.0.1",
        port=port,
        security=Security.SSL,
        method=RetrievalMethod.AUTOMATIC,
    )
    assert started.status == "pending"
    pending = await world.task(started.id)
    assert (pending.auth, pending.oauth_status, pending.next_run_at) == (
        AuthKind.OAUTH2,
        CredentialStatus.PENDING,
        None,
    )
    assert await world.claimable() == []  # never run before the consent

    await world.consent(started.authorize_url, oauth_mail_user.email)
    signed_in = await world.task(started.id)
    assert signed_in.oauth_status is CredentialStatus.OK
    assert signed_in.username == oauth_mail_user.email  # the address the provider reported
    assert signed_in.next_run_at is not None
    assert signed_in.next_run_at <= utcnow()

    introspections = world.oauth.requests["/introspect"]
    result = await world.run(started.id)
    assert (result.imported, result.errors) == (2, [])
    assert world.oauth.requests["/introspect"] == introspections + 1  # Dovecot checked the token
    assert (await world.run(started.id)).imported == 0


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
async def test_a_token_the_server_refuses_is_refreshed_once_and_nothing_is_imported_twice(
    world: World, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser, protocol: Protocol
) -> None:
    dovecot_oauth.deliver(oauth_mail_user.email, sample("before"))
    port = dovecot_oauth.imaps_port if protocol is Protocol.IMAP else dovecot_oauth.pop3s_port
    started = await world.begin("retrieval", protocol=protocol, host="127.0.0.1", port=port)
    await world.consent(started.authorize_url, oauth_mail_user.email)
    assert (await world.run(started.id)).imported == 1
    refreshes = sum(r.grant_type == "refresh_token" for r in world.oauth.token_requests)

    # The provider's clock passes the token's lifetime while ours still holds it fresh: Dovecot refuses it.
    world.oauth.advance(world.oauth.access_token_lifetime + 60)
    dovecot_oauth.deliver(oauth_mail_user.email, sample("after"))
    result = await world.run(started.id)
    assert (result.imported, result.errors) == (1, [])
    assert sum(r.grant_type == "refresh_token" for r in world.oauth.token_requests) == refreshes + 1
    assert (await world.task(started.id)).oauth_status is CredentialStatus.OK

    # Next run: the refreshed token is used as is (no refresh, nothing again).
    result = await world.run(started.id)
    assert (result.imported, result.errors) == (0, [])
    assert sum(r.grant_type == "refresh_token" for r in world.oauth.token_requests) == refreshes + 1


async def test_the_token_expiring_during_a_long_run_does_not_stop_it(
    world: World, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session signed in once; the token dying at the provider between batches changes nothing for
    it. The next run finds the token refused, refreshes once and imports only what is new."""
    for n in range(4):
        dovecot_oauth.deliver(oauth_mail_user.email, sample(f"long run {n}"))
    world.settings = world.settings.model_copy(update={"retrieval_batch_messages": 1})
    started = await world.begin("retrieval", protocol=Protocol.IMAP, host="127.0.0.1", port=dovecot_oauth.imaps_port)
    await world.consent(started.authorize_url, oauth_mail_user.email)
    original = imap_run.commit_batch  # type: ignore[attr-defined]

    async def commit_then_expire(*args: Any, **kwargs: Any) -> Any:
        committed = await original(*args, **kwargs)
        world.oauth.advance(world.oauth.access_token_lifetime + 60)  # the token dies mid-run
        return committed

    monkeypatch.setattr(imap_run, "commit_batch", commit_then_expire)
    result = await world.run(started.id)
    assert (result.imported, result.errors) == (4, [])
    monkeypatch.setattr(imap_run, "commit_batch", original)

    dovecot_oauth.deliver(oauth_mail_user.email, sample("after the long run"))
    result = await world.run(started.id)
    assert (result.imported, result.skipped, result.errors) == (1, 0, [])
    assert sum(r.grant_type == "refresh_token" for r in world.oauth.token_requests) == 1
    assert (await world.run(started.id)).imported == 0


async def test_a_short_lived_token_is_renewed_before_each_run(
    world: World, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser
) -> None:
    world.oauth.access_token_lifetime = 30  # inside the refresh margin: renewed before every sign-in
    started = await world.begin("retrieval", protocol=Protocol.POP3, host="127.0.0.1", port=dovecot_oauth.pop3s_port)
    await world.consent(started.authorize_url, oauth_mail_user.email)
    for n in range(3):
        dovecot_oauth.deliver(oauth_mail_user.email, sample(f"message {n}"))
        result = await world.run(started.id)
        assert (result.imported, result.errors) == (1, [])
        world.oauth.advance(31)  # the previous access token is dead at the provider
    assert sum(r.grant_type == "refresh_token" for r in world.oauth.token_requests) == 3


async def test_revoked_consent_stops_the_task_until_reconnect(
    world: World, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser
) -> None:
    started = await world.begin("retrieval", protocol=Protocol.IMAP, host="127.0.0.1", port=dovecot_oauth.imaps_port)
    await world.consent(started.authorize_url, oauth_mail_user.email)
    assert (await world.run(started.id)).errors == []
    assert await world.claimable() == [started.id]

    world.oauth.revoke_user(oauth_mail_user.email)
    result = await world.run(started.id)
    assert result.imported == 0
    assert "Reconnect" in result.errors[0]
    task = await world.task(started.id)
    assert (task.oauth_status, task.needs_action, task.paused_reason) == (CredentialStatus.RECONNECT, True, None)
    assert task.last_error
    assert "Reconnect" in task.last_error
    token_requests = len(world.oauth.token_requests)
    assert await world.claimable() == []  # no retry loop against the provider
    assert len(world.oauth.token_requests) == token_requests

    again = await world.reconnect("retrieval", started.id)
    assert again.authorize_url != started.authorize_url
    assert (await world.task(started.id)).oauth_status is CredentialStatus.RECONNECT  # until the callback
    dovecot_oauth.deliver(oauth_mail_user.email, sample("while revoked"))
    await world.consent(again.authorize_url, oauth_mail_user.email)
    task = await world.task(started.id)
    assert (task.oauth_status, task.needs_action, task.last_error) == (CredentialStatus.OK, False, None)
    assert await world.claimable() == [started.id]
    assert (await world.run(started.id)).imported == 1


async def test_token_endpoint_down_is_an_ordinary_failure(
    world: World, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.usecases.oauth.tokens.RETRY_DELAYS", (0.0, 0.0))
    started = await world.begin("retrieval", protocol=Protocol.IMAP, host="127.0.0.1", port=dovecot_oauth.imaps_port)
    await world.consent(started.authorize_url, oauth_mail_user.email)
    world.oauth.advance(world.oauth.access_token_lifetime + 60)  # the server refuses the token: a refresh is due
    world.oauth.fail_token_endpoint(times=3)
    result = await world.run(started.id)
    assert result.errors
    assert "try again later" in result.errors[0]
    task = await world.task(started.id)
    assert (task.oauth_status, task.needs_action, task.consecutive_failures) == (CredentialStatus.OK, False, 1)
    assert await world.claimable() == [started.id]  # retried by the schedule (with backoff)
    assert (await world.run(started.id)).errors == []


# -- sending ------------------------------------------------------------------------------


async def _smtp_account(world: World, smtp_oauth_server: StartSmtpOAuthServer, mailbox: str) -> tuple[Any, int]:
    server = smtp_oauth_server(mode="starttls")
    settings = world.settings.model_copy(update={"extra_ca_file": server.cert_pem_path})
    world.settings = settings
    started = await world.begin(
        "smtp", host="127.0.0.1", port=server.port, security=Security.STARTTLS, display_name="Alice", is_default=True
    )
    assert await send_from_choices(db=world.db, user_id=world.user_id) == []  # not offered while pending
    await world.consent(started.authorize_url, mailbox)
    return server, started.id


async def _send(world: World, account_id: int, subject: str) -> Any:
    draft = Draft(to=("bob@example.test",), subject=subject, text="Hello")
    return await send_message(
        db=world.db,
        secret_box=world.box,
        settings=world.settings,
        user_id=world.user_id,
        from_account_id=account_id,
        draft=draft,
    )


async def test_an_oauth_smtp_account_sends_and_waits_while_revoked(
    world: World, smtp_oauth_server: StartSmtpOAuthServer
) -> None:
    mailbox = "alice.sender@example.test"
    server, account_id = await _smtp_account(world, smtp_oauth_server, mailbox)
    choices = await send_from_choices(db=world.db, user_id=world.user_id)
    assert [(c.account_id, c.address) for c in choices] == [(account_id, mailbox)]

    assert (await _send(world, account_id, "first")).status is OutboxStatus.SENT
    assert len(server.received) == 1

    world.oauth.revoke_user(mailbox)
    waiting = await _send(world, account_id, "second")
    assert waiting.status is OutboxStatus.QUEUED  # waits, not failed
    assert "Reconnect" in waiting.detail
    account = await world.account(account_id)
    assert (account.oauth_status, account.needs_action) == (CredentialStatus.RECONNECT, True)
    token_requests = len(world.oauth.token_requests)
    later = utcnow() + timedelta(hours=30)  # past the 24 hours of retries: a waiting entry still does not fail
    results = await process_due_outbox(db=world.db, secret_box=world.box, settings=world.settings, now=later)
    assert [r.status for r in results] == [OutboxStatus.QUEUED]
    assert len(world.oauth.token_requests) == token_requests  # nothing asked of the provider while waiting
    [entry] = await list_outbox(db=world.db, user_id=world.user_id)
    assert entry.attempts == 1  # waiting spends no attempts (only the one that found the refusal)
    assert len(server.received) == 1

    again = await world.reconnect("smtp", account_id)
    await world.consent(again.authorize_url, mailbox)
    results = await process_due_outbox(
        db=world.db, secret_box=world.box, settings=world.settings, now=later + timedelta(minutes=5)
    )
    assert [r.status for r in results] == [OutboxStatus.SENT]
    assert len(server.received) == 2


async def test_an_smtp_token_the_server_refuses_is_refreshed_once(
    world: World, smtp_oauth_server: StartSmtpOAuthServer
) -> None:
    mailbox = "alice.sender@example.test"
    server, account_id = await _smtp_account(world, smtp_oauth_server, mailbox)
    world.oauth.advance(world.oauth.access_token_lifetime + 60)
    assert (await _send(world, account_id, "after expiry")).status is OutboxStatus.SENT
    assert sum(r.grant_type == "refresh_token" for r in world.oauth.token_requests) == 1
    assert len(server.received) == 1


# -- canary -------------------------------------------------------------------------------


async def test_tokens_are_never_stored_or_logged_in_clear(
    world: World,
    dovecot_oauth: OAuthDovecot,
    oauth_mail_user: MailUser,
    smtp_oauth_server: StartSmtpOAuthServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    started = await world.begin("retrieval", protocol=Protocol.IMAP, host="127.0.0.1", port=dovecot_oauth.imaps_port)
    async with world.db.write() as session:  # with "Enable debug": the transcripts are logged too
        await session.exec(update(RetrievalTask).values(enable_debug=True))
    await world.consent(started.authorize_url, oauth_mail_user.email)
    world.oauth.advance(world.oauth.access_token_lifetime + 60)  # one refused token, one refresh
    assert (await world.run(started.id)).errors == []
    mailbox = "alice.sender@example.test"
    _, account_id = await _smtp_account(world, smtp_oauth_server, mailbox)
    async with world.db.write() as session:
        await session.exec(update(SmtpAccount).values(enable_debug=True))
    world.oauth.advance(world.oauth.access_token_lifetime + 60)
    assert (await _send(world, account_id, "canary")).status is OutboxStatus.SENT
    world.oauth.revoke_user(mailbox)
    assert (await _send(world, account_id, "waits")).status is OutboxStatus.QUEUED

    tokens = _all_tokens(world.oauth)
    assert len(tokens) >= 6  # two sign-ins and two refreshes: access and refresh tokens
    stored = await _raw_rows(world.db)
    logged = caplog.text
    assert "IMAP" in stored  # the debug transcripts were logged
    assert "AUTH" in stored
    for token in tokens:
        for user in (oauth_mail_user.email, mailbox):
            for form in _forms(token, user):
                assert form not in stored
                assert form not in logged


def _forms(token: str, user: str) -> list[str]:
    """A token as it could leak: clear, base64, and inside the XOAUTH2 / OAUTHBEARER messages (RFC 7628)."""
    xoauth2 = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
    oauthbearer = f"n,a={user},\x01auth=Bearer {token}\x01\x01".encode()
    return [token] + [base64.b64encode(raw).decode() for raw in (token.encode(), xoauth2, oauthbearer)]


def _all_tokens(server: OAuthServer) -> list[str]:
    """Every token value the server ever issued (access and refresh)."""
    return list(server._tokens)


# -- Test Connection ----------------------------------------------------------------------


async def test_test_connection_signs_in_with_the_token_and_refreshes_once(
    world: World, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser, smtp_oauth_server: StartSmtpOAuthServer
) -> None:
    started = await world.begin("retrieval", protocol=Protocol.IMAP, host="127.0.0.1", port=dovecot_oauth.imaps_port)
    await world.consent(started.authorize_url, oauth_mail_user.email)
    world.oauth.advance(world.oauth.access_token_lifetime + 60)  # Dovecot refuses the stored token
    report = await _test(world, SavedTask(started.id))
    assert report.ok, report.steps
    assert [s.name for s in report.steps][-2:] == ["login", "folders"]
    assert sum(r.grant_type == "refresh_token" for r in world.oauth.token_requests) == 1

    world.oauth.revoke_user(oauth_mail_user.email)
    report = await _test(world, SavedTask(started.id))
    assert not report.ok
    assert report.steps[-1].name in {"login", "token"}
    assert (await world.task(started.id)).oauth_status is CredentialStatus.RECONNECT
    report = await _test(world, SavedTask(started.id))  # now without asking anyone
    assert [(s.name, s.ok) for s in report.steps] == [("token", False)]
    assert "Reconnect" in report.steps[0].hint

    _, account_id = await _smtp_account(world, smtp_oauth_server, "alice.sender@example.test")
    world.oauth.advance(world.oauth.access_token_lifetime + 60)
    report = await _test(world, SavedSmtpAccount(account_id))
    assert report.ok, report.steps
    assert report.steps[-1].name == "auth"


async def _test(world: World, subject: SavedTask | SavedSmtpAccount) -> ConnectionReport:
    return await run_connection_test(
        db=world.db, secret_box=world.box, settings=world.settings, user_id=world.user_id, subject=subject
    )


# -- what begin_oauth creates -------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "kind", "protocol", "server"),
    [
        ("google", "retrieval", "imap", ("imap.gmail.com", 993, Security.SSL)),
        ("google", "retrieval", "pop3", ("pop.gmail.com", 995, Security.SSL)),
        ("google", "smtp", None, ("smtp.gmail.com", 587, Security.STARTTLS)),
        ("microsoft", "retrieval", "imap", ("outlook.office365.com", 993, Security.SSL)),
        ("microsoft", "retrieval", "pop3", ("outlook.office365.com", 995, Security.SSL)),
        ("microsoft", "smtp", None, ("smtp.office365.com", 587, Security.STARTTLS)),
    ],
)
async def test_the_providers_servers_fill_a_pending_target(
    world: World, provider: str, kind: str, protocol: str | None, server: tuple[str, int, Security]
) -> None:
    world.settings = world.settings.model_copy(
        update={"oauth_google_client_id": "google-app", "oauth_microsoft_client_id": "microsoft-app"}
    )
    start = OAuthStart(kind=kind, provider=provider, protocol=Protocol(protocol) if protocol else None)
    started = await begin_oauth(
        db=world.db,
        settings=world.settings,
        secret_box=world.box,
        user_id=world.user_id,
        start=start,
        session_binding="browser",
    )
    assert started.status == "pending"
    assert urlsplit(started.authorize_url).netloc in {"accounts.google.com", "login.microsoftonline.com"}
    row = await (world.task(started.id) if kind == "retrieval" else world.account(started.id))
    assert (row.host, row.port, row.security) == server
    assert (row.auth, row.oauth_provider, row.oauth_status) == (AuthKind.OAUTH2, provider, CredentialStatus.PENDING)
    if isinstance(row, RetrievalTask):
        assert row.next_run_at is None
        assert row.password_encrypted is None


async def test_overrides_and_refusals(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUTARY_OAUTH_LOCAL_SMTP_HOST", "smtp.local.test")
    started = await world.begin(
        "smtp", security="ssl", email="Me@Example.test", username="login-name", display_name="Me", is_default=True
    )
    account = await world.account(started.id)
    assert (account.host, account.port, account.security) == ("smtp.local.test", 465, Security.SSL)
    assert (account.email_address, account.username) == ("Me@example.test", "login-name")
    with pytest.raises(Conflict):
        await world.begin("smtp", email="me@example.test")
    with pytest.raises(InvalidInput, match="POP3 server"):  # the local provider names no POP3 server
        await world.begin("retrieval", protocol="pop3")
    with pytest.raises(InvalidInput, match="IMAP or POP3"):
        await world.begin("retrieval", protocol="smtp", host="mail.example.test")
    with pytest.raises(FeatureDisabled):
        await begin_oauth(
            db=world.db,
            settings=world.settings,
            secret_box=world.box,
            user_id=world.user_id,
            start=OAuthStart(kind="retrieval", provider="nosuch", protocol=Protocol.IMAP, host="mail.example.test"),
            session_binding=None,
        )
    no_url = world.settings.model_copy(update={"public_url": ""})
    with pytest.raises(InvalidInput, match="TRIBUTARY_PUBLIC_URL"):
        await begin_oauth(
            db=world.db,
            settings=no_url,
            secret_box=world.box,
            user_id=world.user_id,
            start=OAuthStart(kind="retrieval", provider="local", protocol=Protocol.IMAP, host="mail.example.test"),
            session_binding=None,
        )
    async with world.db.read() as session:  # a sign-in that could not start leaves nothing behind
        assert (await session.exec(select(RetrievalTask))).all() == []
        assert len((await session.exec(select(SmtpAccount))).all()) == 1


# -- a fresh token refused too; the token endpoint down while sending ---------------------


async def test_a_fresh_token_refused_too_needs_reconnect(
    world: World, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser, smtp_oauth_server: StartSmtpOAuthServer
) -> None:
    """The servers refuse a token for another mailbox: after one refresh, the task or account needs
    Reconnect (no password pause, no failed message)."""
    started = await world.begin("retrieval", protocol=Protocol.IMAP, host="127.0.0.1", port=dovecot_oauth.imaps_port)
    await world.consent(started.authorize_url, oauth_mail_user.email)
    async with world.db.write() as session:
        await session.exec(update(RetrievalTask).values(username="someone.else@example.test"))

    result = await world.run(started.id)
    assert result.errors
    assert "Reconnect" in result.errors[0]
    task = await world.task(started.id)
    assert (task.oauth_status, task.needs_action, task.auth_failures) == (CredentialStatus.RECONNECT, True, 0)

    _, account_id = await _smtp_account(world, smtp_oauth_server, "alice.sender@example.test")
    async with world.db.write() as session:
        await session.exec(update(SmtpAccount).values(username="someone.else@example.test"))
    waiting = await _send(world, account_id, "to someone")
    assert waiting.status is OutboxStatus.QUEUED
    account = await world.account(account_id)
    assert (account.oauth_status, account.needs_action) == (CredentialStatus.RECONNECT, True)
    assert sum(r.grant_type == "refresh_token" for r in world.oauth.token_requests) == 2  # one each


async def test_the_token_endpoint_down_while_sending_retries_later(
    world: World, smtp_oauth_server: StartSmtpOAuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.usecases.oauth.tokens.RETRY_DELAYS", (0.0, 0.0))
    server, account_id = await _smtp_account(world, smtp_oauth_server, "alice.sender@example.test")
    world.oauth.advance(world.oauth.access_token_lifetime + 60)  # the server refuses the token: a refresh is due
    world.oauth.fail_token_endpoint(times=3, mode="drop")
    queued = await _send(world, account_id, "later")
    assert queued.status is OutboxStatus.QUEUED
    assert queued.next_attempt_at is not None
    account = await world.account(account_id)
    assert (account.oauth_status, account.needs_action) == (CredentialStatus.OK, False)
    results = await process_due_outbox(
        db=world.db, secret_box=world.box, settings=world.settings, now=queued.next_attempt_at
    )
    assert [r.status for r in results] == [OutboxStatus.SENT]
    assert len(server.received) == 1


async def test_editing_an_oauth_target_needs_no_password(world: World) -> None:
    """Edit keeps the provider's sign-in: no password asked for an account, a typed one ignored for a task."""
    account_started = await world.begin("smtp", host="smtp.example.test", port=587, security=Security.STARTTLS)
    await world.consent(account_started.authorize_url, "alice.sender@example.test")
    edited = await smtp_accounts.update_smtp_account(
        db=world.db,
        secret_box=world.box,
        user_id=world.user_id,
        account_id=account_started.id,
        account=SmtpAccountInput(
            email_address="alice.sender@example.test", host="smtp.example.test", display_name="Renamed"
        ),
    )
    assert edited.display_name == "Renamed"
    account = await world.account(account_started.id)
    assert (account.auth, account.oauth_status, account.password_encrypted) == (
        AuthKind.OAUTH2,
        CredentialStatus.OK,
        None,
    )

    task_started = await world.begin("retrieval", protocol=Protocol.IMAP, host="imap.example.test", port=993)
    await world.consent(task_started.authorize_url, "alice.reader@example.test")
    new = NewTask(
        protocol=Protocol.IMAP, host="imap.example.test", username="alice.reader@example.test", password="typed"
    )
    await retrieval_tasks.update_task(
        db=world.db, secret_box=world.box, user_id=world.user_id, task_id=task_started.id, new=new
    )
    task = await world.task(task_started.id)
    assert (task.auth, task.oauth_status, task.password_encrypted) == (AuthKind.OAUTH2, CredentialStatus.OK, None)


async def test_a_token_is_never_sent_without_verified_tls(world: World) -> None:
    """RFC 7628 section 4: OAuth2 targets need TLS with certificate verification, at creation, at edit,
    and again when a token is asked for (a row saved otherwise gets no token)."""
    with pytest.raises(InvalidInput, match="needs TLS with a verified certificate"):
        await world.begin("smtp", host="smtp.example.test", port=25, security="none")
    with pytest.raises(InvalidInput, match="needs TLS with a verified certificate"):
        await world.begin("retrieval", protocol=Protocol.IMAP, host="imap.example.test", security=Security.NONE)

    account_started = await world.begin("smtp", host="smtp.example.test", port=587, security=Security.STARTTLS)
    await world.consent(account_started.authorize_url, "alice.sender@example.test")
    for security, verify in ((Security.NONE, True), (Security.STARTTLS, False)):
        with pytest.raises(InvalidInput, match="needs TLS with a verified certificate"):
            await smtp_accounts.update_smtp_account(
                db=world.db,
                secret_box=world.box,
                user_id=world.user_id,
                account_id=account_started.id,
                account=SmtpAccountInput(
                    email_address="alice.sender@example.test",
                    host="smtp.example.test",
                    security=security,
                    verify_certificate=verify,
                ),
            )
    task_started = await world.begin("retrieval", protocol=Protocol.IMAP, host="imap.example.test", port=993)
    await world.consent(task_started.authorize_url, "alice.reader@example.test")
    for security, verify in ((Security.NONE, True), (Security.SSL, False)):
        new = NewTask(
            protocol=Protocol.IMAP,
            host="imap.example.test",
            username="alice.reader@example.test",
            password="",
            security=security,
            verify_certificate=verify,
        )
        with pytest.raises(InvalidInput, match="needs TLS with a verified certificate"):
            await retrieval_tasks.update_task(
                db=world.db, secret_box=world.box, user_id=world.user_id, task_id=task_started.id, new=new
            )
    assert (await world.account(account_started.id)).security is Security.STARTTLS
    assert (await world.task(task_started.id)).verify_certificate

    async with world.db.write() as session:  # saved around the use cases (older data, a direct edit)
        await session.exec(update(SmtpAccount).where(col(SmtpAccount.id) == account_started.id).values(security="none"))
        await session.exec(
            update(RetrievalTask).where(col(RetrievalTask.id) == task_started.id).values(verify_certificate=False)
        )
    for kind, target_id in (("smtp", account_started.id), ("retrieval", task_started.id)):
        with pytest.raises(TlsFailure, match="needs TLS with a verified certificate"):
            await access_token_for(
                db=world.db, settings=world.settings, secret_box=world.box, kind=kind, target_id=target_id
            )


async def _entry(world: World, entry_id: int) -> OutboxEntry:
    async with world.db.read() as session:
        found = await session.get(OutboxEntry, entry_id)
    assert found is not None
    return found


async def test_a_misconfigured_provider_keeps_messages_queued(
    world: World, smtp_oauth_server: StartSmtpOAuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """invalid_client (an expired client secret), an unusable discovery document, or the provider no longer
    offered: nothing was sent, so the message waits (no attempt spent, the account not "needs action")."""
    server, account_id = await _smtp_account(world, smtp_oauth_server, "alice.sender@example.test")
    world.oauth.advance(world.oauth.access_token_lifetime + 60)  # the server refuses the token: a refresh is due
    world.oauth.fail_token_endpoint(times=1, mode="invalid_client")
    queued = await _send(world, account_id, "secret expired")
    assert queued.status is OutboxStatus.QUEUED
    assert "tell your administrator" in queued.detail
    entry = await _entry(world, queued.outbox_id)
    assert (entry.attempts, entry.status) == (0, OutboxStatus.QUEUED)
    account = await world.account(account_id)
    assert (account.oauth_status, account.needs_action) == (CredentialStatus.OK, False)

    forget_discovery()
    world.oauth.discovery_missing = True
    assert queued.next_attempt_at is not None
    later = queued.next_attempt_at
    results = await process_due_outbox(db=world.db, secret_box=world.box, settings=world.settings, now=later)
    assert [r.status for r in results] == [OutboxStatus.QUEUED]
    assert (await _entry(world, queued.outbox_id)).attempts == 0

    world.oauth.discovery_missing = False
    monkeypatch.setenv("TRIBUTARY_OAUTH_PROVIDERS", "")  # the administrator stopped offering it
    assert results[0].next_attempt_at is not None
    later = results[0].next_attempt_at
    results = await process_due_outbox(db=world.db, secret_box=world.box, settings=world.settings, now=later)
    assert [r.status for r in results] == [OutboxStatus.QUEUED]
    assert "not offered on this server any more" in results[0].detail
    assert not (await world.account(account_id)).needs_action

    monkeypatch.setenv("TRIBUTARY_OAUTH_PROVIDERS", "local")  # fixed: it goes out
    assert results[0].next_attempt_at is not None
    later = results[0].next_attempt_at
    results = await process_due_outbox(db=world.db, secret_box=world.box, settings=world.settings, now=later)
    assert [r.status for r in results] == [OutboxStatus.SENT]
    assert len(server.received) == 1


async def test_invalid_client_does_not_pause_a_task_for_its_password(
    world: World, dovecot_oauth: OAuthDovecot, oauth_mail_user: MailUser
) -> None:
    started = await world.begin("retrieval", protocol=Protocol.IMAP, host="127.0.0.1", port=dovecot_oauth.imaps_port)
    await world.consent(started.authorize_url, oauth_mail_user.email)
    world.oauth.advance(world.oauth.access_token_lifetime + 60)  # the server refuses the token: a refresh is due
    for _ in range(AUTH_FAILURES_BEFORE_PAUSE + 1):
        world.oauth.fail_token_endpoint(times=1, mode="invalid_client")
        result = await world.run(started.id)
        assert result.errors
        assert "tell your administrator" in result.errors[0]
    task = await world.task(started.id)
    assert (task.auth_failures, task.paused_reason, task.needs_action) == (0, None, False)
    assert task.oauth_status is CredentialStatus.OK
    assert (await world.run(started.id)).errors == []  # the secret fixed: the next run works
