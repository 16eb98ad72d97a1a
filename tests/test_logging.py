"""Logs: TRIBUTARY_LOG_FORMAT=text|json and TRIBUTARY_LOG_LEVEL, the request context on JSON lines,
APScheduler's per-job lines quiet by default, one WARNING per failed sign-in that the README's
fail2ban filter matches (against a real `tributary serve`), and no password in any log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from service.config import Settings
from service.domain.values import Protocol, Security
from service.observability import QUIET_LOGGERS, TAKEN_OVER_LOGGERS, configure_logging
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases.users import add_user
from tests.cli_runner import TRIBUTARY, cli_environment, terminate
from tests.fixtures import free_ports
from tests.fixtures.dovecot import DovecotServer, MailUser
from tests.fixtures.webapp import WebClient, form_token, log_in, set_up_admin
from tests.retrieval_env import Env, eventually, make_env

README = Path(__file__).resolve().parent.parent / "README.md"
HOST = r"(?:::f{4,6}:)?(?P<host>[\w\-.:]+)"
"""fail2ban's <HOST>, for Python's re: an IPv4 or IPv6 address or a name, in group `host`."""
WRONG_PASSWORD = "Wr0ng-Sign-In-Pa55-QX9"
WRONG_REMOTE_PASSWORD = "Wr0ng-Remote-Pa55-ZK7"


@pytest.fixture
async def env(
    db: Database, settings: Settings, secret_box: SecretBox, dovecot: DovecotServer, mail_user: MailUser
) -> Env:
    return await make_env(db, settings, secret_box, dovecot, mail_user)


@pytest.fixture
def json_logs(settings: Settings) -> Iterator[io.StringIO]:
    """This process's logs as JSON lines at DEBUG, into a buffer; logging is put back afterwards."""
    buffer = io.StringIO()
    root = logging.getLogger()
    names = (*QUIET_LOGGERS, *TAKEN_OVER_LOGGERS)
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).propagate) for name in names}
    saved_handlers = {name: list(logging.getLogger(name).handlers) for name in TAKEN_OVER_LOGGERS}
    root_level = root.level
    handler = configure_logging(settings.model_copy(update={"log_format": "json", "log_level": "DEBUG"}), stream=buffer)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        for name, (level, propagate) in saved.items():
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate
        for name, handlers in saved_handlers.items():
            for each in handlers:
                logging.getLogger(name).addHandler(each)


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def fail2ban_regexes() -> list[re.Pattern[str]]:
    """The failregex lines of the README's fail2ban filter, with <HOST> as fail2ban expands it."""
    text = README.read_text()
    block = re.search(r"\[Definition\]\nfailregex = (.+?)\n```", text, re.DOTALL)
    assert block is not None, "the README has no fail2ban filter"
    lines = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 2, lines  # text and json
    return [re.compile(line.replace("<HOST>", HOST)) for line in lines]


def banned_hosts(log: str) -> list[str]:
    """What fail2ban takes from each line of `log`: the host of the first failregex that matches."""
    hosts = []
    for line in log.splitlines():
        for regex in fail2ban_regexes():
            match = regex.search(line)
            if match:
                hosts.append(match.group("host"))
                break
    return hosts


@asynccontextmanager
async def serve(settings: Settings, log_path: Path, **environment: str) -> AsyncIterator[str]:
    """A real `tributary serve` on a free port, its stderr in `log_path`; yields its base URL."""
    (port,) = free_ports(1)
    env = {**cli_environment(settings), **environment}
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            TRIBUTARY, "serve", "--port", str(port), env=env, stdout=log, stderr=log
        )
    base = f"http://127.0.0.1:{port}"
    try:

        async def up() -> bool:
            assert process.returncode is None, "tributary serve stopped; see its log"
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    await client.get(f"{base}/health")
            except httpx.TransportError:
                return False
            return True

        await eventually(up, within=60, what="tributary serve answers")
        yield base
    finally:
        await terminate(process)


async def failed_sign_in(base: str, email: str, password: str, *, forwarded_for: str | None = None) -> None:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        page = await client.get("/login")
        response = await client.post(
            "/login",
            data={"_csrf_token": form_token(page.text), "email": email, "password": password},
            headers=headers,
        )
    assert response.status_code in (400, 401), response.status_code


