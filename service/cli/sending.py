"""`tributary smtp ...`: SMTP accounts (`send` and `outbox` are service/cli/outgoing.py's).

Users are named by their address (--user). `smtp add --oauth-provider` and `smtp reconnect`
print the provider's consent URL (service/cli/oauth.py).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from service.cli import cli
from service.cli.common import Services, emit, fail, plain, plain_errors, read_password, run_with_db, run_with_services
from service.cli.oauth import begin_for, emit_started, reconnect_for, with_sign_in
from service.config import Settings
from service.domain.smtp_accounts import SmtpAccountInput
from service.domain.values import Security
from service.errors import NotFound
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import smtp_accounts
from service.usecases.oauth_targets import OAuthStart

if TYPE_CHECKING:
    from service.domain.connection_test import ConnectionReport

SECURITY = click.Choice([s.value for s in Security])


@cli.group()
def smtp() -> None:
    """SMTP accounts: the servers you send through."""


@smtp.command("add")
@click.option("--user", "user_email", required=True, help="The Tributary user the account belongs to.")
@click.option(
    "--email", "address", help="The address messages are sent from (with --oauth-provider default: the one signed in)."
)
@click.option("--server", help="The SMTP server's host name or IP address (with --oauth-provider: the provider's).")
@click.option("--port", type=click.IntRange(1, 65535), help="Default: 25, 587 or 465 by security.")
@click.option("--security", type=SECURITY, help="Default: starttls (with --oauth-provider: the provider's).")
@click.option("--display-name", default="", help='The name shown in From: "Display Name <address>".')
@click.option("--username", help="Sign in with this username (default: the address, when a password is given).")
@click.option("--password-stdin", is_flag=True, help="Sign in, reading the password from standard input.")
@click.option(
    "--oauth-provider",
    help="Sign in with this OAuth2 provider (google, microsoft or a configured one) instead of a password: "
    "prints the consent URL to open in a browser.",
)
@click.option("--no-verify-cert", is_flag=True, help="Accept any certificate (only for servers you trust).")
@click.option("--default", "is_default", is_flag=True, help="Make it the default Send From address.")
@click.option("--messages-per-minute", type=click.IntRange(min=1), help="Send at most this many a minute.")
@click.option("--no-save-copy", is_flag=True, help="Do not keep a copy of sent messages in Sent.")
@click.option("--timeout", type=click.IntRange(5, 300), default=30, show_default=True, help="Seconds per step.")
@click.option("--debug", is_flag=True, help="Log the protocol transcript (credentials redacted).")
@click.option(
    "--sent-copy-task",
    "sent_copy_task",
    type=click.IntRange(min=1),
    help="Also append each message sent to the Sent folder of this IMAP retrieval task's mailbox "
    "(see `retrieval list`): it then shows on your phone too. Skipped for Gmail and Microsoft 365, "
    "which file sent mail themselves.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"id": N} ({"id": N, "status": "pending", "authorize_url": URL} with --oauth-provider).',
)
@plain_errors
def smtp_add(
    user_email: str,
    address: str | None,
    server: str | None,
    port: int | None,
    security: str | None,
    display_name: str,
    username: str | None,
    password_stdin: bool,
    oauth_provider: str | None,
    no_verify_cert: bool,
    is_default: bool,
    messages_per_minute: int | None,
    no_save_copy: bool,
    timeout: int,
    debug: bool,
    sent_copy_task: int | None,
    as_json: bool,
) -> None:
    """Add an SMTP account and print its id (with --oauth-provider: pending until the sign-in)."""
    if oauth_provider is not None:
        if sent_copy_task is not None:
            fail("Give --sent-copy-task after the sign-in, when the account exists (not with --oauth-provider).")
            return
        start = OAuthStart(
            kind="smtp",
            provider=oauth_provider,
            host=server,
            port=port,
            security=Security(security) if security else None,
            username=username,
            email=address,
            display_name=display_name,
            is_default=is_default,
        )
        started = run_with_services(lambda services: begin_for(services, user_email, start))
        emit_started(started, as_json=as_json)
        return
    if not address or not server:
        fail("Give --email and --server (or sign in with --oauth-provider).")
        return
    authenticates = password_stdin or username is not None
    password = read_password(password_stdin) if authenticates else None
    account = SmtpAccountInput(
        email_address=address,
        host=server,
        port=port,
        security=Security(security or Security.STARTTLS.value),
        display_name=display_name,
        auth_required=authenticates,
        username=username or "",
        verify_certificate=not no_verify_cert,
        timeout_seconds=timeout,
        save_copy_in_sent=not no_save_copy,
        messages_per_minute=messages_per_minute,
        enable_debug=debug,
        is_default=is_default,
        sent_copy_task_id=sent_copy_task,
    )
    box = SecretBox.from_settings(Settings())

    async def work(db: Database) -> int:
        user_id = await smtp_accounts.user_id_for_email(db=db, email=user_email)
        created = await smtp_accounts.add_smtp_account(
            db=db, secret_box=box, user_id=user_id, account=account, password=password
        )
        return created.id

    account_id = run_with_db(work)
    emit({"id": account_id}, as_json=as_json, text=str(account_id))


@smtp.command("list")
@click.option("--user", "user_email", required=True, help="Whose accounts.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (passwords are never shown).")
@plain_errors
def smtp_list(user_email: str, as_json: bool) -> None:
    """List a user's SMTP accounts."""

    async def work(services: Services) -> list[dict[str, Any]]:
        user_id = await smtp_accounts.user_id_for_email(db=services.db, email=user_email)
        views = await smtp_accounts.list_smtp_accounts(db=services.db, user_id=user_id)
        labels.extend(view.label for view in views)
        return await with_sign_in(services, "smtp", user_id, [plain(view) for view in views])

    labels: list[str] = []
    found = run_with_services(work)
    lines = []
    for a, label in zip(found, labels, strict=True):
        marks = (" [default]" if a["is_default"] else "") + ("" if a["is_active"] else " [off]")
        if a["auth"] != "password":
            marks += f" [{a['auth']}: {a['status']}]"
        if a["sent_copy_task"] is not None:
            marks += f" [Sent copy: task {a['sent_copy_task']}]"
        lines.append(f"{a['id']}  {label} via {a['host']}:{a['port']} ({a['security']}){marks}")
        if a["sent_copy_note"]:
            lines.append(f"    {a['sent_copy_note']}")
    emit(found, as_json=as_json, text="\n".join(lines) or "No SMTP accounts yet.")


