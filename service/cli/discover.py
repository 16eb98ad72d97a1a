"""`tributary discover EMAIL`: which servers an address uses, and where that was found (issue 18).

The same answer as the forms' lookup and GET /api/v1/discover: the built-in
provider table, the domain's autoconfig document, DNS SRV records, then the MX
hosts as a guess. Without --user the outbound policy is TRIBUTARY_OUTBOUND_ALLOW
alone and no database is opened; with --user it is that user's domain's.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import click

from service.cli import cli
from service.cli.common import emit, plain_errors, run_with_db
from service.config import Settings
from service.domain.discovery import Discovery
from service.persistence.database import Database
from service.usecases import users
from service.usecases.discovery import discover as find
from service.usecases.discovery import discover_for_user, global_policy, offered, to_dict

_SECURITY = {"ssl": "SSL/TLS", "starttls": "STARTTLS", "none": "no encryption"}


def _text(result: dict[str, Any]) -> str:
    lines = [result["message"]]
    for protocol, label in (("imap", "IMAP"), ("pop3", "POP3"), ("smtp", "SMTP")):
        server = result[protocol]
        if server:
            lines.append(
                f"{label:5} {server['host']}:{server['port']} {_SECURITY[server['security']]} "
                f"(from {server['source']}: {server['where']})"
            )
    oauth2 = result["oauth2"]
    if oauth2 and oauth2["required"]:
        lines.append(
            f"Sign in with {oauth2['label']} is offered here."
            if oauth2["offered"]
            else "This provider needs OAuth2 sign-in, which this server does not offer."
        )
    return "\n".join(lines)


@cli.command("discover")
@click.argument("email")
@click.option("--user", "user_email", help="Look up under this user's domain policy (default: the global one).")
@click.option("--json", "as_json", is_flag=True, help="Print what was found as JSON.")
@plain_errors
def discover(email: str, user_email: str | None, as_json: bool) -> None:
    """Find the IMAP, POP3 and SMTP servers of EMAIL, and say where they were found."""
    if user_email:

        async def work(db: Database) -> Discovery:
            owner = await users.find_user(db=db, email=user_email)
            return await discover_for_user(db=db, settings=Settings(), user_id=owner.id, email=email)

        found = run_with_db(work)
    else:
        settings = Settings()
        found = asyncio.run(find(email=email, settings=settings, policy=global_policy(settings)))
        found = offered(found, settings=settings, environ=os.environ, enabled=True)
    result = to_dict(found)
    emit(result, as_json=as_json, text=_text(result))