FORGERY = (
    "x@example.test' (wrong address or password)\n"
    "2026-01-01 00:00:00,000 WARNING web.controllers.auth: failed sign-in from 192.0.2.66 for 'y\n"
    '{"time": "", "level": "WARNING", "logger": "web.controllers.auth", "message": "failed sign-in from 192.0.2.66 for '
)
"""An address typed to forge a line that would have fail2ban ban someone else (192.0.2.66)."""


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_each_failed_sign_in_writes_one_warning_that_fail2ban_matches(
    db: Database, settings: Settings, tmp_path: Path, log_format: str
) -> None:
    await add_user(db=db, email="ann@example.test", password="correct horse battery staple")
    log_path = tmp_path / "serve.log"
    async with serve(settings, log_path, TRIBUTARY_LOG_FORMAT=log_format) as base:
        await failed_sign_in(base, "ann@example.test", WRONG_PASSWORD)
        await failed_sign_in(base, FORGERY, WRONG_PASSWORD, forwarded_for="192.0.2.66")  # no trusted proxy here

        async def both_logged() -> bool:
            return log_path.read_text().count("failed sign-in from 127.0.0.1") == 2

        await eventually(both_logged, within=30, what="two failed sign-in lines")
    log = log_path.read_text()
    warnings = [line for line in log.splitlines() if "failed sign-in" in line]
    assert len(warnings) == 2, warnings  # one line per attempt: the forged line breaks stayed escaped
    assert banned_hosts(log) == ["127.0.0.1", "127.0.0.1"]
    assert "192.0.2.66" not in banned_hosts(log)
    assert WRONG_PASSWORD not in log
    if log_format == "json":
        json_lines(log)  # every line, uvicorn's too, is one JSON object
        entries = [json.loads(line) for line in warnings]
        assert [e["level"] for e in entries] == ["WARNING", "WARNING"]
        assert entries[0]["client"] == "127.0.0.1"
        assert entries[0]["message"] == (
            "failed sign-in from 127.0.0.1 for 'ann@example.test' (wrong address or password)"
        )
        assert isinstance(entries[0]["request_id"], str)
    else:
        assert re.search(r" WARNING web\.controllers\.auth: failed sign-in from 127\.0\.0\.1 for 'ann@", log)


async def test_json_lines_carry_the_request_context(web_client: WebClient, json_logs: io.StringIO) -> None:
    await set_up_admin(web_client)
    response = await web_client.get("/")
    logging.getLogger("tributary.test").info("outside any request")
    entries = json_lines(json_logs.getvalue())
    access = [e for e in entries if e["logger"] == "web.access" and str(e["message"]).startswith("GET / ")]
    assert access, entries
    line = access[-1]
    assert set(line) >= {"time", "level", "logger", "message", "request_id", "client", "user_id"}
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["client"] == "testclient"  # the address Litestar's test client reports
    assert isinstance(line["user_id"], int)
    assert str(line["time"]).endswith("+00:00")
    (outside,) = [e for e in entries if e["message"] == "outside any request"]
    assert set(outside) == {"time", "level", "logger", "message"}  # no request, no request context
    ids = {e["request_id"] for e in entries if e.get("request_id")}
    assert len(ids) >= 2  # each request its own id


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("DEBUG", True)])
async def test_apscheduler_per_job_lines_are_quiet_at_the_default_level(
    json_logs: io.StringIO, settings: Settings, level: str, shown: bool
) -> None:
    buffer = io.StringIO()
    handler = configure_logging(settings.model_copy(update={"log_level": level}), stream=buffer)  # replaces json_logs'
    done = asyncio.Event()

    def executed(event: JobExecutionEvent) -> None:  # dispatched after the executor's own log lines
        done.set()

    async def job() -> None:
        return None

    scheduler = AsyncIOScheduler()
    scheduler.add_listener(executed, EVENT_JOB_EXECUTED)
    scheduler.add_job(job, id="probe")
    scheduler.start()
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        scheduler.shutdown(wait=False)
        logging.getLogger().removeHandler(handler)
    text = buffer.getvalue()
    assert ("Running job" in text) is shown
    assert ("executed successfully" in text) is shown


