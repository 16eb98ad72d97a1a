"""OAuth2 sign-in (issue 15): the authorization code flow with PKCE and the token refresh, against the
local authorization server of tests/fixtures/oauth_server.py, on SQLite and PostgreSQL.

What a user would see: a completed sign-in saves the task or account under the
reported address with its tokens encrypted; a replayed, foreign or expired
state or a refused consent saves nothing and says one sentence; access tokens
are renewed before they expire (rotated refresh tokens kept); a revoked consent
asks for Reconnect; a flaky token endpoint is retried and is not "needs action";
the outbound policy covers the provider's endpoints.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text, update
from sqlmodel import select

from service.config import Settings
from service.domain.oauth import AuthKind, CredentialStatus
from service.domain.values import Protocol, Security
from service.errors import (
    ConnectionNotAllowed,
    CredentialsRejected,
    NeedsReconnect,
    OAuthDenied,
    OAuthFailed,
    OAuthStateInvalid,
    ProviderMisconfigured,
    ServerUnavailable,
)
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.persistence.tables import Domain, OAuthState, RetrievalTask, SmtpAccount
from service.persistence.types import utcnow
from service.usecases.oauth import (
    access_token_for,
    complete_authorization,
    forget_discovery,
    start_authorization,
)
from service.usecases.oauth import tokens as tokens_module
from service.usecases.users import add_user
from tests.fixtures.oauth_server import OAuthServer

PUBLIC_URL = "http://127.0.0.1:8999"
MAILBOX = "alice.mail@example.test"


@pytest.fixture(autouse=True)
def _fresh_discovery() -> Iterator[None]:
    forget_discovery()
    yield
    forget_discovery()


@dataclass
class Env:
    """One test's world: settings pointing at the OAuth server, its environment, a user."""

    settings: Settings
    db: Database
    box: SecretBox
    server: OAuthServer
    environ: dict[str, str]
    user_id: int

    async def pending(self, kind: str, username: str = "") -> int:
        """A task or account waiting for its sign-in, as the faces create it."""
        async with self.db.write() as session:
            row: RetrievalTask | SmtpAccount
            if kind == "retrieval":
                row = RetrievalTask(
                    user_id=self.user_id,
                    protocol=Protocol.IMAP,
                    host="imap.example.test",
                    port=993,
                    username=username,
                    auth=AuthKind.OAUTH2,
                    oauth_provider="local",
                    oauth_status=CredentialStatus.PENDING,
                )
            else:
                row = SmtpAccount(
                    user_id=self.user_id,
                    email_address="",
                    username=username,
                    host="smtp.example.test",
                    port=587,
                    security=Security.STARTTLS,
                    auth=AuthKind.OAUTH2,
                    oauth_provider="local",
                    oauth_status=CredentialStatus.PENDING,
                )
            session.add(row)
            await session.flush()
            assert row.id is not None
            return row.id

    async def start(self, kind: str, target_id: int, binding: str | None = "session-A", **kw: Any) -> str:
        return await start_authorization(
            db=self.db,
            settings=kw.pop("settings", self.settings),
            secret_box=self.box,
            user_id=self.user_id,
            kind=kind,
            target_id=target_id,
            session_binding=binding,
            environ=self.environ,
            **kw,
        )

    async def complete(self, callback: str, binding: str | None = "session-A", **kw: Any) -> Any:
        params = {key: values[0] for key, values in parse_qs(urlsplit(callback).query).items()}
        return await complete_authorization(
            db=self.db,
            settings=kw.pop("settings", self.settings),
            secret_box=self.box,
            state=params.get("state"),
            code=params.get("code"),
            error=params.get("error"),
            session_binding=binding,
            environ=self.environ,
            **kw,
        )

    async def token(self, kind: str, target_id: int, **kw: Any) -> str:
        return await access_token_for(
            db=self.db,
            settings=kw.pop("settings", self.settings),
            secret_box=self.box,
            kind=kind,
            target_id=target_id,
            environ=self.environ,
            **kw,
        )

    async def row(self, kind: str, target_id: int) -> RetrievalTask | SmtpAccount:
        found: RetrievalTask | SmtpAccount | None
        async with self.db.read() as session:
            if kind == "retrieval":
                found = await session.get(RetrievalTask, target_id)
            else:
                found = await session.get(SmtpAccount, target_id)
        assert found is not None
        return found

    async def signed_in(self, kind: str = "retrieval") -> int:
        target_id = await self.pending(kind)
        await self.complete(self.server.approve(await self.start(kind, target_id), MAILBOX))
        return target_id


