"""OAuth2 sign-in in the protocol adapters (issue 15): SASL OAUTHBEARER (RFC 7628) when offered, else
XOAUTH2, for IMAP, POP3 and SMTP.

Real servers check the tokens: Dovecot (tests/fixtures/dovecot_oauth.py) and aiosmtpd
(tests/fixtures/smtp_oauth.py), both by introspection at the test OAuth server. Dovecot offers
both mechanisms, so the choice of XOAUTH2 when OAUTHBEARER is missing, and what the client answers
to the error challenge, are shown with small scripted servers; XOAUTH2 itself is also checked by
Dovecot. Every debug transcript is searched for the token (a canary) and its base64 forms.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from typing import Any

import pytest

from service.domain.values import Security
from service.errors import CredentialsRejected, ServerUnavailable, TokenRejected, UnsupportedByServer
from service.protocols import pop3, sasl, smtp
from service.protocols.imap.probe import test_connection as imap_test_connection
from service.protocols.imap.session import ImapAccount, ImapSession, _Responder, open_session
from service.protocols.pop3 import Pop3Account, Pop3Session
from service.protocols.transcript import Transcript
from tests.fixtures.dovecot import MailUser
from tests.fixtures.dovecot_oauth import OAuthDovecot
from tests.fixtures.faults import _Server
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.smtp import SmtpMode, SmtpServer
from tests.fixtures.smtp_oauth import StartSmtpOAuthServer
from tests.test_smtp_fakes import LOOPBACK, RawSmtpServer

TIMEOUT = 10
MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: via OAuth\r\n\r\nHello.\r\n"
SMTP_SECURITY: dict[SmtpMode, Security] = {"starttls": Security.STARTTLS, "ssl": Security.SSL}


def assert_no_token(text: str, token: str, user: str) -> None:
    """The token appears nowhere: not in clear, not in part, not inside either base64 SASL message."""
    assert token[:24] not in text
    assert token[-24:] not in text
    for mechanism in (sasl.OAUTHBEARER, sasl.XOAUTH2):
        encoded = base64.b64encode(sasl.client_message(mechanism, user, token)).decode()
        assert encoded[40:100] not in text


# -- IMAP against Dovecot ---------------------------------------------------------------------------


def imap_account(server: OAuthDovecot, user: MailUser, token: str, security: Security = Security.SSL) -> ImapAccount:
    return ImapAccount(
        host=server.host,
        port=server.imaps_port if security is Security.SSL else server.imap_port,
        security=security,
        username=user.email,
        password="",
        timeout_seconds=TIMEOUT,
        extra_ca_file=server.cert_pem_path,
        debug=True,
        policy=LOOPBACK,
        oauth_token=token,
    )


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.SSL])
def test_imap_signs_in_with_oauthbearer_and_retrieves(
    dovecot_oauth: OAuthDovecot,
    oauth_server: OAuthServer,
    oauth_mail_user: MailUser,
    security: Security,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    dovecot_oauth.deliver(oauth_mail_user.email, MESSAGE)
    token = oauth_server.issue_tokens(oauth_mail_user.email).access_token
    session = ImapSession(imap_account(dovecot_oauth, oauth_mail_user, token, security))
    try:
        session.connect()
        assert session.login() == "OAUTHBEARER"
        inbox = next(f for f in session.list_folders() if f.path == "INBOX")
        session.select(inbox)
        assert [m.raw for m in session.fetch(session.uids_above(0))] == [MESSAGE]
    finally:
        session.close()
    assert oauth_server.requests["/introspect"] == 1
    assert session.transcript is not None
    text = session.transcript.text()
    assert "AUTHENTICATE OAUTHBEARER [redacted]" in text
    assert_no_token(text, token, oauth_mail_user.email)
    assert_no_token(caplog.text, token, oauth_mail_user.email)  # imapclient and imaplib log at DEBUG


def test_imap_xoauth2_is_accepted_by_dovecot(
    dovecot_oauth: OAuthDovecot, oauth_server: OAuthServer, oauth_mail_user: MailUser
) -> None:
    """The XOAUTH2 message, as the adapter writes it, passes Dovecot's check (the choice of XOAUTH2
    is shown with a scripted server below: Dovecot always offers OAUTHBEARER too)."""
    token = oauth_server.issue_tokens(oauth_mail_user.email).access_token
    session = ImapSession(imap_account(dovecot_oauth, oauth_mail_user, token))
    try:
        session.connect()
        assert session.client is not None
        session.client.sasl_login("XOAUTH2", _Responder("XOAUTH2", oauth_mail_user.email, token))
        assert [f.path for f in session.list_folders()] == ["INBOX"]
    finally:
        session.close()
    assert oauth_server.requests["/introspect"] == 1


def test_imap_test_connection_reports_the_mechanism(
    dovecot_oauth: OAuthDovecot, oauth_server: OAuthServer, oauth_mail_user: MailUser
) -> None:
    token = oauth_server.issue_tokens(oauth_mail_user.email).access_token
    report = imap_test_connection(imap_account(dovecot_oauth, oauth_mail_user, token))
    assert all(s.ok for s in report.steps), report.steps
    login = next(s for s in report.steps if s.name == "login")
    assert login.detail == f"signed in as {oauth_mail_user.email} with OAUTHBEARER"


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.SSL])
def test_imap_revoked_token_is_token_rejected(
    dovecot_oauth: OAuthDovecot, oauth_server: OAuthServer, oauth_mail_user: MailUser, security: Security
) -> None:
    token = oauth_server.issue_tokens(oauth_mail_user.email).access_token
    oauth_server.revoke_user(oauth_mail_user.email)
    account = imap_account(dovecot_oauth, oauth_mail_user, token, security)
    with pytest.raises(TokenRejected, match="Reconnect the account") as refused, open_session(account):
        pass
    assert isinstance(refused.value, CredentialsRejected)
    assert token[:24] not in refused.value.message

    report = imap_test_connection(account)
    failed = report.steps[-1]
    assert (failed.name, failed.ok, failed.hint) == ("login", False, sasl.RECONNECT_HINT)


def test_imap_long_token(dovecot_oauth: OAuthDovecot, oauth_server: OAuthServer, oauth_mail_user: MailUser) -> None:
    """A 6,000-character token: the base64 answer (about 8,070 bytes) stays under Dovecot's 8,192."""
    oauth_server.token_length = 6000
    token = oauth_server.issue_tokens(oauth_mail_user.email).access_token
    assert len(token) == 6000
    with open_session(imap_account(dovecot_oauth, oauth_mail_user, token)) as session:
        assert [f.path for f in session.list_folders()] == ["INBOX"]
        assert session.transcript is not None
        assert_no_token(session.transcript.text(), token, oauth_mail_user.email)


