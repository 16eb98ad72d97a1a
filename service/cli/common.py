"""What every `tributary` command shares: settings from the environment, one database per
command, plain-sentence errors on stderr (exit 1) and JSON output for --json.

`describe_failure` decides which failures an operator can fix (a TributaryError, an invalid
TRIBUTARY_ setting, an unreachable or unmigrated database) and says so in one sentence;
`group.TributaryGroup` and `plain_errors` (defined in the light `group` module, so that the
top-level group needs only Click) print it, as `{"error": "..."}` with --json.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.exc import DBAPIError, OperationalError

from service.cli.group import fail as fail  # re-exported: the command modules import both from here
from service.cli.group import plain_errors as plain_errors
from service.config import Settings
from service.errors import DatabaseNotMigrated, DatabaseUnreachable, TributaryError
from service.persistence.database import Database, prepare_data_dir, unreachable_message
from service.persistence.secrets import SecretBox

T = TypeVar("T")

ON_OFF = click.Choice(["on", "off"])


def describe_failure(exc: BaseException) -> str | None:
    """One sentence for a failure the operator or user can fix, or None for a bug (keep its traceback)."""
    if isinstance(exc, TributaryError):
        return exc.message
    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        return setting_message(exc)
    if isinstance(exc, DBAPIError):
        return _database_message(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return _file_message(exc)
    return None


def _file_message(exc: OSError) -> str:
    """A file or directory the command could not create, open or write: the data directory or another."""
    path = Path(os.fsdecode(exc.filename))
    reason = (exc.strerror or type(exc).__name__).lower()
    try:
        data_dir: Path | None = Settings().data_dir
    except ValidationError:
        data_dir = None
    if data_dir is not None and (path == data_dir or data_dir in path.parents or path in data_dir.parents):
        return (
            f"The data directory {data_dir} cannot be written ({reason}): "
            "give this user write access to it or set TRIBUTARY_DATA_DIR to another directory."
        )
    return f"Tributary cannot use {path} ({reason})."


def setting_message(exc: ValidationError) -> str:
    """'TRIBUTARY_X is not valid: <the expected form>.' for the first invalid setting (never its value)."""
    error = exc.errors()[0]
    name = "TRIBUTARY_" + "_".join(str(part) for part in error["loc"]).upper()
    more = len(exc.errors()) - 1
    extra = f" ({more} more setting{'s' if more > 1 else ''} also invalid)" if more else ""
    return f"{name} is not valid: {_expected_form(error)}{extra}."


def _expected_form(error: ErrorDetails) -> str:
    kind, limits = error["type"], error.get("ctx", {})
    forms = {
        "int_parsing": "write a whole number",
        "int_type": "write a whole number",
        "int_from_float": "write a whole number",
        "float_parsing": "write a number",
        "bool_parsing": "write true or false",
        "greater_than_equal": f"write a number of at least {limits.get('ge')}",
        "less_than_equal": f"write a number of at most {limits.get('le')}",
        "greater_than": f"write a number above {limits.get('gt')}",
        "less_than": f"write a number below {limits.get('lt')}",
    }
    if kind in forms:
        return forms[kind]
    message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
    return message[:1].lower() + message[1:]


def _database_message(exc: DBAPIError) -> str | None:
    code = getattr(exc.orig, "sqlstate", None)
    text = str(exc.orig).lower()
    if code in {"42P01", "42703"} or text.startswith(("no such table", "no such column")):
        return "The database is not migrated: run `tributary db upgrade`."
    if isinstance(exc, OperationalError):
        try:
            url = Settings().async_database_url
        except ValidationError:
            url = "TRIBUTARY_DATABASE_URL"
        return unreachable_message(url, exc)
    return None


def ready_or_refuse(settings: Settings) -> None:
    """For `serve` and `worker`: refuse to start unless the data directory is writable and the database
    answers and is fully migrated."""
    prepare_data_dir(settings)

    async def check() -> None:
        db = Database(settings)
        try:
            problem = await db.problem()
        finally:
            await db.dispose()
        if problem is not None:
            kind = DatabaseUnreachable if problem.state == "unavailable" else DatabaseNotMigrated
            raise kind(problem.detail)

    asyncio.run(check())


def run_with_db(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run one use case against the configured database, then close it."""
    settings = Settings()

    async def main() -> T:
        db = Database(settings)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


@dataclass(frozen=True, slots=True)
class Services:
    """What use cases need, built once per command."""

    settings: Settings
    db: Database
    secret_box: SecretBox


def run_with_services(work: Callable[[Services], Awaitable[T]]) -> T:
    """Like `run_with_db`, for use cases that also need the settings and the secret box."""
    settings = Settings()
    secret_box = SecretBox.from_settings(settings)

    async def main() -> T:
        db = Database(settings)
        try:
            return await work(Services(settings=settings, db=db, secret_box=secret_box))
        finally:
            await db.dispose()

    return asyncio.run(main())


def emit(value: Any, *, as_json: bool, text: str) -> None:
    """Print `value` as JSON with --json, else the human sentence."""
    if as_json:
        click.echo(json.dumps(plain(value), indent=2, sort_keys=True, default=_json_default))
    else:
        click.echo(text)


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot serialise {type(value).__name__}")


def read_password(from_stdin: bool) -> str:
    """The password from one line of stdin (--password-stdin), else an interactive prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
