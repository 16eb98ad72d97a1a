"""`tributary backup DIR` and `tributary restore DIR` (see service.usecases.backup)."""

from __future__ import annotations

from pathlib import Path

import click

from service.cli import cli
from service.cli.common import emit, plain_errors
from service.config import Settings
from service.usecases.backup import backup as take_backup
from service.usecases.backup import restore as put_back

_PATH = click.Path(path_type=Path, file_okay=True, dir_okay=True)


@cli.command("backup")
@click.argument("directory", type=_PATH)
@click.option("--json", "as_json", is_flag=True)
@plain_errors
def backup(directory: Path, as_json: bool) -> None:
    """Write a consistent backup into DIRECTORY (new or empty) while the service runs."""
    report = take_backup(settings=Settings(), directory=directory)
    text = f"Backed up {report.files} files ({report.bytes:,} bytes) to {report.directory}."
    if not report.database_included:
        text += (
            "\nThe database is on PostgreSQL and is not in this backup: dump it with pg_dump beside it"
            " (see the README, Backups)."
        )
    if report.key == "setting":
        text += "\nThe encryption keys come from TRIBUTARY_SECRET_KEY: keep that value with the backup."
    emit(report, as_json=as_json, text=text)


@cli.command("restore")
@click.argument("directory", type=_PATH)
@click.option("--json", "as_json", is_flag=True)
@plain_errors
def restore(directory: Path, as_json: bool) -> None:
    """Restore the backup in DIRECTORY into the data directory, which must be empty."""
    report = put_back(settings=Settings(), directory=directory)
    lines = [f"Restored {report.files} files ({report.bytes:,} bytes) into {report.data_dir}.", *report.next_steps]
    emit(report, as_json=as_json, text="\n".join(lines))