@pytest.fixture
async def env(settings: Settings, db: Database, secret_box: SecretBox, oauth_server: OAuthServer) -> Env:
    configured = settings.model_copy(update={"public_url": PUBLIC_URL})
    oauth_server.allow_redirect_uri(configured.oauth_redirect_uri)
    user = await add_user(db=db, email="alice@example.test", password="long enough password")
    return Env(configured, db, secret_box, oauth_server, oauth_server.provider_env("local"), user.id)


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def _raw_rows(db: Database) -> str:
    """Every column of the accounts and sign-in tables as the database holds them, as one string."""
    texts: list[str] = []
    async with db.read() as session:
        for table in ("retrieval_task", "smtp_account", "oauth_state"):
            query = text(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
            for row in (await session.exec(query)).all():  # type: ignore[call-overload]
                texts.extend(str(value) for value in row)
    return "\n".join(texts)


# -- the code flow ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["retrieval", "smtp"])
async def test_sign_in_saves_the_address_and_encrypted_tokens(env: Env, kind: str) -> None:
    target_id = await env.pending(kind)
    url = await env.start(kind, target_id)
    sent = _query(url)
    assert url.startswith(env.server.url("/authorize?"))
    assert sent["code_challenge_method"] == "S256"
    assert sent["redirect_uri"] == f"{PUBLIC_URL}/oauth/callback"
    assert "code_verifier" not in sent
    assert "login_hint" not in sent  # nothing known yet

    done = await env.complete(env.server.approve(url, MAILBOX))
    assert (done.kind, done.target_id, done.email) == (kind, target_id, MAILBOX)

    row = await env.row(kind, target_id)
    assert row.oauth_status is CredentialStatus.OK
    assert not row.needs_action
    assert row.username == MAILBOX
    if isinstance(row, SmtpAccount):
        assert row.email_address == MAILBOX
    assert row.oauth_access_token_encrypted is not None
    assert row.oauth_refresh_token_encrypted is not None
    access = env.box.decrypt(row.oauth_access_token_encrypted)
    refresh = env.box.decrypt(row.oauth_refresh_token_encrypted)
    assert env.server.token_alive(access)
    assert env.server.token_alive(refresh)
    assert row.oauth_expires_at is not None
    assert timedelta(minutes=59) < row.oauth_expires_at - utcnow() <= timedelta(hours=1)
    # At rest: neither token, nor the state, nor the PKCE verifier in clear.
    raw = await _raw_rows(env.db)
    assert access not in raw
    assert refresh not in raw
    assert sent["state"] not in raw
    assert env.server.token_requests[-1].grant_type == "authorization_code"
    # The stored token is what the mail servers get, without asking the provider again.
    before = env.server.requests["/token"]
    assert await env.token(kind, target_id) == access
    assert env.server.requests["/token"] == before


async def test_a_replayed_state_is_refused_and_changes_nothing(env: Env) -> None:
    target_id = await env.pending("retrieval")
    callback = env.server.approve(await env.start("retrieval", target_id), MAILBOX)
    await env.complete(callback)
    stored = (await env.row("retrieval", target_id)).oauth_access_token_encrypted

    with pytest.raises(OAuthStateInvalid, match="not valid any more"):
        await env.complete(callback)
    assert (await env.row("retrieval", target_id)).oauth_access_token_encrypted == stored


async def test_two_racing_callbacks_with_one_state_complete_once(env: Env) -> None:
    target_id = await env.pending("smtp")
    callback = env.server.approve(await env.start("smtp", target_id), MAILBOX)
    results = await asyncio.gather(env.complete(callback), env.complete(callback), return_exceptions=True)
    assert sum(isinstance(result, OAuthStateInvalid) for result in results) == 1
    assert sum(not isinstance(result, BaseException) for result in results) == 1


async def test_another_sessions_state_is_refused_and_saves_nothing(env: Env) -> None:
    target_id = await env.pending("retrieval")
    callback = env.server.approve(await env.start("retrieval", target_id, binding="session-A"), MAILBOX)
    for other in ("session-B", None):
        with pytest.raises(OAuthStateInvalid):
            await env.complete(callback, binding=other)
    row = await env.row("retrieval", target_id)
    assert row.oauth_status is CredentialStatus.PENDING
    assert row.oauth_access_token_encrypted is None
    assert row.username == ""
    # The foreign callbacks did not burn the state: the browser that started the flow still completes it.
    assert (await env.complete(callback, binding="session-A")).email == MAILBOX


async def test_a_cli_started_flow_completes_in_any_browser(env: Env) -> None:
    """The CLI prints authorize_url; the browser that follows it need not be signed in: the state binds it."""
    target_id = await env.pending("smtp")
    callback = env.server.approve(await env.start("smtp", target_id, binding=None), MAILBOX)
    assert (await env.complete(callback, binding=None)).target_id == target_id
    assert (await env.row("smtp", target_id)).oauth_status is CredentialStatus.OK


async def test_an_expired_state_is_refused(env: Env) -> None:
    target_id = await env.pending("retrieval")
    callback = env.server.approve(await env.start("retrieval", target_id), MAILBOX)
    later = utcnow() + timedelta(minutes=10, seconds=1)
    with pytest.raises(OAuthStateInvalid):
        await env.complete(callback, clock=lambda: later)
    row = await env.row("retrieval", target_id)
    assert row.oauth_status is CredentialStatus.PENDING
    assert row.oauth_access_token_encrypted is None
    assert env.server.requests["/token"] == 0  # refused before any token request


async def test_refused_consent_saves_nothing(env: Env) -> None:
    target_id = await env.pending("smtp")
    callback = env.server.deny(await env.start("smtp", target_id))
    with pytest.raises(OAuthDenied) as denied:
        await env.complete(callback)
    assert str(denied.value) == "Sign-in with Local Test Mail was cancelled: nothing was saved."
    assert (denied.value.kind, denied.value.target_id) == ("smtp", target_id)
    row = await env.row("smtp", target_id)
    assert row.oauth_status is CredentialStatus.PENDING
    assert row.oauth_access_token_encrypted is None
    with pytest.raises(OAuthStateInvalid):  # the flow is over: its state is spent
        await env.complete(callback)


async def test_a_bad_code_is_one_sentence_and_saves_nothing(env: Env) -> None:
    target_id = await env.pending("retrieval")
    callback = env.server.approve(await env.start("retrieval", target_id), MAILBOX)
    forged = callback.replace("code=", "code=x")
    with pytest.raises(OAuthFailed, match=r"did not accept the sign-in \(invalid_grant\)"):
        await env.complete(forged)
    assert (await env.row("retrieval", target_id)).oauth_access_token_encrypted is None


async def test_reconnect_as_another_mailbox_is_refused(env: Env) -> None:
    target_id = await env.signed_in("retrieval")
    async with env.db.write() as session:
        row = await session.get(RetrievalTask, target_id)
        assert row is not None
        row.oauth_status = CredentialStatus.RECONNECT
        session.add(row)
    url = await env.start("retrieval", target_id)
    assert _query(url)["login_hint"] == MAILBOX
    with pytest.raises(OAuthFailed, match=r"You signed in as bob@example\.test, but this retrieval task is for"):
        await env.complete(env.server.approve(url, "bob@example.test"))
    assert (await env.row("retrieval", target_id)).oauth_status is CredentialStatus.RECONNECT


async def test_start_refuses_a_password_target_and_a_missing_public_url(env: Env) -> None:
    target_id = await env.pending("retrieval")
    with pytest.raises(Exception, match="TRIBUTARY_PUBLIC_URL"):
        await env.start("retrieval", target_id, settings=env.settings.model_copy(update={"public_url": ""}))
    async with env.db.write() as session:
        row = await session.get(RetrievalTask, target_id)
        assert row is not None
        row.auth = AuthKind.PASSWORD
        session.add(row)
    with pytest.raises(Exception, match="signs in with a password"):
        await env.start("retrieval", target_id)


# -- refresh ------------------------------------------------------------------------------


async def test_refresh_before_expiry_stores_the_rotated_refresh_token(env: Env) -> None:
    env.server.access_token_lifetime = 30  # under the one-minute margin: due for renewal at once
    target_id = await env.signed_in("smtp")
    first = await env.row("smtp", target_id)
    assert first.oauth_refresh_token_encrypted is not None
    assert first.oauth_access_token_encrypted is not None
    old_refresh = env.box.decrypt(first.oauth_refresh_token_encrypted)
    old_access = env.box.decrypt(first.oauth_access_token_encrypted)

    env.server.access_token_lifetime = 3600
    access = await env.token("smtp", target_id)
    assert access != old_access
    assert env.server.token_requests[-1].grant_type == "refresh_token"
    row = await env.row("smtp", target_id)
    assert row.oauth_refresh_token_encrypted is not None
    new_refresh = env.box.decrypt(row.oauth_refresh_token_encrypted)
    assert new_refresh != old_refresh
    assert not env.server.token_alive(old_refresh)  # rotated: the old one is spent
    assert env.server.token_alive(new_refresh)
    assert env.server.token_alive(access)
    assert row.oauth_status is CredentialStatus.OK
    # Fresh now: the next call uses it without a token request.
    requests = env.server.requests["/token"]
    assert await env.token("smtp", target_id) == access
    assert env.server.requests["/token"] == requests


async def test_expiry_by_our_clock_triggers_the_refresh(env: Env) -> None:
    target_id = await env.signed_in("retrieval")
    stored = await env.row("retrieval", target_id)
    assert stored.oauth_expires_at is not None
    expires_at = stored.oauth_expires_at
    almost = expires_at - timedelta(seconds=61)
    first = await env.token("retrieval", target_id, clock=lambda: almost)
    assert env.server.token_requests[-1].grant_type == "authorization_code"  # still fresh: no refresh
    soon = expires_at - timedelta(seconds=59)
    assert await env.token("retrieval", target_id, clock=lambda: soon) != first
    assert env.server.token_requests[-1].grant_type == "refresh_token"


async def test_force_refresh_after_a_server_refused_the_token(env: Env) -> None:
    target_id = await env.signed_in("retrieval")
    old = await env.token("retrieval", target_id)
    env.server.advance(3700)  # the server's clock: it now refuses the token we still think fresh
    assert not env.server.token_alive(old)
    new = await env.token("retrieval", target_id, force_refresh=True)
    assert new != old
    assert env.server.token_alive(new)


async def test_concurrent_callers_share_one_refresh(env: Env) -> None:
    """Three runs needing a token at once: one refresh (a second one with the rotated-away refresh token
    would be refused as invalid_grant), and all three get the same new token."""
    env.server.access_token_lifetime = 30  # due for renewal
    target_id = await env.signed_in("smtp")
    env.server.access_token_lifetime = 3600
    before = env.server.requests["/token"]
    tokens = await asyncio.gather(*(env.token("smtp", target_id) for _ in range(3)))
    assert len(set(tokens)) == 1
    assert env.server.requests["/token"] == before + 1
    row = await env.row("smtp", target_id)
    assert row.oauth_status is CredentialStatus.OK
    assert not row.needs_action


def test_a_refresh_lock_left_alive_by_another_event_loop_is_never_shared() -> None:
    """CI found this: a lock bound to an earlier `asyncio.run`'s loop (kept alive by a traceback) was handed
    to the next loop's callers, which failed with "bound to a different event loop"."""

    async def contend() -> asyncio.Lock:
        lock = tokens_module.refresh_lock("smtp", 7)
        async with lock:  # a second waiter makes the lock create a future, which binds it to this loop
            waiter = asyncio.ensure_future(lock.acquire())
            await asyncio.sleep(0)
        await waiter
        lock.release()
        return lock

    kept_alive = asyncio.run(contend())
    assert asyncio.run(contend()) is not kept_alive


async def test_revoked_consent_needs_reconnect(env: Env) -> None:
    target_id = await env.signed_in("retrieval")
    assert env.server.revoke_user(MAILBOX) == 2
    with pytest.raises(NeedsReconnect, match="use Reconnect to sign in again"):
        await env.token("retrieval", target_id, force_refresh=True)
    row = await env.row("retrieval", target_id)
    assert row.oauth_status is CredentialStatus.RECONNECT
    assert row.needs_action
    assert row.last_error is not None
    assert "Local Test Mail no longer accepts" in row.last_error
    # No retry loop against the provider: later calls stop before any request.
    requests = env.server.requests["/token"]
    with pytest.raises(NeedsReconnect):
        await env.token("retrieval", target_id, force_refresh=True)
    assert env.server.requests["/token"] == requests

    # Reconnect: the consent again, and everything is back.
    await env.complete(env.server.approve(await env.start("retrieval", target_id), MAILBOX))
    row = await env.row("retrieval", target_id)
    assert row.oauth_status is CredentialStatus.OK
    assert not row.needs_action
    assert row.last_error is None
    assert env.server.token_alive(await env.token("retrieval", target_id))


@pytest.mark.parametrize("mode", ["500", "drop"])
async def test_token_endpoint_failing_twice_then_answering(env: Env, mode: Any) -> None:
    target_id = await env.signed_in("smtp")
    env.server.fail_token_endpoint(2, mode)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    before = env.server.requests["/token"]
    access = await env.token("smtp", target_id, force_refresh=True, sleep=sleep)
    assert env.server.token_alive(access)
    assert slept == [1.0, 4.0]
    assert env.server.requests["/token"] == before + 3
    row = await env.row("smtp", target_id)
    assert row.oauth_status is CredentialStatus.OK
    assert not row.needs_action


async def test_token_endpoint_down_is_not_needs_action(env: Env) -> None:
    target_id = await env.signed_in("retrieval")
    env.server.fail_token_endpoint(10, "500")
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    with pytest.raises(ServerUnavailable, match="could not be reached"):
        await env.token("retrieval", target_id, force_refresh=True, sleep=sleep)
    assert len(slept) == 2
    row = await env.row("retrieval", target_id)
    assert row.oauth_status is CredentialStatus.OK
    assert not row.needs_action
    assert row.last_error is None


async def test_a_pending_sign_in_has_no_token(env: Env) -> None:
    target_id = await env.pending("retrieval")
    with pytest.raises(NeedsReconnect, match="not finished"):
        await env.token("retrieval", target_id)


# -- the outbound policy --------------------------------------------------------------------


async def test_outbound_policy_covers_the_provider_endpoints(env: Env) -> None:
    target_id = await env.signed_in("smtp")
    strict = env.settings.model_copy(update={"outbound_allow": ""})
    before = env.server.requests["/token"]
    # The discovery document is cached from the sign-in: this is the token endpoint itself.
    with pytest.raises(ConnectionNotAllowed, match="not allowed by your administrator"):
        await env.token("smtp", target_id, force_refresh=True, settings=strict)
    assert env.server.requests["/token"] == before
    assert (await env.row("smtp", target_id)).oauth_status is CredentialStatus.OK

    # Discovery too, and the start refuses before storing any state.
    forget_discovery()
    other = await env.pending("smtp")
    with pytest.raises(ConnectionNotAllowed):
        await env.start("smtp", other, settings=strict)
    async with env.db.read() as session:
        assert len((await session.exec(select(OAuthState))).all()) == 1  # only the first sign-in's

    # The domain's own allow list is merged with the setting's.
    async with env.db.write() as session:
        domain = (await session.exec(select(Domain))).one()
        domain.allowed_hosts = "127.0.0.1"
        session.add(domain)
    assert env.server.token_alive(await env.token("smtp", target_id, force_refresh=True, settings=strict))


async def test_explicit_endpoints_work_without_discovery(env: Env) -> None:
    server = env.server
    env.environ = {
        "TRIBUTARY_OAUTH_PROVIDERS": "local",
        "TRIBUTARY_OAUTH_LOCAL_AUTHORIZE_URL": server.url("/authorize"),
        "TRIBUTARY_OAUTH_LOCAL_TOKEN_URL": server.url("/token"),
        "TRIBUTARY_OAUTH_LOCAL_USERINFO_URL": server.url("/userinfo"),
        "TRIBUTARY_OAUTH_LOCAL_CLIENT_ID": server.client.client_id,
        "TRIBUTARY_OAUTH_LOCAL_CLIENT_SECRET": server.client.client_secret,
        "TRIBUTARY_OAUTH_LOCAL_SCOPES": "openid email offline_access mail",
    }
    target_id = await env.signed_in("retrieval")
    assert (await env.row("retrieval", target_id)).username == MAILBOX
    assert server.requests["/.well-known/openid-configuration"] == 0


async def test_tokens_never_reach_the_logs(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """Every logger at DEBUG (authlib, httpx, httpcore, ours) through a sign-in, a refresh and a revocation."""
    caplog.set_level(logging.DEBUG)
    env.server.access_token_lifetime = 30
    target_id = await env.pending("smtp")
    url = await env.start("smtp", target_id)
    callback = env.server.approve(url, MAILBOX)
    await env.complete(callback)
    first = await env.row("smtp", target_id)
    assert first.oauth_refresh_token_encrypted is not None
    secrets_seen = {
        _query(callback)["code"],
        _query(url)["state"],
        env.box.decrypt(first.oauth_refresh_token_encrypted),
        await env.token("smtp", target_id),  # refreshed: lifetime under the margin
        env.server.client.client_secret,
    }
    row = await env.row("smtp", target_id)
    assert row.oauth_refresh_token_encrypted is not None
    secrets_seen.add(env.box.decrypt(row.oauth_refresh_token_encrypted))
    env.server.revoke_user(MAILBOX)
    with pytest.raises(NeedsReconnect):
        await env.token("smtp", target_id, force_refresh=True)
    assert caplog.records  # the loggers did speak
    for secret in secrets_seen:
        assert secret not in caplog.text


async def test_a_refresh_sends_the_providers_scope(env: Env) -> None:
    """RFC 6749 6 makes scope optional on refresh; Microsoft's v2 endpoint needs it in practice."""
    target_id = await env.signed_in("smtp")
    await env.token("smtp", target_id, force_refresh=True)
    request = env.server.token_requests[-1]
    assert request.grant_type == "refresh_token"
    assert request.scope == env.environ["TRIBUTARY_OAUTH_LOCAL_SCOPES"]


async def test_an_answer_that_is_not_json_is_retried_then_unavailable(env: Env) -> None:
    """A 200 page that is not JSON (a proxy's) is transient: retried, then ServerUnavailable, status kept."""
    target_id = await env.signed_in("smtp")
    env.server.fail_token_endpoint(3, "not_json")
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    with pytest.raises(ServerUnavailable, match="could not be reached"):
        await env.token("smtp", target_id, force_refresh=True, sleep=sleep)
    assert slept == [1.0, 4.0]
    row = await env.row("smtp", target_id)
    assert (row.oauth_status, row.needs_action, row.last_error) == (CredentialStatus.OK, False, None)
    env.server.fail_token_endpoint(1, "not_json")
    assert env.server.token_alive(await env.token("smtp", target_id, force_refresh=True, sleep=sleep))


async def test_invalid_client_is_for_the_administrator_not_the_user(env: Env) -> None:
    """An expired client secret (invalid_client, RFC 6749 5.2) is not the user's sign-in failing."""
    target_id = await env.signed_in("retrieval")
    env.server.fail_token_endpoint(1, "invalid_client")
    with pytest.raises(ProviderMisconfigured, match="tell your administrator") as refused:
        await env.token("retrieval", target_id, force_refresh=True)
    assert not isinstance(refused.value, CredentialsRejected)
    assert env.server.requests["/token"] == 2  # the code exchange, one refresh: not retried
    row = await env.row("retrieval", target_id)
    assert (row.oauth_status, row.needs_action, row.last_error) == (CredentialStatus.OK, False, None)


async def test_a_missing_discovery_document_is_for_the_administrator(env: Env) -> None:
    target_id = await env.signed_in("smtp")
    forget_discovery()
    env.server.discovery_missing = True
    with pytest.raises(ProviderMisconfigured, match=r"discovery document is unusable: .*tell your administrator"):
        await env.token("smtp", target_id, force_refresh=True)
    row = await env.row("smtp", target_id)
    assert (row.oauth_status, row.needs_action) == (CredentialStatus.OK, False)


async def test_a_task_still_signs_in_when_another_provider_is_misconfigured(env: Env) -> None:
    target_id = await env.signed_in("smtp")
    env.environ["TRIBUTARY_OAUTH_PROVIDERS"] = "local,broken"
    env.environ["TRIBUTARY_OAUTH_BROKEN_ISSUER"] = "http://idp.example.com"  # not https: refused
    env.environ["TRIBUTARY_OAUTH_BROKEN_CLIENT_ID"] = "app"
    assert env.server.token_alive(await env.token("smtp", target_id, force_refresh=True))


async def test_a_bogus_state_takes_no_write_transaction(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The callback needs no sign-in: unknown states are refused from a read transaction, so a flood of
    them cannot hold off writers (a write is BEGIN IMMEDIATE on SQLite)."""
    target_id = await env.pending("retrieval")
    url = await env.start("retrieval", target_id)
    writes: list[int] = []
    real_write = env.db.write

    def counting_write(*args: Any, **kwargs: Any) -> Any:
        writes.append(1)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(env.db, "write", counting_write)
    for bogus in ("nosuchstate", "another-one"):
        with pytest.raises(OAuthStateInvalid):
            await complete_authorization(
                db=env.db,
                settings=env.settings,
                secret_box=env.box,
                state=bogus,
                code="code",
                error=None,
                session_binding="session-A",
                environ=env.environ,
            )
    with pytest.raises(OAuthStateInvalid):  # a real state from another browser session: refused unwritten too
        await env.complete(env.server.approve(url, MAILBOX), binding="session-B")
    assert writes == []
    await env.complete(env.server.approve(url, MAILBOX))  # still usable by its own session
    assert (await env.row("retrieval", target_id)).oauth_status is CredentialStatus.OK


async def test_a_re_encrypted_refresh_token_is_not_a_rotated_one(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """`secrets rotate` re-encrypts the stored refresh token while a refresh is refused as invalid_grant:
    that is no rotation by another process, so the stale access token is not handed out."""
    target_id = await env.signed_in("retrieval")
    env.server.revoke_user(MAILBOX)
    real = tokens_module._refresh_with_retries

    async def rotate_keys_meanwhile(*args: Any, **kwargs: Any) -> Any:
        async with env.db.write() as session:
            row = await session.get(RetrievalTask, target_id)
            assert row is not None
            assert row.oauth_refresh_token_encrypted is not None
            row.oauth_refresh_token_encrypted = env.box.encrypt(env.box.decrypt(row.oauth_refresh_token_encrypted))
            session.add(row)
        return await real(*args, **kwargs)

    monkeypatch.setattr(tokens_module, "_refresh_with_retries", rotate_keys_meanwhile)
    with pytest.raises(NeedsReconnect):
        await env.token("retrieval", target_id, force_refresh=True)
    assert (await env.row("retrieval", target_id)).oauth_status is CredentialStatus.RECONNECT


async def test_reconnect_without_a_new_refresh_token_drops_the_dead_one(env: Env) -> None:
    target_id = await env.signed_in("smtp")
    env.server.revoke_user(MAILBOX)
    with pytest.raises(NeedsReconnect):
        await env.token("smtp", target_id, force_refresh=True)
    env.server.issue_refresh_tokens = False
    await env.complete(env.server.approve(await env.start("smtp", target_id), MAILBOX))
    row = await env.row("smtp", target_id)
    assert (row.oauth_status, row.oauth_refresh_token_encrypted) == (CredentialStatus.OK, None)
    with pytest.raises(NeedsReconnect):  # when the access token is due, Reconnect is asked at once
        await env.token("smtp", target_id, force_refresh=True)
    assert env.server.token_requests[-1].grant_type == "authorization_code"  # no refresh with the dead token


async def test_a_pending_target_given_its_mailbox_must_sign_in_as_it(env: Env) -> None:
    target_id = await env.pending("retrieval", username="other.box@example.test")
    url = await env.start("retrieval", target_id)
    with pytest.raises(OAuthFailed, match=r"for other\.box@example\.test: sign in as other\.box@example\.test"):
        await env.complete(env.server.approve(url, MAILBOX))
    row = await env.row("retrieval", target_id)
    assert (row.oauth_status, row.oauth_access_token_encrypted) == (CredentialStatus.PENDING, None)


async def test_the_address_filled_in_is_not_one_the_user_has_already(env: Env) -> None:
    await env.signed_in("smtp")  # an account for MAILBOX
    second = await env.pending("smtp")
    with pytest.raises(OAuthFailed, match=f"already have an SMTP account for {MAILBOX}"):
        await env.complete(env.server.approve(await env.start("smtp", second), MAILBOX))
    row = await env.row("smtp", second)
    assert isinstance(row, SmtpAccount)
    assert (row.email_address, row.oauth_status) == ("", CredentialStatus.PENDING)


async def test_the_callback_refuses_when_the_domain_turned_oauth_off(env: Env) -> None:
    target_id = await env.pending("retrieval")
    url = await env.start("retrieval", target_id)
    async with env.db.write() as session:
        await session.exec(update(Domain).values(oauth_enabled=False))
    requests = env.server.requests["/token"]
    with pytest.raises(OAuthFailed, match="turned off OAuth2 sign-in") as refused:
        await env.complete(env.server.approve(url, MAILBOX))
    assert refused.value.message.count(". ") == 0
    assert env.server.requests["/token"] == requests  # the code is not even exchanged
    assert (await env.row("retrieval", target_id)).oauth_status is CredentialStatus.PENDING
