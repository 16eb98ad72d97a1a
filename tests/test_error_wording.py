"""How Test Connection words a server that cannot be used, for IMAP, POP3 and SMTP alike: one plain
sentence naming the host and port, and one hint that fits the cause (service.protocols.network),
never an exception's class name or errno. And the warning when a server offers STARTTLS to a task
or account set to send its password in clear.

The faults are real sockets on loopback: a port nobody listens on, a `.invalid` name (RFC 6761:
never resolves), a tarpit that accepts and never says a word, a server that closes at once.
"""

from __future__ import annotations

import errno
import re
import socket
import threading
from collections.abc import Iterator

import pytest

from service.config import Settings
from service.domain.connection_test import ConnectionReport, Step
from service.domain.smtp_accounts import SmtpAccountInput
from service.domain.values import Protocol, RetrievalMethod, Security
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.protocols.network import CONNECT_TIMEOUT_SECONDS, network_error
from service.usecases.connection_tests import SmtpSettings, Subject, TaskSettings, run_connection_test
from service.usecases.retrieval_tasks import NewTask, add_task
from service.usecases.users import find_user
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.faults import _Server
from tests.fixtures.smtp import StartSmtpServer
from tests.fixtures.webapp import ADMIN_EMAIL, WebClient, set_up_admin
from tests.settings_web import htmx_post, task_fields, text_of
from tests.test_smtp_fakes import make_user

KINDS = ["imap", "pop3", "smtp"]
TIMEOUT = 5  # the smallest timeout a task or an account may have
RAW = re.compile(r"Error\b|Errno|Exception|\[Errno|gaierror")


class Silent(_Server):
    """A tarpit: accepts, then never says a word (until the test ends)."""

    def __init__(self) -> None:
        super().__init__()
        self._done = threading.Event()

    def handle(self, client: socket.socket) -> None:
        with client:
            self._done.wait(30)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        super().__exit__(None, None, None)


class Closing(_Server):
    """Accepts, then closes at once."""

    def handle(self, client: socket.socket) -> None:
        client.close()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that is bound (so nobody else takes it) but not listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _subject(
    kind: str,
    host: str,
    port: int,
    *,
    security: Security = Security.NONE,
    username: str = "someone",
    password: str = "secret",
) -> Subject:
    if kind == "smtp":
        account = SmtpAccountInput(
            email_address="alice@example.test",
            host=host,
            port=port,
            security=security,
            auth_required=True,
            username=username,
            timeout_seconds=TIMEOUT,
        )
        return SmtpSettings(account, password=password)
    new = NewTask(
        protocol=Protocol(kind),
        host=host,
        port=port,
        security=security,
        username=username,
        password=password,
        timeout_seconds=TIMEOUT,
    )
    return TaskSettings(new)


async def _test(db: Database, secret_box: SecretBox, settings: Settings, subject: Subject) -> ConnectionReport:
    user_id = await make_user(db)
    return await run_connection_test(db=db, secret_box=secret_box, settings=settings, user_id=user_id, subject=subject)


def _failed(report: ConnectionReport) -> Step:
    assert not report.ok
    failed = report.steps[-1]
    assert not failed.ok
    for step in report.steps:  # no raw exception text anywhere the user reads
        assert not RAW.search(step.detail), step.detail
        assert not RAW.search(step.hint), step.hint
    assert failed.hint, "every failure comes with a hint"
    assert failed.hint not in failed.detail, "the hint is said once, beside the sentence"
    return failed


