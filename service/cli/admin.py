"""Administration commands: the database schema, users and domains."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from service.cli import cli
from service.cli.common import ON_OFF, emit, plain_errors, read_password, run_with_db
from service.config import Settings
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from service.usecases import domains, user_admin, users

T = TypeVar("T")


@cli.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@plain_errors
def db_upgrade() -> None:
    """Apply every migration (creates the SQLite database and the key file on first run)."""
    from service.persistence import migrations  # Alembic is slow to import; only this command needs it

    settings = Settings()
    SecretBox.from_settings(settings)
    migrations.upgrade(settings)
    click.echo("The database is up to date.")


@cli.group()
def user() -> None:
    """Tributary's own users."""


@user.command("add")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
@click.option("--display-name", default="", help="The name shown beside the address.")
@click.option("--json", "as_json", is_flag=True, help="Print the new user as JSON.")
@plain_errors
def user_add(email: str, admin: bool, password_stdin: bool, display_name: str, as_json: bool) -> None:
    """Create a user (and their domain, if it is new)."""
    password = read_password(password_stdin)
    created = run_with_db(
        lambda db: users.add_user(db=db, email=email, password=password, is_admin=admin, display_name=display_name)
    )
    emit(created, as_json=as_json, text=f"Created {'administrator' if created.is_admin else 'user'} {created.email}.")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@plain_errors
def user_list(as_json: bool) -> None:
    """List the users."""
    found = run_with_db(lambda db: user_admin.list_user_accounts(db=db))
    lines = [
        f"{u.email}{' (administrator)' if u.is_admin else ''}{'' if u.is_active else ' [disabled]'}" for u in found
    ]
    emit(found, as_json=as_json, text="\n".join(lines) or "No users yet.")


def _on_user(email: str, act: Callable[[Database, int], Awaitable[T]]) -> T:
    """Find the user by address, then act on them, with one database."""

    async def work(db: Database) -> T:
        return await act(db, (await users.find_user(db=db, email=email)).id)

    return run_with_db(work)


@user.command("disable")
@click.argument("email")
@plain_errors
def user_disable(email: str) -> None:
    """Stop a user from signing in and end their sessions (nothing of theirs is deleted)."""
    done = _on_user(email, lambda db, uid: user_admin.set_user_active(db=db, actor_id=None, user_id=uid, active=False))
    click.echo(f"Disabled {done.email}: they cannot sign in, and their sessions have ended.")


@user.command("enable")
@click.argument("email")
@plain_errors
def user_enable(email: str) -> None:
    """Let a disabled user sign in again, with the password they had."""
    done = _on_user(email, lambda db, uid: user_admin.set_user_active(db=db, actor_id=None, user_id=uid, active=True))
    click.echo(f"Enabled {done.email}.")


@user.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@plain_errors
def user_delete(email: str, yes: bool) -> None:
    """Delete a user and everything that is theirs: mail, folders, tasks, SMTP accounts, filters, logs."""
    if not yes:
        click.confirm(f"Delete {email.strip()} and all their mail? This cannot be undone.", abort=True)
    done = _on_user(email, lambda db, uid: user_admin.delete_user(db=db, actor_id=None, user_id=uid))
    click.echo(f"Deleted {done.email} and all their mail, tasks and accounts.")


@user.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
@plain_errors
def user_set_password(email: str, password_stdin: bool) -> None:
    """Give a user a new password; their sessions end."""
    password = read_password(password_stdin)
    done = _on_user(email, lambda db, uid: user_admin.set_user_password(db=db, user_id=uid, password=password))
    click.echo(f"Set a new password for {done.email}; their sessions have ended.")


@cli.group()
def domain() -> None:
    """Per-domain switches and limits (the administrator's settings)."""


@domain.command("set")
@click.argument("name")
@click.option("--retrieval", type=ON_OFF, help="IMAP/POP Retrieval for the domain's users.")
@click.option("--smtp-accounts", type=ON_OFF, help="SMTP Accounts for the domain's users.")
@click.option(
    "--oauth",
    type=ON_OFF,
    help="OAuth2 sign-in (Google, Microsoft, ...) for the domain's retrieval tasks and SMTP accounts.",
)
@click.option("--max-tasks", type=click.IntRange(min=0), help="Retrieval tasks allowed per user.")
@click.option("--max-message-size", type=click.IntRange(min=1024), help="Largest message retrieved, in bytes.")
@click.option(
    "--allow-hosts",
    metavar="LIST",
    help="Comma-separated host names (*.example.com for subdomains), addresses or networks (10.0.0.0/8) "
    "the domain's users may reach although private; an empty string clears the list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the domain as JSON.")
@plain_errors
def domain_set(
    name: str,
    retrieval: str | None,
    smtp_accounts: str | None,
    oauth: str | None,
    max_tasks: int | None,
    max_message_size: int | None,
    allow_hosts: str | None,
    as_json: bool,
) -> None:
    """Change a domain's settings (creating the domain if it is new)."""
    hosts = None if allow_hosts is None else tuple(h for h in allow_hosts.split(",") if h.strip())

    async def change(db: Database) -> dict[str, Any]:
        changed = await domains.set_domain(
            db=db,
            name=name,
            retrieval_enabled=None if retrieval is None else retrieval == "on",
            smtp_accounts_enabled=None if smtp_accounts is None else smtp_accounts == "on",
            max_tasks_per_user=max_tasks,
            max_message_bytes=max_message_size,
            allowed_hosts=hosts,
            oauth_enabled=None if oauth is None else oauth == "on",
        )
        settings = await domains.get_domain_settings(db=db, name=changed.name)
        return {
            **dataclasses.asdict(changed),
            "oauth": settings.oauth_enabled,
            "allowed_hosts": list(settings.allowed_hosts),
        }

    changed = run_with_db(change)
    summary = (
        f"{changed['name']}: IMAP/POP Retrieval {'on' if changed['retrieval_enabled'] else 'off'}, "
        f"SMTP Accounts {'on' if changed['smtp_accounts_enabled'] else 'off'}, "
        f"OAuth2 sign-in {'on' if changed['oauth'] else 'off'}, "
        f"allowed hosts: {', '.join(changed['allowed_hosts']) or 'none'}."
    )
    emit(changed, as_json=as_json, text=summary)


@domain.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@plain_errors
def domain_list(as_json: bool) -> None:
    """List the domains and their switches."""

    async def listed(db: Database) -> list[dict[str, Any]]:
        oauth = {d.id: d.oauth_enabled for d in await domains.list_domain_settings(db=db)}
        return [{**dataclasses.asdict(d), "oauth": oauth.get(d.id, True)} for d in await domains.list_domains(db=db)]

    found = run_with_db(listed)
    lines = [
        f"{d['name']}: retrieval {'on' if d['retrieval_enabled'] else 'off'}, "
        f"SMTP accounts {'on' if d['smtp_accounts_enabled'] else 'off'}, "
        f"OAuth2 sign-in {'on' if d['oauth'] else 'off'}"
        for d in found
    ]
    emit(found, as_json=as_json, text="\n".join(lines) or "No domains yet.")