async def _owner(db: Database, account_id: int, user_email: str | None) -> int:
    if user_email is None:
        return await smtp_accounts.owner_of_smtp_account(db=db, account_id=account_id)
    return await smtp_accounts.user_id_for_email(db=db, email=user_email)


def _report_text(report: ConnectionReport) -> str:
    lines = []
    for step in report.steps:
        mark = "ok" if step.ok else "FAILED"
        lines.append(f"{step.name}: {mark} ({step.duration_ms:.0f} ms) {step.detail}".rstrip())
        if step.hint:
            lines.append(f"  hint: {step.hint}")
    return "\n".join(lines)


@smtp.command("test")
@click.argument("account_id", type=int)
@click.option("--user", "user_email", help="The account's owner (default: whoever owns it).")
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON.")
@plain_errors
def smtp_test(account_id: int, user_email: str | None, as_json: bool) -> None:
    """Test Connection: resolve, connect, TLS, EHLO, STARTTLS and AUTH, each timed. Exit 1 on failure."""
    from service.usecases.connection_tests import SavedSmtpAccount, run_connection_test  # protocols, OAuth2

    settings = Settings()
    box = SecretBox.from_settings(settings)

    async def work(db: Database) -> ConnectionReport:
        owner = await smtp_accounts.owner_of_smtp_account(db=db, account_id=account_id)
        if user_email is not None and await smtp_accounts.user_id_for_email(db=db, email=user_email) != owner:
            raise NotFound(smtp_accounts.NO_ACCOUNT)
        return await run_connection_test(  # as the operator: the owner's domain policy, no rate limit
            db=db, secret_box=box, settings=settings, user_id=None, subject=SavedSmtpAccount(account_id)
        )

    report = run_with_db(work)
    emit({"ok": report.ok, "steps": plain(report)["steps"]}, as_json=as_json, text=_report_text(report))
    if not report.ok:
        sys.exit(1)


@smtp.command("reconnect")
@click.argument("account_id", type=int)
@click.option("--json", "as_json", is_flag=True, help='Print {"id": N, "status": S, "authorize_url": URL}.')
@plain_errors
def smtp_reconnect(account_id: int, as_json: bool) -> None:
    """Sign in with the account's OAuth2 provider again: prints a fresh consent URL to open in a browser."""
    started = run_with_services(lambda services: reconnect_for(services, "smtp", account_id))
    emit_started(started, as_json=as_json)


@smtp.command("delete")
@click.argument("account_id", type=int)
@click.option("--user", "user_email", help="The account's owner (default: whoever owns it).")
@plain_errors
def smtp_delete(account_id: int, user_email: str | None) -> None:
    """Delete an SMTP account and its stored password."""

    async def work(db: Database) -> None:
        user_id = await _owner(db, account_id, user_email)
        await smtp_accounts.delete_smtp_account(db=db, user_id=user_id, account_id=account_id)

    run_with_db(work)
    click.echo(f"Deleted SMTP account {account_id}.")
