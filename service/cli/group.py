"""The `tributary` group itself: commands loaded on demand, and errors as one sentence.

Start-up is part of every command's run time (an incremental `retrieval run` is
little else), so the group imports a command's module only when that command runs:
service.cli's table gives `TributaryGroup.add_lazy` each command's name, module and
one-line summary, and `tributary --help` lists them from those summaries without
importing any. A module, once imported, adds its commands to the group with Click's
decorators as usual (`@cli.group()`, `@cli.command()`).

Whatever a command raises that an operator can fix (a TributaryError, an invalid
TRIBUTARY_ setting, an unreachable or unmigrated database) ends as one sentence and
exit code 1, never a traceback; with --json anywhere on the command line the sentence
comes as `{"error": "..."}`. This module imports only Click: what a failure means is
decided by `common.describe_failure`, imported when something fails.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click

P = ParamSpec("P")
T = TypeVar("T")

JSON_ERRORS = "tributary.json_errors"  # ctx.meta key: --json was on the command line


def fail(message: str) -> None:
    """Print the error (as {"error": ...} when the command line asked for --json) on stderr; exit 1."""
    context = click.get_current_context(silent=True)
    if context is not None and context.meta.get(JSON_ERRORS):
        click.echo(json.dumps({"error": message}), err=True)
    else:
        click.echo(message, err=True)
    sys.exit(1)


def _describe(exc: BaseException) -> str | None:
    from service.cli.common import describe_failure  # pydantic and SQLAlchemy: only once something failed

    return describe_failure(exc)


def plain_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Turn Tributary's errors into one sentence on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            message = _describe(exc)
            if message is None:
                raise
            fail(message)
            raise  # unreachable: fail() exits

    return wrapper


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """A command not imported yet: the module that defines it and the summary `--help` shows."""

    module: str
    summary: str


class TributaryGroup(click.Group):
    """The `tributary` group: lazily loaded commands, operator-fixable failures as one sentence (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, LazyCommand] = {}

    def add_lazy(self, module: str, summaries: Mapping[str, str]) -> None:
        """Commands `module` defines, by name, with their one-line summaries (the first sentence of their help)."""
        for name, summary in summaries.items():
            self.lazy[name] = LazyCommand(module, summary)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            # Its decorators add its commands to this group. __import__, not importlib.import_module: only
            # the import statement's machinery reports to `python -X importtime`, which profiles start-up.
            __import__(self.lazy[cmd_name].module)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's command list, with each command not imported yet shown by its summary."""
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or click.Command(name, help=self.lazy[name].summary)
            if not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in rows])

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[JSON_ERRORS] = "--json" in args
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            _usage_error(ctx, exc)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a subcommand's command line, parsed here
            _usage_error(ctx, exc)
            raise
        except Exception as exc:
            message = _describe(exc)
            if message is None:
                raise
            with ctx:
                fail(message)
            raise  # unreachable: fail() exits


def _usage_error(ctx: click.Context, exc: click.UsageError) -> None:
    """With --json a mistyped command line is {"error": ...} too (exit 2); without it Click shows the usage."""
    if ctx.meta.get(JSON_ERRORS) and not isinstance(exc, click.exceptions.NoArgsIsHelpError):
        click.echo(json.dumps({"error": exc.format_message()}), err=True)
        sys.exit(exc.exit_code)
