"""Start-up and its errors, as an operator meets them (issue 19): one sentence and exit 1 for what they
can fix, JSON with --json, /health's 503 while the database is not ready, the allowed hosts, and the
modes of the files Tributary creates."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from service.config import Settings
from service.persistence import migrations
from tests.cli_runner import TRIBUTARY, cli_environment, tributary
from web.app import create_app

NOT_MIGRATED = "The database is not migrated: run `tributary db upgrade`."


def run(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`tributary ARGS` with the test's settings plus `env` (TRIBUTARY_ variables) in its environment."""
    return subprocess.run(
        [TRIBUTARY, *args],
        capture_output=True,
        text=True,
        env={**cli_environment(settings), **env},
        timeout=120,
        check=False,
    )


def assert_one_sentence(result: subprocess.CompletedProcess[str], sentence: str) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stderr == sentence + "\n"
    assert result.stdout == ""


@pytest.fixture
def unmigrated(settings: Settings) -> Settings:
    """The test's database with every migration undone (an empty schema, as before `db upgrade`)."""
    migrations.downgrade(settings, "base")
    return settings


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_version() -> None:
    result = subprocess.run([TRIBUTARY, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout == f"tributary {version('tributary')}\n"


def test_a_command_on_an_unmigrated_database_says_to_run_db_upgrade(unmigrated: Settings) -> None:
    assert_one_sentence(tributary(unmigrated, "user", "list"), NOT_MIGRATED)
    as_json = tributary(unmigrated, "user", "list", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stderr) == {"error": NOT_MIGRATED}


def test_serve_and_worker_refuse_an_unmigrated_database(unmigrated: Settings) -> None:
    assert_one_sentence(tributary(unmigrated, "serve", "--port", "1"), NOT_MIGRATED)
    assert_one_sentence(tributary(unmigrated, "worker"), NOT_MIGRATED)


def test_serve_refuses_a_database_with_migrations_pending(settings: Settings) -> None:
    migrations.downgrade(settings, "0008")
    result = tributary(settings, "serve", "--port", "1")
    assert_one_sentence(result, "The database has migrations pending: run `tributary db upgrade`.")


def test_serve_refuses_a_port_in_use(settings: Settings, busy_port: int) -> None:
    result = tributary(settings, "serve", "--port", str(busy_port))
    assert_one_sentence(
        result,
        f"Port {busy_port} on 127.0.0.1 is already in use: stop the program using it or choose another with --port.",
    )


def test_an_unreachable_database_is_one_sentence_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = Settings(data_dir=tmp_path, database_url=f"postgresql+psycopg://tributary:s3cret@127.0.0.1:{port}/mail")
    for args in (("user", "list"), ("db", "upgrade"), ("serve", "--port", "1")):
        result = tributary(settings, *args)
        assert result.returncode == 1
        assert result.stderr.startswith(f"The database postgresql+psycopg://tributary:***@127.0.0.1:{port}/mail ")
        assert "cannot be reached (" in result.stderr
        assert result.stderr.endswith("check TRIBUTARY_DATABASE_URL and that the database server runs.\n")
        assert result.stderr.count("\n") == 1
        assert "s3cret" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TRIBUTARY_RETRIEVAL_INTERVAL", "ten", "write a whole number"),
        ("TRIBUTARY_RETRIEVAL_INTERVAL", "3", "write a number of at least 10"),
        ("TRIBUTARY_SECURE_COOKIES", "maybe", "write true or false"),
        (
            "TRIBUTARY_PUBLIC_URL",
            "mail.example.com",
            "write the web app's address, for example https://mail.example.com",
        ),
        ("TRIBUTARY_ALLOWED_HOSTS", "mail.example.com,a b", "write host names separated by commas, for example"),
    ],
)
def test_an_invalid_setting_names_the_variable_and_the_form(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    result = run(Settings(data_dir=tmp_path), "user", "list", **{variable: value})
    assert result.returncode == 1
    assert result.stderr.startswith(f"{variable} is not valid: {expected}")
    assert result.stderr.count("\n") == 1


def test_serve_names_an_invalid_setting_in_json_too(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    result = run(settings, "serve", TRIBUTARY_SECURE_COOKIES="maybe")
    assert_one_sentence(result, "TRIBUTARY_SECURE_COOKIES is not valid: write true or false.")
    as_json = run(settings, "user", "list", "--json", TRIBUTARY_SECURE_COOKIES="maybe")
    assert as_json.returncode == 1
    assert json.loads(as_json.stderr) == {"error": "TRIBUTARY_SECURE_COOKIES is not valid: write true or false."}


def test_a_mistyped_command_line_with_json_is_a_json_error(tmp_path: Path) -> None:
    """A script that asked for --json reads its errors as JSON, a usage error too (exit 2, as Click's)."""
    settings = Settings(data_dir=tmp_path)
    for args, error in (
        (("retrieval", "list", "--json", "--bogus"), "No such option '--bogus'."),
        (("retrieval", "list", "--json"), "Missing option '--user'."),
        (("--json", "user", "list"), "No such option '--json'."),
    ):
        result = run(settings, *args)
        assert result.returncode == 2, result.stderr
        assert result.stdout == ""
        assert json.loads(result.stderr)["error"].startswith(error), result.stderr
    plain = run(settings, "retrieval", "list", "--bogus")
    assert plain.returncode == 2
    assert "Usage: tributary retrieval list" in plain.stderr


def test_a_data_directory_that_cannot_be_created_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    data_dir = blocker / "data"  # fails even for root, unlike a permission bit
    settings = Settings(data_dir=data_dir)
    for args in (("db", "upgrade"), ("serve", "--port", "1")):
        result = tributary(settings, *args)
        assert result.returncode == 1
        assert result.stderr.startswith(f"The data directory {data_dir} cannot be written (not a directory): ")
        assert result.stderr.endswith("or set TRIBUTARY_DATA_DIR to another directory.\n")


def test_files_tributary_creates_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = tributary(Settings(data_dir=data_dir), "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    created = list(data_dir.iterdir())
    assert {path.name for path in created} >= {"tributary.db", "secret.key"}
    for path in created:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_a_database_file_readable_by_others_is_made_owner_only(tmp_path: Path) -> None:
    """An installation from before owner-only files keeps a 0644 database: the next command narrows it
    (with its -wal and -shm files, which SQLite would otherwise recreate with the database's mode)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    old = [data_dir / name for name in ("tributary.db", "tributary.db-wal", "tributary.db-shm")]
    for path in old:
        path.touch()
        path.chmod(0o644)
    result = tributary(Settings(data_dir=data_dir), "db", "upgrade")
    assert result.returncode == 0, result.stderr
    for path in old:
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


async def test_health_answers_503_while_migrations_are_pending(unmigrated: Settings) -> None:
    async with AsyncTestClient(app=create_app(unmigrated)) as client:
        response = await client.get("/health")
        assert response.status_code == 503
        assert response.json() == {"status": "error", "database": "not migrated", "reason": NOT_MIGRATED}
        migrations.upgrade(unmigrated)
        assert (await client.get("/health")).json() == {"status": "ok", "database": "ok"}


async def test_only_the_allowed_hosts_are_answered(settings: Settings) -> None:
    allowed = settings.model_copy(update={"allowed_hosts": "mail.example.com,*.example.org"})
    async with AsyncTestClient(app=create_app(allowed)) as client:
        for host in ("mail.example.com", "webmail.example.org"):
            assert (await client.get("/health", headers={"host": host})).status_code == 200, host
        for host in ("evil.example.net", "example.com"):
            assert (await client.get("/setup", headers={"host": host})).status_code == 400, host
        # a monitor or load balancer asks /health by address, whatever Host the users' browsers send
        assert (await client.get("/health", headers={"host": "127.0.0.1:8000"})).status_code == 200
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert (await client.get("/health", headers={"host": "evil.example.net"})).status_code == 200
