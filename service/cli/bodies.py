"""`tributary bodies`: where message bodies live (TRIBUTARY_BODY_STORE), moving and checking them.

    tributary bodies migrate --to files|database   move bodies from the other store, in batches;
                                                  safe while the service runs, resumable
    tributary bodies verify                        read every body through: length and SHA-256 of
                                                  every reference, every message_body row; one
                                                  line per missing or damaged body, never stops
    tributary bodies compact                       one compaction round now (housekeeping runs one
                                                  every hour)

Set TRIBUTARY_BODY_STORE to the same store as `--to` before or after migrating, so new mail
goes there too; readers find each body in either store meanwhile.
"""

from __future__ import annotations

from typing import Literal, cast

import click

from service.cli import cli
from service.cli.common import emit, plain_errors, run_with_db
from service.persistence.bodies import compaction, maintenance
from service.persistence.database import Database


@cli.group("bodies")
def bodies_group() -> None:
    """Message bodies: move them between the database and segment files, and check them."""


def _line(problem: maintenance.Problem) -> str:
    return f"message {problem.message_id}: {problem.kind} ({problem.detail})"


@bodies_group.command("migrate")
@click.option("--to", "to", type=click.Choice(["files", "database"]), required=True, help="The store to move to.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@plain_errors
def migrate(to: str, as_json: bool) -> None:
    """Move every body from the other store, a batch at a time (run again to resume)."""
    problems: list[maintenance.Problem] = []

    async def work(db: Database) -> maintenance.Tally:
        target = cast(Literal["files", "database"], to)
        return await maintenance.migrate(db, to=target, report=problems.append)

    tally = run_with_db(work)
    text = f"Moved {tally.done} message bodies to {to}."
    if problems:
        text += f" {len(problems)} could not be read and stayed where they are:\n" + "\n".join(map(_line, problems))
    emit({"moved": tally.done, "unreadable": [_json(p) for p in problems]}, as_json=as_json, text=text)
    if problems:
        raise SystemExit(1)


def _json(problem: maintenance.Problem) -> dict[str, object]:
    return {"message_id": problem.message_id, "kind": problem.kind, "detail": problem.detail}


@bodies_group.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@plain_errors
def verify(as_json: bool) -> None:
    """Check every stored body; list the missing and damaged ones (exit code 1 if any)."""
    problems: list[maintenance.Problem] = []

    def report(problem: maintenance.Problem) -> None:
        problems.append(problem)
        if not as_json:
            click.echo(_line(problem))

    tally = run_with_db(lambda db: maintenance.verify(db, report=report))
    missing = sum(1 for p in problems if p.kind == "missing")
    damaged = len(problems) - missing
    text = f"Checked {tally.done} message bodies: {missing} missing, {damaged} damaged."
    emit({"checked": tally.done, "problems": [_json(p) for p in problems]}, as_json=as_json, text=text)
    if problems:
        raise SystemExit(1)


@bodies_group.command("compact")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@plain_errors
def compact(as_json: bool) -> None:
    """Reclaim segment space nothing references any more (skipped while a backup runs)."""
    done = run_with_db(lambda db: compaction.compact(db))
    if done is None:
        emit({"skipped": True}, as_json=as_json, text="Skipped: a backup or another compaction holds the lock.")
        return
    text = f"Compacted {done.compacted} segments, moved {done.moved} bodies, removed {done.removed} files."
    emit({"compacted": done.compacted, "moved": done.moved, "removed": done.removed}, as_json=as_json, text=text)
