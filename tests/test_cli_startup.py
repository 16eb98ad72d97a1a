"""Start-up of the `tributary` command: each command's module is imported only when that command runs,
while `tributary --help` still lists every command with its one-line help (service.cli.group).

A retrieval run is mostly start-up when there is little new mail, so the retrieval path is also kept
free of what it never uses (the OAuth2 HTTP client, the sending stack, the web face)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import web.cli  # noqa: F401  (adds `serve` to the group)
from service.cli import COMMANDS, cli
from service.config import Settings
from tests.cli_runner import TRIBUTARY, cli_environment

EVERY_COMMAND = {
    "backup",
    "bodies",
    "db",
    "discover",
    "domain",
    "export",
    "folders",
    "messages",
    "outbox",
    "restore",
    "retrieval",
    "search",
    "secrets",
    "send",
    "serve",
    "smtp",
    "user",
    "worker",
}
COMMAND_MODULES = set(COMMANDS)
# Never needed to run a password task's retrieval: OAuth2's HTTP client, sending, password strength, the web.
NOT_FOR_RETRIEVAL = {
    "httpx",
    "authlib",
    "aiosmtplib",
    "zxcvbn",
    "litestar",
    "jinja2",
    "service.usecases.oauth",
    "service.usecases.sending.queue",
}


def listed_commands(help_text: str) -> dict[str, str]:
    """The Commands section of a --help page: each command's name and the start of its help."""
    rows = help_text.split("\nCommands:\n", 1)[1].splitlines()
    return {name: rest.strip() for name, _, rest in (row.strip().partition(" ") for row in rows if row.strip())}


def imported_modules(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the `tributary` executable with `-X importtime`: its result, and every module it imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", TRIBUTARY, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    modules = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "service.cli" in modules, result.stderr[-2000:]
    return result, modules


def _module_of(command: click.Command) -> str | None:
    return getattr(command.callback, "__module__", None)


def test_help_lists_every_command_with_its_help() -> None:
    result = CliRunner().invoke(cli, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    listed = listed_commands(result.output)
    assert set(listed) == EVERY_COMMAND
    assert listed["retrieval"] == "Email Retrieval tasks: remote IMAP and POP3 mailboxes pulled into the local one."
    assert listed["db"] == "The database schema."


def test_the_summary_table_matches_the_commands_its_modules_define() -> None:
    """A command missing from service.cli.COMMANDS would vanish from --help and be unknown to tributary;
    a summary that drifted from the command's docstring would show a different line in --help."""
    for module, summaries in COMMANDS.items():
        importlib.import_module(module)
        defined = {
            name for name, command in cli.commands.items() if getattr(command.callback, "__module__", None) == module
        }
        assert defined == set(summaries), module
    assert set(cli.commands) == EVERY_COMMAND
    for name, summary in ((name, s) for summaries in COMMANDS.values() for name, s in summaries.items()):
        command, stub = cli.commands[name], click.Command(name, help=summary)
        for limit in (20, 45, 70, 1000):
            assert stub.get_short_help_str(limit) == command.get_short_help_str(limit), name


def test_help_and_version_import_no_command_module() -> None:
    for args in (["--help"], ["--version"]):
        result, modules = imported_modules(*args)
        assert result.returncode == 0, result.stderr[-2000:]
        assert not modules & COMMAND_MODULES, args
        assert "sqlalchemy" not in modules, args
    assert result.stdout.startswith("tributary ")


def test_a_group_imports_its_own_module_only() -> None:
    result, modules = imported_modules("retrieval", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage: tributary retrieval" in result.stdout
    assert modules & COMMAND_MODULES == {"service.cli.retrieval"}


def test_a_retrieval_run_loads_neither_oauth_nor_sending_nor_the_web(settings: Settings) -> None:
    result, modules = imported_modules("retrieval", "run", "424242", "--json", env=cli_environment(settings))
    assert result.returncode == 1  # no such task: the command got as far as the retrieval pipeline
    assert "service.usecases.retrieval.runner" in modules
    assert not modules & NOT_FOR_RETRIEVAL


@pytest.mark.parametrize("args", [["nonsense"], ["retrieval", "nonsense", "--json"]])
def test_a_mistyped_command_is_still_a_usage_error(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
