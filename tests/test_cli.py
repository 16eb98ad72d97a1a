"""The `tributary` command as an operator runs it: a real process, real database, JSON out."""

from __future__ import annotations

import json
import subprocess

import pytest

from service.config import Settings
from tests.cli_runner import tributary


def run(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return tributary(settings, *args, stdin=stdin)


def test_db_upgrade_is_idempotent(settings: Settings) -> None:
    result = run(settings, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_user_add_and_list_as_json(settings: Settings) -> None:
    added = run(
        settings, "user", "add", "root@example.test", "--admin", "--password-stdin", "--json", stdin="s3cret-pass\n"
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {
        "id": 1,
        "email": "root@example.test",
        "display_name": "",
        "is_admin": True,
        "domain": "example.test",
    }
    assert "s3cret-pass" not in added.stdout + added.stderr
    listed = run(settings, "user", "list", "--json")
    assert [u["email"] for u in json.loads(listed.stdout)] == ["root@example.test"]


def test_domain_set_switches_features(settings: Settings) -> None:
    result = run(settings, "domain", "set", "example.test", "--retrieval", "off", "--smtp-accounts", "on", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["name"], shown["retrieval_enabled"], shown["smtp_accounts_enabled"]) == ("example.test", False, True)
    again = run(settings, "domain", "set", "example.test", "--smtp-accounts", "off", "--json")
    assert (json.loads(again.stdout)["retrieval_enabled"], json.loads(again.stdout)["smtp_accounts_enabled"]) == (
        False,
        False,
    )


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("user", "add", "not-an-address", "--password-stdin"), "s3cret-pass\n", "is not a valid email address"),
        (("user", "add", "x@example.test", "--password-stdin"), "short\n", "at least 8 characters"),
    ],
)
def test_errors_are_one_sentence_on_stderr(settings: Settings, args: tuple[str, ...], stdin: str, message: str) -> None:
    result = run(settings, *args, stdin=stdin)
    assert result.returncode == 1
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_duplicate_user_is_refused(settings: Settings) -> None:
    assert run(settings, "user", "add", "a@example.test", "--password-stdin", stdin="s3cret-pass\n").returncode == 0
    again = run(settings, "user", "add", "a@example.test", "--password-stdin", stdin="s3cret-pass\n")
    assert again.returncode == 1
    assert again.stderr.strip() == "A user with the address a@example.test already exists."
