"""The OAuth2 test fixtures work as real clients see them (groundwork for issue 15).

The authorization server (tests/fixtures/oauth_server.py) through authlib's
own client: code flow with PKCE S256, refresh with rotation, revocation,
consent denied, expiry on the fake clock, injected token-endpoint failures.
Dovecot (tests/fixtures/dovecot_oauth.py) verifying XOAUTH2 and OAUTHBEARER by
introspection, through imapclient and poplib; the aiosmtpd server
(tests/fixtures/smtp_oauth.py) through aiosmtplib.
"""

from __future__ import annotations

import base64
import poplib
import re
import warnings
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import aiosmtplib
import httpx
import pytest
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.fixtures.dovecot import MailUser
from tests.fixtures.dovecot_oauth import OAuthDovecot
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.smtp_oauth import StartSmtpOAuthServer

# authlib 1.9 prefers the "httpx2" package and warns once, on import, when it falls back to httpx.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

TIMEOUT = 10
REDIRECT_URI = "http://127.0.0.1:8999/oauth/callback"
SCOPE = "openid email offline_access mail"


@pytest.fixture
async def oauth_client(oauth_server: OAuthServer) -> AsyncIterator[AsyncOAuth2Client]:
    """authlib's client for the registered app, PKCE S256, client_secret_basic."""
    oauth_server.allow_redirect_uri(REDIRECT_URI)
    client = AsyncOAuth2Client(
        client_id=oauth_server.client.client_id,
        client_secret=oauth_server.client.client_secret,
        scope=SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    async with client:
        yield client


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def sign_in(server: OAuthServer, client: AsyncOAuth2Client, email: str) -> dict[str, object]:
    """The whole code flow without a browser: authorize URL, consent as ``email``, token."""
    verifier = generate_token(48)
    url, state = client.create_authorization_url(server.url("/authorize"), code_verifier=verifier)
    callback = server.approve(url, email)
    assert query(callback)["state"] == state
    token = await client.fetch_token(server.url("/token"), authorization_response=callback, code_verifier=verifier)
    return dict(token)


async def introspect(server: OAuthServer, token: str) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            server.introspection_url,
            data={"token": token},
            auth=(server.mail_client.client_id, server.mail_client.client_secret),
        )
    response.raise_for_status()
    answer: dict[str, object] = response.json()
    return answer


# -- authorization server ---------------------------------------------------------------


