"""`tributary send` and `tributary outbox`: sending a message, and what waits in the outbox.

Users are named by their address (--user). `send --from` takes an SMTP account's
id (see `smtp list`) or the word "relay" for the domain's company relay. `send`
exits 1 when the message failed or its delivery is unknown (with --json the
result is still printed on stdout); a message waiting for an account's Reconnect
is queued, not failed. Once sent, `send` waits for the copy in the remote Sent
folder (issue 18) before it exits; `outbox` shows each message's copy.
"""

from __future__ import annotations

import mimetypes
import sys
from pathlib import Path
from typing import IO

import click

from service.cli import cli
from service.cli.common import emit, fail, plain_errors, run_with_db
from service.config import Settings
from service.domain.compose import Attachment, Draft
from service.domain.outbox import OutboxStatus, OutboxView, SendResult
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import sending, smtp_accounts


def _from_choice(value: str) -> int | None:
    if value.strip().lower() == "relay":
        return None
    if not value.strip().isdigit():
        raise click.BadParameter("give an SMTP account's id (see `tributary smtp list`) or relay", param_hint="--from")
    return int(value)


def _attachment(path: Path) -> Attachment:
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Attachment(filename=path.name, content=path.read_bytes(), content_type=content_type)


@cli.command("send")
@click.option("--user", "user_email", required=True, help="The Tributary user sending.")
@click.option("--from", "from_value", required=True, help="SMTP account id (see `smtp list`), or relay.")
@click.option("--to", multiple=True, help="A recipient; repeat for more.")
@click.option("--cc", multiple=True, help="A copy recipient; repeat for more.")
@click.option("--bcc", multiple=True, help="A blind copy recipient (envelope only); repeat for more.")
@click.option("--subject", default="", help="The subject.")
@click.option("--body-file", type=click.File("r", encoding="utf-8"), help="The plain-text body (- for stdin).")
@click.option("--attach", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--queue", is_flag=True, help="Only queue it: the next outbox round sends it, reusing connections.")
@click.option("--json", "as_json", is_flag=True, help='Print {"status": ..., "refused": {...}}.')
@plain_errors
def send(
    user_email: str,
    from_value: str,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    subject: str,
    body_file: IO[str] | None,
    attach: tuple[Path, ...],
    queue: bool,
    as_json: bool,
) -> None:
    """Send a message through an SMTP account (or the company relay); it waits in the outbox if it must."""
    from_account_id = _from_choice(from_value)
    draft = Draft(
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        text=body_file.read() if body_file is not None else "",
        attachments=tuple(_attachment(path) for path in attach),
    )
    settings = Settings()
    box = SecretBox.from_settings(settings)

    async def work(db: Database) -> SendResult:
        user_id = await smtp_accounts.user_id_for_email(db=db, email=user_email)
        sent = await sending.send_message(
            db=db,
            secret_box=box,
            settings=settings,
            user_id=user_id,
            from_account_id=from_account_id,
            draft=draft,
            send_now=not queue,
        )
        await sending.wait_for_background_copies()  # the Sent copy, before this process ends
        return sent

    result = run_with_db(work)
    bad = result.status in (OutboxStatus.FAILED, OutboxStatus.UNKNOWN)
    if as_json or not bad:
        emit({"status": result.status.value, "refused": dict(result.refused)}, as_json=as_json, text=result.detail)
    if bad:
        if as_json:
            sys.exit(1)
        fail(result.detail)


@cli.command("outbox")
@click.option("--user", "user_email", required=True, help="Whose outbox.")
@click.option("--all", "include_sent", is_flag=True, help="Include messages already sent.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@plain_errors
def outbox(user_email: str, include_sent: bool, as_json: bool) -> None:
    """Messages waiting to be sent, failed, or of unknown delivery."""

    async def work(db: Database) -> list[OutboxView]:
        user_id = await smtp_accounts.user_id_for_email(db=db, email=user_email)
        return await sending.list_outbox(db=db, user_id=user_id, include_sent=include_sent)

    found = run_with_db(work)
    lines = []
    for entry in found:
        when = f", next attempt {entry.next_attempt_at:%Y-%m-%d %H:%M} UTC" if entry.next_attempt_at else ""
        lines.append(f"{entry.id}  {entry.status.value}  {entry.subject or '(no subject)'}{when}")
        if entry.last_error:
            lines.append(f"    {entry.last_error}")
        if entry.sent_copy is not None:  # the copy for the remote Sent folder (smtp add --sent-copy-task)
            lines.append(
                f"    Sent copy: {entry.sent_copy.value}"
                + (f": {entry.sent_copy_detail}" if entry.sent_copy_detail else "")
            )
    emit(found, as_json=as_json, text="\n".join(lines) or "The outbox is empty.")
