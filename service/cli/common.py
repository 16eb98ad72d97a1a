"""What every `tributary` command shares: settings from the environment, one database per
command, plain-sentence errors on stderr (exit 1) and JSON output for --json."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click

from service.config import Settings
from service.errors import TributaryError
from service.persistence.database import Database
from service.persistence.secrets import SecretBox

P = ParamSpec("P")
T = TypeVar("T")

ON_OFF = click.Choice(["on", "off"])


def fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


def plain_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Turn Tributary's errors into one sentence on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except TributaryError as exc:
            fail(exc.message)
            raise  # unreachable: fail() exits

    return wrapper


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