# -- POP3 against Dovecot ----------------------------------------------------------------------------


def pop3_account(server: OAuthDovecot, user: MailUser, token: str, security: Security = Security.SSL) -> Pop3Account:
    return Pop3Account(
        host=server.host,
        port=server.pop3s_port if security is Security.SSL else server.pop3_port,
        security=security,
        username=user.email,
        password="",
        timeout_seconds=TIMEOUT,
        extra_ca_file=server.cert_pem_path,
        use_apop=True,  # ignored with a token
        debug=True,
        policy=LOOPBACK,
        oauth_token=token,
    )


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.SSL])
def test_pop3_signs_in_with_oauthbearer_and_retrieves(
    dovecot_oauth: OAuthDovecot,
    oauth_server: OAuthServer,
    oauth_mail_user: MailUser,
    security: Security,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    dovecot_oauth.deliver(oauth_mail_user.email, MESSAGE)
    token = oauth_server.issue_tokens(oauth_mail_user.email).access_token
    session = Pop3Session(pop3_account(dovecot_oauth, oauth_mail_user, token, security))
    try:
        session.connect()
        assert session.login() == "OAUTHBEARER"
        assert session.retrieve(1) == MESSAGE
        session.quit()
    finally:
        session.close()
    assert session.transcript is not None
    text = session.transcript.text()
    assert "> AUTH OAUTHBEARER [redacted]" in text
    assert_no_token(text, token, oauth_mail_user.email)
    assert_no_token(caplog.text, token, oauth_mail_user.email)


@pytest.mark.parametrize("mechanism", [sasl.XOAUTH2, sasl.OAUTHBEARER])
def test_pop3_both_mechanisms_pass_and_refuse_at_dovecot(
    dovecot_oauth: OAuthDovecot, oauth_server: OAuthServer, oauth_mail_user: MailUser, mechanism: str
) -> None:
    """Each message form passes Dovecot; a dead token ends in -ERR after the error challenge is
    answered (not a hang, not the "+" challenge taken for success)."""
    token = oauth_server.issue_tokens(oauth_mail_user.email).access_token
    for good in (True, False):
        session = Pop3Session(pop3_account(dovecot_oauth, oauth_mail_user, token if good else "dead-token"))
        try:
            session.connect()
            assert session.client is not None
            message = sasl.client_message(mechanism, oauth_mail_user.email, token if good else "dead-token")
            answer = sasl.error_answer(mechanism)
            if good:
                assert session.client.authenticate(mechanism, message, error_answer=answer).startswith(b"+OK")
                assert session.message_count() == 0
            else:
                with pytest.raises(TokenRejected), session.translated("login"):
                    session.client.authenticate(mechanism, message, error_answer=answer)
        finally:
            session.close()


def test_pop3_revoked_token_is_token_rejected(
    dovecot_oauth: OAuthDovecot, oauth_server: OAuthServer, oauth_mail_user: MailUser
) -> None:
    token = oauth_server.issue_tokens(oauth_mail_user.email).access_token
    oauth_server.revoke_user(oauth_mail_user.email)
    account = pop3_account(dovecot_oauth, oauth_mail_user, token, Security.STARTTLS)
    with pytest.raises(TokenRejected, match="Reconnect the account"), pop3.open_session(account):
        pass
    report = pop3.test_connection(account)
    failed = report.steps[-1]
    assert (failed.name, failed.ok, failed.hint) == ("login", False, sasl.RECONNECT_HINT)


def test_pop3_test_connection_and_long_token(
    dovecot_oauth: OAuthDovecot, oauth_server: OAuthServer, oauth_mail_user: MailUser
) -> None:
    oauth_server.token_length = 6000
    token = oauth_server.issue_tokens(oauth_mail_user.email).access_token
    report = pop3.test_connection(pop3_account(dovecot_oauth, oauth_mail_user, token))
    assert all(s.ok for s in report.steps), report.steps
    login = next(s for s in report.steps if s.name == "login")
    assert login.detail == f"signed in as {oauth_mail_user.email} with OAUTHBEARER"


# -- mechanism choice and the error challenge, with scripted servers ------------------------------


class SaslServer(_Server):
    """IMAP or POP3 that offers the given SASL mechanisms and accepts one token: the message comes
    after an empty challenge; a wrong one gets the JSON error challenge, then NO / -ERR. `answers`
    records, per AUTH, the decoded client message and the answer to the error challenge."""

    ERROR = base64.b64encode(json.dumps({"status": "invalid_token"}).encode())

    def __init__(self, protocol: str, mechanisms: str, token: str, *, temporary: bool = False) -> None:
        super().__init__()
        self.protocol, self.mechanisms, self.token = protocol, mechanisms.split(), token
        self.temporary = temporary  # refuse as RFC 5530 [UNAVAILABLE] / RFC 3206 [SYS/TEMP]
        self.answers: list[tuple[str, bytes, bytes | None]] = []
        self.lock = threading.Lock()

    def __enter__(self) -> SaslServer:
        super().__enter__()
        return self

    def handle(self, client: socket.socket) -> None:
        imap = self.protocol == "imap"
        caps = "IMAP4rev1 " + " ".join(f"AUTH={m}" for m in self.mechanisms)
        with client, client.makefile("rwb") as stream:

            def say(line: str) -> None:
                stream.write(line.encode() + b"\r\n")
                stream.flush()

            say(f"* OK [CAPABILITY {caps}] ready" if imap else "+OK ready")
            for raw in stream:
                words = raw.decode().split()
                tag, command = (words[0], words[1].upper()) if imap else ("", words[0].upper())
                ok, no = (f"{tag} OK done", f"{tag} NO [AUTHENTICATIONFAILED] no") if imap else ("+OK", "-ERR no")
                if self.temporary:
                    no = f"{tag} NO [UNAVAILABLE] Temporary failure" if imap else "-ERR [SYS/TEMP] Temporary failure"
                if command == "CAPABILITY":
                    say(f"* CAPABILITY {caps}\r\n{ok}")
                elif command == "CAPA":
                    say("+OK\r\nSASL " + " ".join(self.mechanisms) + "\r\n.")
                elif command in ("AUTHENTICATE", "AUTH"):
                    say("+ ")
                    message = base64.b64decode(stream.readline().strip())
                    if f"auth=Bearer {self.token}\x01".encode() in message:
                        self._record(words[-1], message, None)
                        say(ok)
                        continue
                    say("+ " + self.ERROR.decode())
                    self._record(words[-1], message, stream.readline().rstrip(b"\r\n"))
                    say(no)
                elif command in ("LOGOUT", "QUIT"):
                    say(f"* BYE\r\n{ok}" if imap else "+OK bye")
                    return
                else:
                    say(f"{tag} BAD unknown" if imap else "-ERR unknown")

    def _record(self, mechanism: str, message: bytes, answer: bytes | None) -> None:
        with self.lock:
            self.answers.append((mechanism, message, answer))


def scripted_account(protocol: str, server: SaslServer, token: str) -> Any:
    kind = ImapAccount if protocol == "imap" else Pop3Account
    return kind(
        host="127.0.0.1",
        port=server.port,
        security=Security.NONE,
        username="me@example.test",
        password="",
        timeout_seconds=TIMEOUT,
        policy=LOOPBACK,
        oauth_token=token,
    )


def opened(protocol: str, account: Any) -> Any:
    return open_session(account) if protocol == "imap" else pop3.open_session(account)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_xoauth2_when_oauthbearer_is_not_offered(protocol: str) -> None:
    with (
        SaslServer(protocol, "PLAIN XOAUTH2", "good-token") as server,
        opened(protocol, scripted_account(protocol, server, "good-token")),
    ):
        pass
    assert server.answers == [("XOAUTH2", b"user=me@example.test\x01auth=Bearer good-token\x01\x01", None)]


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
@pytest.mark.parametrize(
    ("mechanisms", "chosen", "error_answer"),
    [("XOAUTH2", "XOAUTH2", b""), ("XOAUTH2 OAUTHBEARER", "OAUTHBEARER", b"AQ==")],
)
def test_a_refused_token_is_sent_once_and_the_error_challenge_answered(
    protocol: str, mechanisms: str, chosen: str, error_answer: bytes
) -> None:
    """RFC 7628 3.2.3: ^A (OAUTHBEARER) or an empty line (XOAUTH2) answers the error; the token is
    not sent a second time (imapclient's oauth2_login/oauthbearer_login would resend it)."""
    with (
        SaslServer(protocol, mechanisms, "good-token") as server,
        pytest.raises(TokenRejected, match="Reconnect the account"),
        opened(protocol, scripted_account(protocol, server, "old-token")),
    ):
        pass
    [(mechanism, message, answer)] = server.answers
    assert (mechanism, answer) == (chosen, error_answer)
    assert message == sasl.client_message(chosen, "me@example.test", "old-token")


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_token_the_server_cannot_check_now_is_not_rejected(protocol: str) -> None:
    """A temporary refusal (the server could not reach its token service) is ServerUnavailable:
    the caller retries later instead of asking the user to reconnect."""
    with (
        SaslServer(protocol, "OAUTHBEARER", "good-token", temporary=True) as server,
        pytest.raises(ServerUnavailable, match="could not check the sign-in token for now") as raised,
        opened(protocol, scripted_account(protocol, server, "old-token")),
    ):
        pass
    assert not isinstance(raised.value, CredentialsRejected)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_server_without_an_oauth_mechanism_is_unsupported(protocol: str) -> None:
    with (
        SaslServer(protocol, "PLAIN LOGIN", "good-token") as server,
        pytest.raises(UnsupportedByServer, match="XOAUTH2 or OAUTHBEARER"),
        opened(protocol, scripted_account(protocol, server, "good-token")),
    ):
        pass
    assert server.answers == []


# -- SMTP against aiosmtpd ---------------------------------------------------------------------------

SENDER = "sender@example.test"


def smtp_endpoint(server: SmtpServer, token: str, *, auth_required: bool = True) -> smtp.SmtpEndpoint:
    return smtp.SmtpEndpoint(
        host=server.host,
        port=server.port,
        security=SMTP_SECURITY[server.mode],
        auth_required=auth_required,
        username=SENDER,
        timeout_seconds=TIMEOUT,
        extra_ca_file=server.cert_pem_path,
        policy=LOOPBACK,
        oauth_token=token,
    )


@pytest.mark.parametrize(
    ("mode", "mechanisms", "chosen"),
    [
        ("starttls", ("XOAUTH2", "OAUTHBEARER"), "OAUTHBEARER"),
        ("ssl", ("XOAUTH2", "OAUTHBEARER"), "OAUTHBEARER"),
        ("starttls", ("XOAUTH2",), "XOAUTH2"),
        ("ssl", ("OAUTHBEARER",), "OAUTHBEARER"),
    ],
)
async def test_smtp_sends_a_message_signed_in_with_a_token(
    smtp_oauth_server: StartSmtpOAuthServer,
    oauth_server: OAuthServer,
    mode: SmtpMode,
    mechanisms: tuple[str, ...],
    chosen: str,
) -> None:
    server = smtp_oauth_server(mode=mode, mechanisms=mechanisms)
    token = oauth_server.issue_tokens(SENDER).access_token
    transcript = Transcript()
    report = await smtp.deliver(
        smtp_endpoint(server, token), sender=SENDER, recipients=["b@example.test"], data=MESSAGE, transcript=transcript
    )
    assert report.accepted == ("b@example.test",)
    assert [(m.auth_user, m.rcpt_tos) for m in server.received] == [(SENDER, ["b@example.test"])]
    assert [(a.mechanism, a.success) for a in server.auth_attempts] == [(chosen, True)]
    text = transcript.text()
    assert f"> AUTH {chosen} [redacted]" in text
    assert_no_token(text, token, SENDER)


@pytest.mark.parametrize("mechanisms", [("XOAUTH2",), ("XOAUTH2", "OAUTHBEARER")])
async def test_smtp_revoked_token_is_one_refused_attempt(
    smtp_oauth_server: StartSmtpOAuthServer, oauth_server: OAuthServer, mechanisms: tuple[str, ...]
) -> None:
    server = smtp_oauth_server(mode="starttls", mechanisms=mechanisms)
    token = oauth_server.issue_tokens(SENDER).access_token
    oauth_server.revoke_user(SENDER)
    transcript = Transcript()
    with pytest.raises(TokenRejected, match="Reconnect the account") as refused:
        await smtp.deliver(
            smtp_endpoint(server, token),
            sender=SENDER,
            recipients=["b@example.test"],
            data=MESSAGE,
            transcript=transcript,
        )
    assert "535" in refused.value.message
    assert [a.success for a in server.auth_attempts] == [False]
    assert server.received == []
    assert_no_token(transcript.text(), token, SENDER)

    report = await smtp.probe(smtp_endpoint(server, token), transcript=Transcript())
    failed = report.steps[-1]
    assert (failed.name, failed.ok, failed.hint) == ("auth", False, sasl.RECONNECT_HINT)


async def test_smtp_server_without_oauth_mechanisms_is_unsupported(
    smtp_oauth_server: StartSmtpOAuthServer, oauth_server: OAuthServer
) -> None:
    server = smtp_oauth_server(mode="ssl", mechanisms=())
    token = oauth_server.issue_tokens(SENDER).access_token
    with pytest.raises(UnsupportedByServer, match="XOAUTH2 or OAUTHBEARER"):
        await smtp.deliver(
            smtp_endpoint(server, token),
            sender=SENDER,
            recipients=["b@example.test"],
            data=MESSAGE,
            transcript=Transcript(),
        )
    assert server.auth_attempts == []


async def test_smtp_test_connection_with_a_long_token(
    smtp_oauth_server: StartSmtpOAuthServer, oauth_server: OAuthServer
) -> None:
    """A 6,000-character token, and a token signs in even when "authentication" is off."""
    server = smtp_oauth_server(mode="starttls")
    oauth_server.token_length = 6000
    token = oauth_server.issue_tokens(SENDER).access_token
    transcript = Transcript()
    report = await smtp.probe(smtp_endpoint(server, token, auth_required=False), transcript=transcript)
    assert all(s.ok for s in report.steps), report.steps
    assert report.steps[-1].name == "auth"
    assert report.steps[-1].detail == f"signed in as {SENDER} with OAUTHBEARER"
    assert_no_token(transcript.text(), token, SENDER)


async def test_smtp_mechanism_refused_unjudged_falls_back_and_a_temporary_refusal_defers() -> None:
    """OAUTHBEARER refused as a mechanism (504: the token not judged) is followed by XOAUTH2; its 454
    is SmtpDeferred (try later), not TokenRejected."""
    auth = {"OAUTHBEARER": "504 5.5.4 Unrecognized authentication type", "XOAUTH2": "454 4.7.0 Try again later"}
    with RawSmtpServer(extensions=("AUTH PLAIN OAUTHBEARER XOAUTH2",), auth=auth) as server:
        target = smtp.SmtpEndpoint(
            host=server.host,
            port=server.port,
            security=Security.NONE,
            username=SENDER,
            timeout_seconds=TIMEOUT,
            policy=LOOPBACK,
            oauth_token="canary-token",
        )
        with pytest.raises(smtp.SmtpDeferred, match="could not check the sign-in token for now"):
            await smtp.deliver(target, sender=SENDER, recipients=["b@x.test"], data=MESSAGE, transcript=Transcript())
    assert [line.split(" ")[:2] for line in server.lines if line.startswith("AUTH")] == [
        ["AUTH", "OAUTHBEARER"],
        ["AUTH", "XOAUTH2"],
    ]


def test_tokens_and_passwords_stay_out_of_repr() -> None:
    common: dict[str, Any] = {"host": "mail.example.test", "port": 993, "security": Security.SSL}
    values: list[object] = [
        ImapAccount(**common, username="u", password="pw-secret", oauth_token="token-secret"),
        Pop3Account(**common, username="u", password="pw-secret", oauth_token="token-secret"),
        smtp.SmtpEndpoint(**common, username="u", password="pw-secret", oauth_token="token-secret"),
    ]
    for value in values:
        assert "secret" not in repr(value)
