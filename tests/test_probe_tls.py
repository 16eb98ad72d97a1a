"""Test Connection with a certificate that does not verify: the failure is the tls step's, with a
hint about the certificate (issuer, name, expiry, and "Verify certificate"), never the greeting
step's "the port may not match". Against the tests' self-signed Dovecot and aiosmtpd."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from service.domain.connection_test import ConnectionReport
from service.domain.values import Security
from service.protocols import pop3, smtp
from service.protocols.imap.probe import test_connection as imap_test_connection
from service.protocols.imap.session import ImapAccount
from service.protocols.pop3 import Pop3Account
from service.protocols.tls import CERTIFICATE_HINT, WRONG_PORT_HINT, CertificateNotVerified, client_context, tls_failure
from service.protocols.transcript import Transcript
from tests.fixtures.certs import make_self_signed_cert
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.smtp import SmtpMode, StartSmtpServer
from tests.test_smtp_fakes import LOOPBACK

UNTRUSTED = "not issued by an authority this machine trusts"


def assert_certificate_failure(report: ConnectionReport, steps: list[str]) -> None:
    assert [s.name for s in report.steps] == steps
    assert all(s.ok for s in report.steps[:-1])
    failed = report.steps[-1]
    assert not failed.ok
    assert "could not be verified" in failed.detail
    assert UNTRUSTED in failed.detail
    assert failed.hint == CERTIFICATE_HINT
    assert "port may not match" not in failed.hint
    assert 'turn off "Verify certificate"' in failed.hint


def imap(dovecot: DovecotServer, user: MailUser, security: Security, port: int, **changes: object) -> ImapAccount:
    return ImapAccount(
        host=dovecot.host,
        port=port,
        security=security,
        username=user.email,
        password=user.password,
        timeout_seconds=10,
        policy=LOOPBACK,
        **changes,  # type: ignore[arg-type]
    )


def test_imap_ssl_with_an_untrusted_certificate_fails_the_tls_step(dovecot: DovecotServer, mail_user: MailUser) -> None:
    report = imap_test_connection(imap(dovecot, mail_user, Security.SSL, dovecot.imaps_port))
    assert_certificate_failure(report, ["resolve", "connect", "tls"])  # TLS comes before any greeting


def test_imap_starttls_with_an_untrusted_certificate_fails_the_tls_step_after_the_greeting(
    dovecot: DovecotServer, mail_user: MailUser
) -> None:
    report = imap_test_connection(imap(dovecot, mail_user, Security.STARTTLS, dovecot.imap_port))
    assert_certificate_failure(report, ["resolve", "connect", "greeting", "tls"])
    assert "Dovecot" in report.steps[2].detail  # the greeting, in clear before STARTTLS


def test_imap_trusted_or_unverified_certificates_pass(dovecot: DovecotServer, mail_user: MailUser) -> None:
    trusted = imap_test_connection(
        imap(dovecot, mail_user, Security.SSL, dovecot.imaps_port, extra_ca_file=dovecot.cert_pem_path)
    )
    assert trusted.ok, trusted.steps
    unverified = imap_test_connection(
        imap(dovecot, mail_user, Security.STARTTLS, dovecot.imap_port, verify_certificate=False)
    )
    assert unverified.ok, unverified.steps


def test_imap_ssl_on_the_plain_port_still_blames_the_port(dovecot: DovecotServer, mail_user: MailUser) -> None:
    report = imap_test_connection(imap(dovecot, mail_user, Security.SSL, dovecot.imap_port))
    assert [s.name for s in report.steps] == ["resolve", "connect", "tls"]
    assert "did not answer with TLS" in report.steps[-1].detail
    assert report.steps[-1].hint == WRONG_PORT_HINT


@pytest.mark.parametrize(
    ("security", "port_name", "steps"),
    [
        (Security.SSL, "pop3s_port", ["resolve", "connect", "tls"]),
        (Security.STARTTLS, "pop3_port", ["resolve", "connect", "greeting", "tls"]),
    ],
)
def test_pop3_with_an_untrusted_certificate_fails_the_tls_step(
    dovecot: DovecotServer, mail_user: MailUser, security: Security, port_name: str, steps: list[str]
) -> None:
    account = Pop3Account(
        host=dovecot.host,
        port=getattr(dovecot, port_name),
        security=security,
        username=mail_user.email,
        password=mail_user.password,
        timeout_seconds=10,
        policy=LOOPBACK,
    )
    assert_certificate_failure(pop3.test_connection(account), steps)


@pytest.mark.parametrize(
    ("mode", "security", "step"), [("ssl", Security.SSL, "tls"), ("starttls", Security.STARTTLS, "starttls")]
)
async def test_smtp_with_an_untrusted_certificate_fails_its_tls_step(
    smtp_server: StartSmtpServer, mode: SmtpMode, security: Security, step: str
) -> None:
    server = smtp_server(mode=mode, users={"sender@example.test": "s3cret"})
    endpoint = smtp.SmtpEndpoint(
        host=server.host,
        port=server.port,
        security=security,
        verify_certificate=True,
        auth_required=True,
        username="sender@example.test",
        password="s3cret",
        timeout_seconds=10,
        policy=LOOPBACK,
    )
    report = await smtp.probe(endpoint, transcript=Transcript())
    expected = (
        ["resolve", "connect", "tls"] if mode == "ssl" else ["resolve", "connect", "greeting", "ehlo", "starttls"]
    )
    assert_certificate_failure(report, expected)
    assert report.steps[-1].name == step


def _handshake_failure(tmp_path: Path, *, server_hostname: str) -> BaseException:
    """A real TLS handshake over a socket pair against a certificate for "localhost" (and 127.0.0.1)
    that the client trusts; returns the client's error."""
    files = make_self_signed_cert(tmp_path)
    server_side, client_side = socket.socketpair()
    server = threading.Thread(target=_serve_once, args=(files.server_context(), server_side))
    server.start()
    try:
        context = client_context(verify=True, extra_ca_file=files.cert_path)
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            context.wrap_socket(client_side, server_hostname=server_hostname)
    finally:
        client_side.close()
        server.join(10)
    return caught.value


def _serve_once(context: ssl.SSLContext, sock: socket.socket) -> None:
    try:
        context.wrap_socket(sock, server_side=True)
    except (ssl.SSLError, OSError):
        pass  # the client refused the certificate
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("server_hostname", "problem"),
    [
        ("mail.example.test", "it is for another name than the server address"),
        ("127.0.0.2", "it is for another address than the server address"),
    ],
)
def test_a_certificate_for_another_name_is_named(tmp_path: Path, server_hostname: str, problem: str) -> None:
    failure = tls_failure(_handshake_failure(tmp_path, server_hostname=server_hostname), "mail.example.test")
    assert isinstance(failure, CertificateNotVerified)
    assert f"could not be verified: {problem}" in failure.message