async def test_code_flow_through_the_consent_page(oauth_server: OAuthServer, oauth_client: AsyncOAuth2Client) -> None:
    async with httpx.AsyncClient() as http:
        discovery = (await http.get(oauth_server.discovery_url)).json()
        assert discovery["code_challenge_methods_supported"] == ["S256"]
        verifier = generate_token(48)
        url, state = oauth_client.create_authorization_url(discovery["authorization_endpoint"], code_verifier=verifier)
        assert "code_challenge_method=S256" in url
        oauth_server.consent_user = "alice@example.test"
        page = await http.get(url)
        assert page.status_code == 200
        assert "alice@example.test" in page.text
        assert ">Allow</button>" in page.text
        assert ">Deny</button>" in page.text
        # Submit the form as the browser would: its hidden fields plus the Allow button.
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
        answer = await http.post(discovery["authorization_endpoint"], data={**fields, "decision": "allow"})
    assert answer.status_code == 302
    callback = answer.headers["location"]
    assert callback.startswith(REDIRECT_URI + "?")
    assert query(callback)["state"] == state

    token = await oauth_client.fetch_token(
        discovery["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert oauth_server.token_requests[-1].auth_method == "client_secret_basic"
    info = (await oauth_client.get(discovery["userinfo_endpoint"])).json()
    assert info["email"] == "alice@example.test"
    assert info["sub"]
    assert (await introspect(oauth_server, str(token["access_token"])))["email"] == "alice@example.test"


async def test_provider_env_points_at_the_discovery_document(oauth_server: OAuthServer) -> None:
    env = oauth_server.provider_env("local")
    assert env["TRIBUTARY_OAUTH_PROVIDERS"] == "local"
    async with httpx.AsyncClient() as http:
        discovery = (await http.get(env["TRIBUTARY_OAUTH_LOCAL_ISSUER"] + "/.well-known/openid-configuration")).json()
    assert discovery["issuer"] == env["TRIBUTARY_OAUTH_LOCAL_ISSUER"]
    assert env["TRIBUTARY_OAUTH_LOCAL_CLIENT_ID"] == oauth_server.client.client_id


async def test_pkce_verifier_and_single_use_code(oauth_server: OAuthServer, oauth_client: AsyncOAuth2Client) -> None:
    authorize = oauth_server.url("/authorize")
    url, _state = oauth_client.create_authorization_url(authorize, code_verifier=generate_token(48))
    callback = oauth_server.approve(url, "bob@example.test")
    with pytest.raises(OAuthError) as wrong:
        await oauth_client.fetch_token(
            oauth_server.url("/token"), authorization_response=callback, code_verifier=generate_token(48)
        )
    assert wrong.value.error == "invalid_grant"

    verifier = generate_token(48)
    url, _state = oauth_client.create_authorization_url(oauth_server.url("/authorize"), code_verifier=verifier)
    callback = oauth_server.approve(url, "bob@example.test")
    oauth_client.token_endpoint_auth_method = "client_secret_post"
    await oauth_client.fetch_token(oauth_server.url("/token"), authorization_response=callback, code_verifier=verifier)
    assert oauth_server.token_requests[-1].auth_method == "client_secret_post"
    with pytest.raises(OAuthError) as replayed:
        await oauth_client.fetch_token(
            oauth_server.url("/token"), authorization_response=callback, code_verifier=verifier
        )
    assert replayed.value.error == "invalid_grant"


async def test_authorize_refuses_bad_requests(oauth_server: OAuthServer, oauth_client: AsyncOAuth2Client) -> None:
    async with httpx.AsyncClient() as http:
        no_pkce, _ = oauth_client.create_authorization_url(oauth_server.url("/authorize"))
        answer = await http.get(no_pkce)
        assert answer.status_code == 302
        assert query(answer.headers["location"])["error"] == "invalid_request"

        foreign, _ = oauth_client.create_authorization_url(
            oauth_server.url("/authorize"), code_verifier=generate_token(48), redirect_uri="http://evil.test/cb"
        )
        answer = await http.get(foreign)
        assert answer.status_code == 400
        assert "location" not in answer.headers


async def test_deny_redirects_with_access_denied(oauth_server: OAuthServer, oauth_client: AsyncOAuth2Client) -> None:
    url, state = oauth_client.create_authorization_url(oauth_server.url("/authorize"), code_verifier=generate_token(48))
    oauth_server.auto_consent = "deny"
    async with httpx.AsyncClient() as http:
        answer = await http.get(url)
    assert answer.status_code == 302
    assert query(answer.headers["location"]) == {"error": "access_denied", "state": state}
    assert query(oauth_server.deny(url)) == {"error": "access_denied", "state": state}


async def test_refresh_rotates_and_the_old_refresh_token_is_refused(
    oauth_server: OAuthServer, oauth_client: AsyncOAuth2Client
) -> None:
    first = await sign_in(oauth_server, oauth_client, "carol@example.test")
    second = await oauth_client.refresh_token(oauth_server.url("/token"), refresh_token=first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert [r.grant_type for r in oauth_server.token_requests] == ["authorization_code", "refresh_token"]
    with pytest.raises(OAuthError) as reused:
        await oauth_client.refresh_token(oauth_server.url("/token"), refresh_token=first["refresh_token"])
    assert reused.value.error == "invalid_grant"
    await oauth_client.refresh_token(oauth_server.url("/token"), refresh_token=second["refresh_token"])


async def test_revoking_a_user_kills_its_tokens(oauth_server: OAuthServer, oauth_client: AsyncOAuth2Client) -> None:
    token = await sign_in(oauth_server, oauth_client, "dave@example.test")
    other = oauth_server.issue_tokens("erin@example.test")
    assert oauth_server.revoke_user("dave@example.test") == 2
    assert await introspect(oauth_server, str(token["access_token"])) == {"active": False}
    assert (await oauth_client.get(oauth_server.url("/userinfo"))).status_code == 401
    with pytest.raises(OAuthError) as refused:
        await oauth_client.refresh_token(oauth_server.url("/token"), refresh_token=token["refresh_token"])
    assert refused.value.error == "invalid_grant"
    assert (await introspect(oauth_server, other.access_token))["active"] is True


async def test_fake_clock_expires_access_tokens(oauth_server: OAuthServer) -> None:
    oauth_server.access_token_lifetime = 60
    tokens = oauth_server.issue_tokens("frank@example.test")
    assert tokens.expires_in == 60
    oauth_server.advance(59)
    assert (await introspect(oauth_server, tokens.access_token))["active"] is True
    oauth_server.advance(1)
    assert await introspect(oauth_server, tokens.access_token) == {"active": False}
    assert oauth_server.token_alive(tokens.refresh_token)  # refresh tokens do not expire
    assert await introspect(oauth_server, tokens.refresh_token) == {"active": False}  # nor pass as bearer


async def test_token_endpoint_failures_and_counts(oauth_server: OAuthServer, oauth_client: AsyncOAuth2Client) -> None:
    tokens = oauth_server.issue_tokens("gina@example.test")
    oauth_server.fail_token_endpoint(2, "500")
    oauth_server.fail_token_endpoint(1, "drop")
    for _ in range(2):
        with pytest.raises(httpx.HTTPStatusError) as failed:
            await oauth_client.refresh_token(oauth_server.url("/token"), refresh_token=tokens.refresh_token)
        assert failed.value.response.status_code == 500
    with pytest.raises(httpx.RemoteProtocolError):
        await oauth_client.refresh_token(oauth_server.url("/token"), refresh_token=tokens.refresh_token)
    fresh = await oauth_client.refresh_token(oauth_server.url("/token"), refresh_token=tokens.refresh_token)
    assert fresh["access_token"]
    assert oauth_server.requests["/token"] == 4


# -- Dovecot ---------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["imap", "imaps"])
def test_imap_xoauth2_and_oauthbearer(
    dovecot_oauth: OAuthDovecot, oauth_server: OAuthServer, oauth_mail_user: MailUser, port: str
) -> None:
    token = oauth_server.issue_tokens(oauth_mail_user.email).access_token
    for login in ("oauth2_login", "oauthbearer_login"):
        with connect_imap(dovecot_oauth, port) as client:
            assert b"AUTH=XOAUTH2" in client.capabilities()
            assert b"AUTH=OAUTHBEARER" in client.capabilities()
            getattr(client, login)(oauth_mail_user.email, token)
            assert client.select_folder("INBOX")[b"EXISTS"] == 0
    assert oauth_server.requests["/introspect"] == 2


@pytest.mark.parametrize("login", ["oauth2_login", "oauthbearer_login"])
def test_imap_refuses_dead_and_foreign_tokens(
    dovecot_oauth: OAuthDovecot, oauth_server: OAuthServer, oauth_mail_user: MailUser, login: str
) -> None:
    revoked = oauth_server.issue_tokens(oauth_mail_user.email)
    oauth_server.revoke_user(oauth_mail_user.email)
    expired = oauth_server.issue_tokens(oauth_mail_user.email)
    oauth_server.advance(3600)
    foreign = oauth_server.issue_tokens("someone-else@example.test")
    refused = [
        revoked.access_token,
        expired.access_token,
        foreign.access_token,
        oauth_server.issue_tokens(oauth_mail_user.email).refresh_token,
        oauth_mail_user.password,
    ]

    def attempt(token: str) -> None:
        with connect_imap(dovecot_oauth, "imap") as client, pytest.raises(LoginError):
            getattr(client, login)(oauth_mail_user.email, token)

    # Each failure answers after up to 0.5 s (Dovecot's delayed-failure timer): try them at once.
    with ThreadPoolExecutor(len(refused)) as pool:
        list(pool.map(attempt, refused))
    with connect_imap(dovecot_oauth, "imap") as client:  # a password still works with LOGIN
        client.login(oauth_mail_user.email, oauth_mail_user.password)


def test_pop3_auth_xoauth2_and_oauthbearer(
    dovecot_oauth: OAuthDovecot, oauth_server: OAuthServer, oauth_mail_user: MailUser
) -> None:
    dovecot_oauth.deliver(oauth_mail_user.email, b"Subject: hi\r\n\r\nHello\r\n")
    token = oauth_server.issue_tokens(oauth_mail_user.email).access_token
    for mechanism in ("XOAUTH2", "OAUTHBEARER"):
        pop = poplib.POP3_SSL(dovecot_oauth.host, dovecot_oauth.pop3s_port, context=dovecot_oauth.ssl_context())
        try:
            assert mechanism in pop.capa()["SASL"]
            assert pop3_auth(pop, mechanism, oauth_mail_user.email, token).startswith(b"+OK")
            assert pop.stat()[0] == 1
        finally:
            pop.quit()


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_pop3_bad_token_gets_err_after_the_continuation(
    dovecot_oauth: OAuthDovecot, oauth_server: OAuthServer, oauth_mail_user: MailUser, mechanism: str
) -> None:
    pop = poplib.POP3(dovecot_oauth.host, dovecot_oauth.pop3_port, timeout=TIMEOUT)
    try:
        pop.stls(dovecot_oauth.ssl_context())
        with pytest.raises(poplib.error_proto, match="-ERR"):
            pop3_auth(pop, mechanism, oauth_mail_user.email, "not-a-token")
    finally:
        pop.close()


def connect_imap(server: OAuthDovecot, port: str) -> IMAPClient:
    if port == "imaps":
        return IMAPClient(server.host, port=server.imaps_port, ssl_context=server.ssl_context(), timeout=TIMEOUT)
    client = IMAPClient(server.host, port=server.imap_port, ssl=False, timeout=TIMEOUT)
    client.starttls(ssl_context=server.ssl_context())
    return client


def sasl_message(mechanism: str, email: str, token: str) -> bytes:
    if mechanism == "XOAUTH2":
        return f"user={email}\x01auth=Bearer {token}\x01\x01".encode()
    return f"n,a={email},\x01auth=Bearer {token}\x01\x01".encode()  # RFC 7628 3.1


def pop3_auth(pop: poplib.POP3, mechanism: str, email: str, token: str) -> bytes:
    """AUTH with an initial response (RFC 5034). A failure comes as a ``+ <error JSON>``
    continuation, which poplib's ``_shortcmd`` would take for success: answer it and read the
    final ``-ERR`` (``_getresp`` raises ``error_proto`` on it)."""
    initial = base64.b64encode(sasl_message(mechanism, email, token)).decode()
    pop._putcmd(f"AUTH {mechanism} {initial}")  # type: ignore[attr-defined]
    answer: bytes = pop._getresp()  # type: ignore[attr-defined]
    if not answer.startswith(b"+OK"):
        pop._putcmd("" if mechanism == "XOAUTH2" else "AQ==")  # type: ignore[attr-defined]
        answer = pop._getresp()  # type: ignore[attr-defined]
    return answer


# -- SMTP ----------------------------------------------------------------------------------


def smtp_message(sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "bob@example.test"
    message["Subject"] = "OAuth fixture check"
    message.set_content("Hello.\n")
    return message


async def test_smtp_xoauth2_with_aiosmtplib(smtp_oauth_server: StartSmtpOAuthServer, oauth_server: OAuthServer) -> None:
    server = smtp_oauth_server(mode="starttls")
    oauth_server.token_length = 4000  # far over aiosmtpd's usual 512-byte command limit
    email = "hanna@example.test"
    token = oauth_server.issue_tokens(email).access_token

    async def token_generator() -> str:
        return token

    await aiosmtplib.send(
        smtp_message(email),
        hostname=server.host,
        port=server.port,
        username=email,
        oauth_token_generator=token_generator,
        tls_context=server.ssl_context(),
        timeout=TIMEOUT,
    )
    assert [m.auth_user for m in server.received] == [email]
    assert [(a.mechanism, a.success) for a in server.auth_attempts] == [("XOAUTH2", True)]

    oauth_server.revoke_user(email)
    smtp = aiosmtplib.SMTP(hostname=server.host, port=server.port, tls_context=server.ssl_context(), timeout=TIMEOUT)
    async with smtp:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await smtp.auth_xoauth2(email, token)
    assert refused.value.code == 535


async def test_smtp_oauthbearer_and_mechanism_choice(
    smtp_oauth_server: StartSmtpOAuthServer, oauth_server: OAuthServer
) -> None:
    email = "ivan@example.test"
    token = oauth_server.issue_tokens(email).access_token
    only_bearer = smtp_oauth_server(mode="ssl", mechanisms=("OAUTHBEARER",))
    smtp = aiosmtplib.SMTP(
        hostname=only_bearer.host,
        port=only_bearer.port,
        use_tls=True,
        tls_context=only_bearer.ssl_context(),
        timeout=TIMEOUT,
    )
    async with smtp:
        await smtp.ehlo()
        assert "oauthbearer" in smtp.server_auth_methods
        assert "xoauth2" not in smtp.server_auth_methods
        bad = base64.b64encode(sasl_message("OAUTHBEARER", email, "dead"))
        challenge = await smtp.execute_command(b"AUTH", b"OAUTHBEARER", bad)
        assert challenge.code == 334  # the error JSON, RFC 7628 3.2.2
        assert (await smtp.execute_command(b"AQ==")).code == 535
        good = base64.b64encode(sasl_message("OAUTHBEARER", email, token))
        assert (await smtp.execute_command(b"AUTH", b"OAUTHBEARER", good)).code == 235
        await smtp.send_message(smtp_message(email))
    assert [m.auth_user for m in only_bearer.received] == [email]