@pytest.mark.parametrize("kind", KINDS)
async def test_a_refused_port_says_nothing_answers_there(
    kind: str, db: Database, secret_box: SecretBox, settings: Settings, refused_port: int
) -> None:
    report = await _test(db, secret_box, settings, _subject(kind, "127.0.0.1", refused_port))
    failed = _failed(report)
    assert (failed.name, failed.detail, failed.hint) == (
        "connect",
        f"Nothing answers on port {refused_port} of 127.0.0.1.",
        "Check the port and that the server runs.",
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_a_name_that_does_not_resolve_asks_to_check_its_spelling(
    kind: str, db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    report = await _test(db, secret_box, settings, _subject(kind, "no-such-server.invalid", 143))
    failed = _failed(report)
    assert (failed.name, failed.detail, failed.hint) == (
        "resolve",
        "no-such-server.invalid could not be found.",
        "Check the spelling of the server address.",
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_a_tarpit_names_the_timeout_that_applied(
    kind: str, db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    with Silent() as silent:
        report = await _test(db, secret_box, settings, _subject(kind, "127.0.0.1", silent.port))
    failed = _failed(report)
    assert [step.name for step in report.steps if step.ok] == ["resolve", "connect"]
    assert failed.name == "greeting"
    said = re.search(r"within (\d+) seconds", failed.detail)
    assert said is not None, failed.detail
    assert int(said.group(1)) == TIMEOUT  # min(connect timeout, the task's timeout): the one that applied
    assert failed.duration_ms >= TIMEOUT * 1000 * 0.9  # and it is true: that long was waited
    assert f"port {silent.port}" in failed.detail
    assert "security setting" in failed.hint  # connected but silent: often plain text sent to a TLS port


def test_the_connect_step_names_the_connect_timeout_not_the_read_timeout() -> None:
    """A task whose (read) timeout is 60 s waits at most CONNECT_TIMEOUT_SECONDS for the connection
    and the greeting: the sentence says the number that applied (issue 17: "60 s after 15 s")."""
    connect = network_error(TimeoutError(), host="h", port=143, step="connect", timeout=60, expired=False)
    assert connect is not None
    assert f"within {CONNECT_TIMEOUT_SECONDS:g} seconds" in connect.message
    later = network_error(TimeoutError(), host="h", port=143, step="select INBOX", timeout=60, expired=False)
    assert later is not None
    assert "within 60 seconds" in later.message


@pytest.mark.parametrize("kind", KINDS)
async def test_a_server_that_closes_at_once_is_said_plainly(
    kind: str, db: Database, secret_box: SecretBox, settings: Settings
) -> None:
    with Closing() as closing:
        report = await _test(db, secret_box, settings, _subject(kind, "127.0.0.1", closing.port))
    failed = _failed(report)
    assert failed.name == "greeting"
    assert failed.detail.startswith("127.0.0.1 ")
    assert "closed the connection" in failed.detail or "did not greet" in failed.detail


# -- STARTTLS offered while the security is None ------------------------------------------------


def _warning(report: ConnectionReport) -> Step | None:
    return next((step for step in report.steps if step.warning), None)


@pytest.mark.parametrize("kind", ["imap", "pop3"])
async def test_dovecot_offering_starttls_to_a_task_sending_its_password_in_clear_warns(
    kind: str, db: Database, secret_box: SecretBox, settings: Settings, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    port = dovecot.imap_port if kind == "imap" else dovecot.pop3_port
    report = await _test(
        db,
        secret_box,
        settings,
        _subject(kind, "127.0.0.1", port, username=mail_user.email, password=mail_user.password),
    )
    assert report.ok, report.steps  # a warning, not a failure: the connection works
    warning = _warning(report)
    assert warning is not None
    names = [step.name for step in report.steps]
    assert names.index("cleartext") == names.index("capabilities") + 1
    assert warning.detail == (
        "127.0.0.1 offers STARTTLS, but this task is set to send the password in clear (security None)."
    )
    assert "Choose STARTTLS" in warning.hint

    settings_ca = settings.model_copy(update={"extra_ca_file": dovecot.cert_pem_path})
    secured = await _test_again(
        db,
        secret_box,
        settings_ca,
        _subject(
            kind, "127.0.0.1", port, security=Security.STARTTLS, username=mail_user.email, password=mail_user.password
        ),
    )
    assert secured.ok, secured.steps
    assert _warning(secured) is None


async def _test_again(db: Database, secret_box: SecretBox, settings: Settings, subject: Subject) -> ConnectionReport:
    user_id = await make_user(db, email="bob@example.test")
    return await run_connection_test(db=db, secret_box=secret_box, settings=settings, user_id=user_id, subject=subject)


async def test_an_smtp_server_offering_starttls_to_an_account_signing_in_in_clear_warns(
    db: Database, secret_box: SecretBox, settings: Settings, smtp_server: StartSmtpServer
) -> None:
    offering = smtp_server(mode="starttls", require_starttls=False)
    report = await _test(
        db, secret_box, settings, _subject("smtp", "127.0.0.1", offering.port, username="user", password="pass")
    )
    warning = _warning(report)
    assert warning is not None
    names = [step.name for step in report.steps]
    assert names.index("cleartext") == names.index("ehlo") + 1
    assert warning.detail.startswith("127.0.0.1 offers STARTTLS, but this account is set to send the password")

    plain = smtp_server(mode="plain")
    quiet = await _test_again(
        db, secret_box, settings, _subject("smtp", "127.0.0.1", plain.port, username="user", password="pass")
    )
    assert quiet.ok, quiet.steps
    assert _warning(quiet) is None


async def test_the_settings_page_shows_the_warning(
    web_client: WebClient, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    await set_up_admin(web_client)
    fields = task_fields(dovecot, mail_user, protocol="imap", security="none", port=str(dovecot.imap_port))
    tested = await htmx_post(web_client, "/settings/retrieval/test", fields)
    shown = text_of(tested.text)
    assert "Test Connection succeeded, with a warning." in shown
    assert "Password protection: warning" in shown
    assert "offers STARTTLS, but this task is set to send the password in clear" in shown
    assert "Choose STARTTLS" in shown


@pytest.mark.parametrize("kind", ["imap", "pop3"])
async def test_a_run_against_a_refused_port_says_the_same_sentence(
    kind: str, web_client: WebClient, db: Database, secret_box: SecretBox, refused_port: int
) -> None:
    """Retrieve Messages Now, and the task's "Last error", word the failure as Test Connection does."""
    await set_up_admin(web_client)
    user = await find_user(db=db, email=ADMIN_EMAIL)
    new = NewTask(
        protocol=Protocol(kind),
        host="127.0.0.1",
        port=refused_port,
        security=Security.NONE,
        username="someone",
        password="secret",
        timeout_seconds=TIMEOUT,
        method=RetrievalMethod.MANUAL,
    )
    task = await add_task(db=db, secret_box=secret_box, user_id=user.id, new=new)
    ran = text_of((await htmx_post(web_client, f"/settings/retrieval/{task.id}/run")).text)
    sentence = f"Nothing answers on port {refused_port} of 127.0.0.1. Check the port and that the server runs."
    assert sentence in ran
    assert not RAW.search(ran)


@pytest.mark.parametrize(
    ("exc", "sentence", "hint"),
    [
        (
            OSError(errno.ENETUNREACH, "Network is unreachable"),
            "h cannot be reached from this machine (port 993).",
            "connected to the network",
        ),
        (
            ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
            "h closed the connection unexpectedly during login (port 993).",
            "try again later",
        ),
        (EOFError(), "h closed the connection unexpectedly during login (port 993).", "try again later"),
    ],
)
def test_unreachable_and_reset_are_worded_without_errno(exc: BaseException, sentence: str, hint: str) -> None:
    """Causes loopback cannot produce on demand, worded by the same function the adapters use."""
    error = network_error(exc, host="h", port=993, step="login", timeout=30, expired=False)
    assert error is not None
    assert error.message.startswith(sentence + " ")
    assert hint in error.message
    assert not RAW.search(error.message)
