"""The mail-server fixtures work as real clients see them.

IMAP and POP3 against the Dovecot fixture (STARTTLS/STLS and implicit TLS,
certificates verified against the fixture's own certificate, USER/PASS and
APOP), and SMTP against the aiosmtpd fixture in each mode with AUTH.
"""

import email.policy
import poplib
import re
import secrets
import ssl
from email.message import EmailMessage

import aiosmtplib
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.smtp import SmtpMode, StartSmtpServer

TIMEOUT = 10


def make_message(subject: str, sender: str = "alice@example.test") -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "bob@example.test"
    message["Subject"] = subject
    message.set_content("Hello from the fixture tests.\n")
    return message


def raw_message(subject: str) -> bytes:
    return make_message(subject).as_bytes(policy=email.policy.SMTP)


def unique_subject() -> str:
    return f"Fixture check {secrets.token_hex(4)}"


# -- IMAP --------------------------------------------------------------------------


def test_imap_starttls_login_sees_inbox_message(dovecot: DovecotServer, mail_user: MailUser) -> None:
    subject = unique_subject()
    dovecot.deliver(mail_user.email, raw_message(subject))

    with IMAPClient(dovecot.host, port=dovecot.imap_port, ssl=False, timeout=TIMEOUT) as client:
        assert b"STARTTLS" in client.capabilities()
        client.starttls(ssl_context=dovecot.ssl_context())
        client.login(mail_user.email, mail_user.password)
        client.select_folder("INBOX", readonly=True)
        uids = client.search("ALL")
        assert len(uids) == 1
        body = client.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"]
    assert f"Subject: {subject}".encode() in body


def test_imaps_sees_non_ascii_nested_folders(dovecot: DovecotServer, mail_user: MailUser) -> None:
    subject = unique_subject()
    dovecot.deliver(mail_user.email, raw_message(subject), folder="Reisen/Ça va")
    dovecot.deliver(mail_user.email, raw_message("draft"), folder="Entwürfe", flags=["\\Seen"])
    assert dovecot.message_count(mail_user.email, "Reisen/Ça va") == 1
    assert {"INBOX", "Entwürfe", "Reisen", "Reisen/Ça va"} <= set(dovecot.folders(mail_user.email))

    with IMAPClient(dovecot.host, port=dovecot.imaps_port, ssl=True, ssl_context=dovecot.ssl_context()) as client:
        client.login(mail_user.email, mail_user.password)
        listed = {name: delimiter for _flags, delimiter, name in client.list_folders()}
        assert listed["Reisen/Ça va"] == b"/"
        assert "Entwürfe" in listed

        assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == 0
        client.select_folder("Reisen/Ça va", readonly=True)
        (uid,) = client.search("ALL")
        body = client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
        assert f"Subject: {subject}".encode() in body

        client.select_folder("Entwürfe", readonly=True)
        (draft,) = client.search("ALL")
        assert b"\\Seen" in client.get_flags([draft])[draft]


def test_imap_wrong_password_raises_login_error(dovecot: DovecotServer, mail_user: MailUser) -> None:
    with (
        IMAPClient(dovecot.host, port=dovecot.imaps_port, ssl_context=dovecot.ssl_context()) as client,
        pytest.raises(LoginError),
    ):
        client.login(mail_user.email, mail_user.password + "-wrong")


def test_imaps_certificate_is_not_trusted_by_default(dovecot: DovecotServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(
            dovecot.host,
            port=dovecot.imaps_port,
            ssl_context=ssl.create_default_context(),
            timeout=TIMEOUT,
        )


# -- POP3 --------------------------------------------------------------------------


def test_pop3_stls_user_pass_stat_and_uidl(dovecot: DovecotServer, mail_user: MailUser) -> None:
    subjects = [unique_subject(), unique_subject()]
    for subject in subjects:
        dovecot.deliver(mail_user.email, raw_message(subject))

    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=TIMEOUT)
    try:
        assert "STLS" in pop.capa()
        pop.stls(context=dovecot.ssl_context())
        pop.user(mail_user.email)
        pop.pass_(mail_user.password)
        count, size = pop.stat()
        assert count == 2
        assert size > 0
        _response, listing, _octets = pop.uidl()
        uidls = [line.decode() for line in listing]
        assert len(uidls) == 2
        for number, line in enumerate(uidls, start=1):
            # %08Xu%08Xv: UID then UIDVALIDITY, 8 hex digits each (Dovecot writes lowercase).
            assert re.fullmatch(rf"{number} {number:08x}[0-9a-f]{{8}}", line), line
        _response, lines, _octets = pop.retr(2)
        assert f"Subject: {subjects[1]}".encode() in lines
    finally:
        pop.quit()