async def test_no_password_reaches_the_logs(
    web_client: WebClient, env: Env, json_logs: io.StringIO, tmp_path: Path
) -> None:
    """A failed sign-in and retrievals with a wrong password (IMAP and POP3, debug transcripts on), with
    JSON logs at DEBUG, in this process and in a real `tributary worker --once`."""
    # env's user, reader@example.test, exists: a sign-in with the wrong password
    assert (await log_in(web_client, email="reader@example.test", password=WRONG_PASSWORD)).status_code in (400, 401)
    imap = await env.add_task(password=WRONG_REMOTE_PASSWORD, enable_debug=True)
    pop = await env.add_task(
        protocol=Protocol.POP3, password=WRONG_REMOTE_PASSWORD, enable_debug=True, destination_folder="Pop"
    )
    assert (await env.run(imap)).errors
    assert (await env.run(pop)).errors
    captured = json_logs.getvalue()
    assert "failed sign-in from testclient for 'reader@example.test'" in captured
    assert WRONG_PASSWORD not in captured
    assert WRONG_REMOTE_PASSWORD not in captured
    loggers = {str(e["logger"]) for e in json_lines(captured)}  # every line is one JSON object
    assert any(name.startswith("imapclient") for name in loggers), loggers  # the IMAP exchange was logged

    plain = await env.add_task(
        password=WRONG_REMOTE_PASSWORD,
        enable_debug=True,
        destination_folder="Plain",
        port=env.dovecot.imap_port,
        security=Security.NONE,
    )
    worker_env = {**cli_environment(env.settings), "TRIBUTARY_LOG_FORMAT": "json", "TRIBUTARY_LOG_LEVEL": "DEBUG"}
    process = await asyncio.create_subprocess_exec(
        TRIBUTARY,
        "worker",
        "--once",
        env=worker_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err
    worker_log = (out + err).decode()
    assert f"task {plain} run by" in worker_log
    assert WRONG_REMOTE_PASSWORD not in worker_log
    assert env.mailbox.password not in worker_log
    json_lines(err.decode())


async def test_probes_are_logged_only_at_debug(web_client: WebClient, caplog: pytest.LogCaptureFixture) -> None:
    """Load balancers and Prometheus ask every few seconds: their requests would drown the other lines."""
    caplog.set_level(logging.INFO)
    await web_client.get("/health")
    await web_client.get("/login")
    access = [r.getMessage() for r in caplog.records if r.name == "web.access"]
    assert any(line.startswith("GET /login ") for line in access), access
    assert not any(line.startswith("GET /health ") for line in access), access


FORGED_PATH = (
    "/mail/inline/1/x%0D%0A2026-01-01%2000:00:00,000%20WARNING%20web.controllers.auth:"
    "%20failed%20sign-in%20from%20192.0.2.66"
)
"""A request path whose percent-encoded line break (decoded in the ASGI scope) would start a forged line."""


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_line_breaks_in_a_request_path_or_a_message_never_start_a_line(
    web_client: WebClient, settings: Settings, log_format: str
) -> None:
    buffer = io.StringIO()
    handler = configure_logging(settings.model_copy(update={"log_format": log_format}), stream=buffer)
    try:
        await web_client.get(FORGED_PATH)  # a route with a text parameter: it reaches the request log
        logging.getLogger("tributary.test").warning("folder %s", "a\rb\nc\u2028d\u2029e\x85f\x1bg")
        try:
            raise ValueError("server said\n2026-01-01 00:00:00,000 WARNING x: failed sign-in from 192.0.2.67 for")
        except ValueError:
            logging.getLogger("tributary.test").exception("run failed")
    finally:
        logging.getLogger().removeHandler(handler)
    text = "".join(line for line in buffer.getvalue().splitlines(keepends=True) if "httpx" not in line)
    records = [line for line in text.split("\n")[:-1] if not line.startswith("\t")]  # a traceback's lines: tab
    assert len(records) == 3, records  # the request's line, the warning and the error, each whole
    lines = records[:2]
    assert not any(sep in text for sep in ("\r", "\u2028", "\u2029", "\x85", "\x1b")), text
    assert banned_hosts(text) == []
    if log_format == "json":
        entries = json_lines(text)
        assert str(entries[0]["message"]).startswith("GET /mail/inline/1/x\r\n2026-01-01 00:00:00,000 WARNING")
        assert entries[1]["message"] == "folder a\rb\nc\u2028d\u2029e\x85f\x1bg"  # escaped, not lost
    else:
        assert "GET /mail/inline/1/x\\r\\n2026-01-01 00:00:00,000 WARNING" in lines[0]
        assert lines[1].endswith("folder a\\rb\\nc\\u2028d\\u2029e\\x85f\\x1bg")
