"""Start-up of the `tributary` command: each command's module is imported only when that command runs,
while `tributary --help` still lists every command with its one-line help (service.cli.group).

A retrieval run is mostly start-up when there is little new mail, so the retrieval path is also kept
free of what it never uses (the OAuth2 HTTP client, the sending stack, the web face)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

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


Run = subprocess.CompletedProcess[str]
# Runs the `tributary` script as its shebang would and writes every module it imported (sys.modules at
# exit: unlike -X importtime, this also sees modules imported through importlib) to the file $MODULES_OUT.
PROBE = (
    "import atexit, json, os, runpy, sys\n"
    "atexit.register(lambda: open(os.environ['MODULES_OUT'], 'w').write(json.dumps(sorted(sys.modules))))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def imported_modules(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Run, set[str]]:
    """Run the `tributary` executable: its result, and every module it imported."""
    out = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, TRIBUTARY, *args],
        capture_output=True,
        text=True,
        env={**(os.environ if env is None else env), "MODULES_OUT": str(out)},
        timeout=120,
        check=False,
    )
    modules = set(json.loads(out.read_text()))
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


def test_help_and_version_import_no_command_module(tmp_path: Path) -> None:
    for args in (["--help"], ["--version"]):
        result, modules = imported_modules(tmp_path, *args)
        assert result.returncode == 0, result.stderr[-2000:]
        assert not modules & COMMAND_MODULES, args
        assert "sqlalchemy" not in modules, args
    assert result.stdout.startswith("tributary ")


def test_a_group_imports_its_own_module_only(tmp_path: Path) -> None:
    result, modules = imported_modules(tmp_path, "retrieval", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage: tributary retrieval" in result.stdout
    assert modules & COMMAND_MODULES == {"service.cli.retrieval"}


def test_a_retrieval_run_loads_neither_oauth_nor_sending_nor_the_web(settings: Settings, tmp_path: Path) -> None:
    result, modules = imported_modules(tmp_path, "retrieval", "run", "424242", "--json", env=cli_environment(settings))
    assert result.returncode == 1  # no such task: the command got as far as the retrieval pipeline
    assert "service.usecases.retrieval.runner" in modules
    assert not modules & NOT_FOR_RETRIEVAL


@pytest.mark.parametrize("args", [["nonsense"], ["retrieval", "nonsense", "--json"]])
def test_a_mistyped_command_is_still_a_usage_error(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