def test_pop3s_apop(dovecot: DovecotServer, mail_user: MailUser) -> None:
    dovecot.deliver(mail_user.email, raw_message(unique_subject()))

    pop = poplib.POP3_SSL(dovecot.host, dovecot.pop3s_port, context=dovecot.ssl_context(), timeout=TIMEOUT)
    try:
        assert re.search(rb"<[^<>@]+@[^<>]+>", pop.getwelcome())
        pop.apop(mail_user.email, mail_user.password)
        assert pop.stat()[0] == 1
    finally:
        pop.quit()


def test_pop3_wrong_password_is_refused(dovecot: DovecotServer, mail_user: MailUser) -> None:
    pop = poplib.POP3_SSL(dovecot.host, dovecot.pop3s_port, context=dovecot.ssl_context(), timeout=TIMEOUT)
    try:
        with pytest.raises(poplib.error_proto, match="Authentication failed"):
            pop.apop(mail_user.email, "not-" + mail_user.password)
    finally:
        pop.close()


# -- SMTP --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "starttls", "ssl"])
async def test_smtp_send_with_auth_is_recorded(smtp_server: StartSmtpServer, mode: SmtpMode) -> None:
    server = smtp_server(mode=mode, users={"sender@example.test": "s3cret"})
    subject = unique_subject()

    await aiosmtplib.send(
        make_message(subject),
        sender="bounce@example.test",
        recipients=["bob@example.test", "carol@example.test"],
        hostname=server.host,
        port=server.port,
        username="sender@example.test",
        password="s3cret",
        use_tls=mode == "ssl",
        start_tls=mode == "starttls",
        tls_context=server.ssl_context() if mode != "plain" else None,
        timeout=TIMEOUT,
    )

    (received,) = server.received
    assert received.mail_from == "bounce@example.test"
    assert received.rcpt_tos == ["bob@example.test", "carol@example.test"]
    assert f"Subject: {subject}".encode() in received.data
    assert received.auth_user == "sender@example.test"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_smtp_auth_mechanisms(smtp_server: StartSmtpServer, mechanism: str) -> None:
    server = smtp_server(mode="ssl")
    async with aiosmtplib.SMTP(
        hostname=server.host,
        port=server.port,
        use_tls=True,
        tls_context=server.ssl_context(),
        timeout=TIMEOUT,
    ) as client:
        await client.ehlo()
        assert mechanism.lower() in client.server_auth_methods  # aiosmtplib lowercases
        if mechanism == "PLAIN":
            response = await client.auth_plain("user", "pass")
        else:
            response = await client.auth_login("user", "pass")
        assert response.code == 235
        await client.sendmail("a@example.test", ["b@example.test"], raw_message("mechanism"))
    assert server.received[0].auth_user == "user"


async def test_smtp_wrong_password_gets_535(smtp_server: StartSmtpServer) -> None:
    server = smtp_server(mode="starttls")
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as excinfo:
        await aiosmtplib.send(
            make_message("nope"),
            hostname=server.host,
            port=server.port,
            username="user",
            password="wrong",
            start_tls=True,
            tls_context=server.ssl_context(),
            timeout=TIMEOUT,
        )
    assert excinfo.value.code == 535
    assert server.received == []


async def test_smtp_requires_auth(smtp_server: StartSmtpServer) -> None:
    server = smtp_server(mode="plain")
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as excinfo:
        await aiosmtplib.send(
            make_message("anonymous"),
            hostname=server.host,
            port=server.port,
            start_tls=False,
            timeout=TIMEOUT,
        )
    assert excinfo.value.code == 530
    assert server.received == []


async def test_smtp_requires_starttls(smtp_server: StartSmtpServer) -> None:
    server = smtp_server(mode="starttls", require_auth=False)
    with pytest.raises(aiosmtplib.SMTPSenderRefused, match="STARTTLS") as excinfo:
        await aiosmtplib.send(
            make_message("cleartext"),
            hostname=server.host,
            port=server.port,
            start_tls=False,
            timeout=TIMEOUT,
        )
    assert excinfo.value.code == 530
    assert server.received == []


async def test_smtp_ssl_certificate_is_not_trusted_by_default(
    smtp_server: StartSmtpServer,
) -> None:
    server = smtp_server(mode="ssl")
    with pytest.raises(aiosmtplib.SMTPConnectError) as excinfo:
        await aiosmtplib.send(
            make_message("untrusted"),
            hostname=server.host,
            port=server.port,
            use_tls=True,
            tls_context=ssl.create_default_context(),
            timeout=TIMEOUT,
        )
    assert isinstance(excinfo.value.__cause__, ssl.SSLCertVerificationError)
    assert server.received == []
