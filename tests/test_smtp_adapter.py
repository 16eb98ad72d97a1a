"""The SMTP adapter against the aiosmtpd fixture in each security mode, and scripted fakes for faults."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from service.domain.values import Security
from service.errors import CredentialsRejected, TlsFailure
from service.protocols import smtp
from service.protocols.smtp.auth import mechanisms
from service.protocols.transcript import Transcript
from tests.fixtures.smtp import SmtpMode, SmtpServer, StartSmtpServer
from tests.test_smtp_fakes import LOOPBACK, TIMEOUT, RawSmtpServer

SECURITY: dict[SmtpMode, Security] = {"plain": Security.NONE, "starttls": Security.STARTTLS, "ssl": Security.SSL}
MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n"


def endpoint(
    server: SmtpServer | RawSmtpServer,
    security: Security,
    *,
    password: str = "s3cret",
    trust: Path | None = None,
    verify: bool = True,
    auth: bool = True,
) -> smtp.SmtpEndpoint:
    return smtp.SmtpEndpoint(
        host=server.host,
        port=server.port,
        security=security,
        verify_certificate=verify,
        auth_required=auth,
        username="sender@example.test",
        password=password,
        timeout_seconds=TIMEOUT,
        extra_ca_file=trust,
        policy=LOOPBACK,
    )


@pytest.mark.parametrize("mode", ["plain", "starttls", "ssl"])
async def test_each_security_mode_authenticates_and_delivers_byte_for_byte(
    smtp_server: StartSmtpServer, mode: SmtpMode
) -> None:
    server = smtp_server(mode=mode, users={"sender@example.test": "s3cret"})
    transcript = Transcript(secrets=("s3cret",))
    target = endpoint(server, SECURITY[mode], trust=server.cert_pem_path)
    report = await smtp.deliver(
        target,
        sender="a@example.test",
        recipients=["b@example.test", "c@example.test"],
        data=MESSAGE,
        transcript=transcript,
    )
    assert report.accepted == ("b@example.test", "c@example.test")
    assert report.reply is not None
    assert report.reply.code == 250
    (received,) = server.received
    assert received.data == MESSAGE
    assert (received.mail_from, received.rcpt_tos, received.auth_user) == (
        "a@example.test",
        ["b@example.test", "c@example.test"],
        "sender@example.test",
    )
    assert "s3cret" not in transcript.text()
    assert any(line.startswith("> AUTH ") and line.endswith("[redacted]") for line in transcript.lines)


@pytest.mark.parametrize("mode", ["plain", "starttls", "ssl"])
async def test_test_connection_reports_each_step(smtp_server: StartSmtpServer, mode: SmtpMode) -> None:
    server = smtp_server(mode=mode, users={"sender@example.test": "s3cret"})
    report = await smtp.probe(endpoint(server, SECURITY[mode], trust=server.cert_pem_path), transcript=Transcript())
    expected = {
        "plain": ["resolve", "connect", "greeting", "ehlo", "auth"],
        "starttls": ["resolve", "connect", "greeting", "ehlo", "starttls", "auth"],
        "ssl": ["resolve", "connect", "tls", "ehlo", "auth"],
    }[mode]
    assert [step.name for step in report.steps] == expected
    assert report.ok
    assert all(step.duration_ms >= 0 for step in report.steps)
    tls_step = next((s for s in report.steps if s.name in ("tls", "starttls")), None)
    if tls_step is not None:
        assert "certificate for commonName=localhost" in tls_step.detail
        assert "verified" in tls_step.detail
    ehlo = next(s for s in report.steps if s.name == "ehlo")
    assert "SIZE" in ehlo.detail


async def test_wrong_password_is_credentials_rejected(smtp_server: StartSmtpServer) -> None:
    server = smtp_server(mode="starttls", users={"sender@example.test": "s3cret"})
    target = endpoint(server, Security.STARTTLS, password="wrong", trust=server.cert_pem_path)
    with pytest.raises(CredentialsRejected, match="refused the username or password"):
        await smtp.deliver(
            target, sender="a@example.test", recipients=["b@x.test"], data=MESSAGE, transcript=Transcript()
        )
    report = await smtp.probe(target, transcript=Transcript())
    assert not report.ok
    assert report.steps[-1].name == "auth"
    assert "535" in report.steps[-1].detail
    assert "app password" in report.steps[-1].hint
    assert server.received == []


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
async def test_self_signed_certificate_is_refused_unless_verification_is_off(
    smtp_server: StartSmtpServer, mode: SmtpMode
) -> None:
    server = smtp_server(mode=mode, users={"sender@example.test": "s3cret"})
    with pytest.raises(TlsFailure, match="could not be verified"):
        await smtp.deliver(
            endpoint(server, SECURITY[mode]),
            sender="a@example.test",
            recipients=["b@x.test"],
            data=MESSAGE,
            transcript=Transcript(),
        )
    report = await smtp.probe(endpoint(server, SECURITY[mode]), transcript=Transcript())
    assert report.steps[-1].name == ("starttls" if mode == "starttls" else "tls")
    assert 'turn off "Verify certificate"' in report.steps[-1].hint
    assert server.received == []

    unverified = endpoint(server, SECURITY[mode], verify=False)
    await smtp.deliver(
        unverified, sender="a@example.test", recipients=["b@x.test"], data=MESSAGE, transcript=Transcript()
    )
    assert len(server.received) == 1
    report = await smtp.probe(unverified, transcript=Transcript())
    assert report.ok
    assert "not verified" in next(s for s in report.steps if s.name in ("tls", "starttls")).detail


async def test_starttls_not_offered_sends_nothing_in_clear() -> None:
    with RawSmtpServer(extensions=("AUTH PLAIN LOGIN", "8BITMIME")) as server:
        with pytest.raises(TlsFailure, match="does not offer STARTTLS"):
            await smtp.deliver(
                endpoint(server, Security.STARTTLS),
                sender="a@example.test",
                recipients=["b@x.test"],
                data=MESSAGE,
                transcript=Transcript(),
            )
        report = await smtp.probe(endpoint(server, Security.STARTTLS), transcript=Transcript())
    assert [line.split(" ")[0] for line in server.lines] == ["EHLO", "QUIT", "EHLO", "QUIT"]
    assert server.messages == []
    assert report.steps[-1].name == "starttls"
    assert not report.steps[-1].ok


async def test_ssl_against_a_plain_port_says_the_port_may_be_wrong(smtp_server: StartSmtpServer) -> None:
    server = smtp_server(mode="plain", users={"sender@example.test": "s3cret"})
    report = await smtp.probe(endpoint(server, Security.SSL), transcript=Transcript())
    assert [s.name for s in report.steps] == ["resolve", "connect", "tls"]
    assert "did not answer with TLS" in report.steps[-1].detail
    assert "port may not match" in report.steps[-1].hint


async def test_nothing_listening_is_a_connect_failure() -> None:
    with RawSmtpServer() as server:
        port = server.port
    target = smtp.SmtpEndpoint(
        host="127.0.0.1", port=port, security=Security.NONE, timeout_seconds=TIMEOUT, policy=LOOPBACK
    )
    report = await smtp.probe(target, transcript=Transcript())
    assert [(s.name, s.ok) for s in report.steps] == [("resolve", True), ("connect", False)]
    assert report.steps[-1].detail == f"Nothing answers on port {port} of 127.0.0.1."
    with pytest.raises(smtp.SmtpDeferred):
        await smtp.deliver(target, sender="a@x.test", recipients=["b@x.test"], data=MESSAGE, transcript=Transcript())


async def test_connection_dropped_after_the_final_dot_is_delivery_unknown() -> None:
    with RawSmtpServer(drop_after_data=True) as server, pytest.raises(smtp.DeliveryUnknown, match="may have been"):
        await smtp.deliver(
            endpoint(server, Security.NONE, auth=False),
            sender="a@example.test",
            recipients=["b@x.test"],
            data=MESSAGE,
            transcript=Transcript(),
        )
    assert server.messages == [MESSAGE.replace(b"\r\n.", b"\r\n..") + b".\r\n"]


# -- one sign-in attempt per session (a wrong password must not count twice in fail2ban) ------


@pytest.mark.parametrize("mode", ["plain", "starttls", "ssl"])
async def test_a_wrong_password_is_tried_once_per_session(smtp_server: StartSmtpServer, mode: SmtpMode) -> None:
    server = smtp_server(mode=mode, users={"sender@example.test": "s3cret"})
    target = endpoint(server, SECURITY[mode], password="wrong", trust=server.cert_pem_path)
    with pytest.raises(CredentialsRejected, match="refused the username or password"):
        await smtp.deliver(
            target, sender="a@example.test", recipients=["b@x.test"], data=MESSAGE, transcript=Transcript()
        )
    report = await smtp.probe(target, transcript=Transcript())
    assert report.steps[-1].name == "auth"
    assert "refused the username or password" in report.steps[-1].detail
    sessions = Counter(attempt.peer for attempt in server.auth_attempts)
    assert list(sessions.values()) == [1, 1]  # two sessions, one sign-in each
    assert [attempt.mechanism for attempt in server.auth_attempts] == ["PLAIN", "PLAIN"]
    assert not any(attempt.success for attempt in server.auth_attempts)


async def test_the_right_password_signs_in_with_plain_once(smtp_server: StartSmtpServer) -> None:
    server = smtp_server(mode="ssl", users={"sender@example.test": "s3cret"})
    report = await smtp.probe(endpoint(server, Security.SSL, trust=server.cert_pem_path), transcript=Transcript())
    assert report.ok
    assert report.steps[-1].detail == "signed in as sender@example.test with PLAIN"
    assert [(a.mechanism, a.success) for a in server.auth_attempts] == [("PLAIN", True)]


async def test_a_refused_mechanism_falls_back_but_a_refused_password_does_not() -> None:
    """504 says the mechanism is unknown, the password unjudged (RFC 4954 section 6): the next
    mechanism may go; 535 says the password is wrong: nothing more is tried."""
    auth = ("AUTH PLAIN LOGIN",)
    with RawSmtpServer(
        extensions=auth, auth={"PLAIN": "504 5.5.4 Unrecognized authentication type", "LOGIN": "334 UGFzc3dvcmQ6"}
    ) as server:
        report = await smtp.probe(endpoint(server, Security.NONE), transcript=Transcript())
    assert report.ok, report.steps
    assert report.steps[-1].detail == "signed in as sender@example.test with LOGIN"
    assert [line.split(" ")[:2] for line in server.lines if line.startswith("AUTH")] == [
        ["AUTH", "PLAIN"],
        ["AUTH", "LOGIN"],
    ]

    with RawSmtpServer(extensions=auth) as server:
        report = await smtp.probe(endpoint(server, Security.NONE), transcript=Transcript())
    assert not report.ok
    assert [line.split(" ")[:2] for line in server.lines if line.startswith("AUTH")] == [["AUTH", "PLAIN"]]


def test_the_best_mechanism_offered_comes_first() -> None:
    offered = ["login", "cram-md5", "plain", "xoauth2"]
    assert mechanisms(offered, encrypted=True) == ["plain", "login", "cram-md5"]
    assert mechanisms(offered, encrypted=False) == ["cram-md5", "plain", "login"]  # no password in clear
    assert mechanisms(["gssapi"], encrypted=True) == []
