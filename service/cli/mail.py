"""Reading the local mailbox from the command line: folders, messages, export."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from service.cli import cli
from service.cli.common import emit, plain_errors, run_with_db
from service.persistence.database import Database
from service.usecases import reading, users
from service.usecases.export import MaildirReport, export_maildir


@cli.command("folders")
@click.option("--user", "user_email", required=True)
@click.option("--json", "as_json", is_flag=True)
@plain_errors
def folders(user_email: str, as_json: bool) -> None:
    """A user's folders with message and unread counts."""

    async def work(db: Database) -> list[dict[str, object]]:
        owner = await users.find_user(db=db, email=user_email)
        return [
            {"id": f.id, "path": f.path, "special_use": f.special_use, "total": f.total, "unread": f.unread}
            for f in await reading.list_folders(db=db, user_id=owner.id)
        ]

    found = run_with_db(work)
    emit(found, as_json=as_json, text="\n".join(f"{f['path']} ({f['total']}, {f['unread']} unread)" for f in found))


@cli.command("messages")
@click.option("--user", "user_email", required=True)
@click.option("--folder", "folder_path", required=True, help='Folder path, e.g. "Inbox" or "Work/Projects".')
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@plain_errors
def messages(user_email: str, folder_path: str, limit: int, as_json: bool) -> None:
    """A folder's messages, newest first."""

    async def work(db: Database) -> list[dict[str, object]]:
        owner = await users.find_user(db=db, email=user_email)
        listed = await reading.list_messages(db=db, user_id=owner.id, folder_path=folder_path, limit=limit)
        return [
            {
                "id": m.id,
                "folder": m.folder,
                "subject": m.subject,
                "from": m.from_address,
                "date": m.date.isoformat() if m.date else None,
                "message_id": m.message_id,
                "size": m.size,
            }
            for m in listed
        ]

    found = run_with_db(work)
    emit(found, as_json=as_json, text="\n".join(f"{m['id']:>8}  {m['date'] or '':<25}  {m['subject']}" for m in found))


@cli.command("export")
@click.option("--user", "user_email", required=True)
@click.option("--id", "message_id", type=int, help="Write this message's stored bytes to standard output.")
@click.option(
    "--maildir",
    "maildir",
    type=click.Path(path_type=Path, file_okay=True, dir_okay=True),
    help="Write the user's folders as a Maildir++ tree into this new or empty directory.",
)
@click.option("--folder", "folder_path", help='With --maildir: only this folder and those below it, e.g. "Work".')
@click.option("--json", "as_json", is_flag=True, help="With --maildir: print what was written as JSON.")
@plain_errors
def export(
    user_email: str, message_id: int | None, maildir: Path | None, folder_path: str | None, as_json: bool
) -> None:
    """Write a message's stored bytes, unchanged, to standard output (--id), or the user's
    folders as a Maildir++ tree (--maildir; folder names in modified UTF-7, flags in file names)."""
    if (message_id is None) == (maildir is None):
        raise click.UsageError("Give either --id N (one message) or --maildir DIR (the folders).")
    if maildir is None and (folder_path is not None or as_json):
        raise click.UsageError("--folder and --json go with --maildir.")
    if maildir is not None:
        directory = maildir

        async def write_tree(db: Database) -> MaildirReport:
            owner = await users.find_user(db=db, email=user_email)
            return await export_maildir(db=db, user_id=owner.id, directory=directory, folder_path=folder_path)

        report = run_with_db(write_tree)
        text = f"Exported {report.messages:,} messages in {report.folders} folders to {report.directory}."
        emit(report, as_json=as_json, text=text)
        return
    assert message_id is not None
    wanted = message_id

    async def work(db: Database) -> bytes:
        owner = await users.find_user(db=db, email=user_email)
        return await reading.export_raw(db=db, user_id=owner.id, message_id=wanted)

    raw = run_with_db(work)
    sys.stdout.buffer.write(raw)
    sys.stdout.buffer.flush()
