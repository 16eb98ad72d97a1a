"""`tributary search`: the search box from the command line, for people and scripts.

    tributary search --user alice@example.test 'from:bob "quarterly report" after:2024-01-01' --json

The query is the search box's language (service.domain.search_query); several arguments
are joined with spaces, so quote a "phrase" for the shell as well ('"a b"'). Plain output
is one line per message, newest first; --json prints the page as the API returns it
(GET /api/v1/messages/search): query, page, per_page, messages, next_page, previous_page.

    tributary search reindex [--user EMAIL]

indexes the stored messages again (one user's, or everyone's), in batches of at most 64 MB
of mail: for an index that drifted, or mail a worker older than the upgrade stored while
migration 0009 ran. The word `reindex` alone as a query is this command; search for it
quoted ('"reindex"').
"""

from __future__ import annotations

from typing import Any

import click

from service.cli import cli
from service.cli.common import emit, plain_errors, run_with_db
from service.persistence import search_index
from service.persistence.database import Database
from service.usecases import search as searching
from service.usecases import users


def _page(results: searching.SearchResults) -> dict[str, Any]:
    return {
        "query": results.query,
        "page": results.page,
        "per_page": results.per_page,
        "messages": [
            {
                "id": h.message.id,
                "folder": h.folder.path,
                "folder_id": h.folder.id,
                "folder_name": h.folder.name,
                "subject": h.message.subject,
                "from_address": h.message.from_address,
                "date": h.message.date.isoformat() if h.message.date else None,
                "size": h.message.size,
                "seen": h.message.seen,
                "flagged": h.message.flagged,
                "has_attachments": h.message.has_attachments,
            }
            for h in results.hits
        ],
        "next_page": results.next_page,
        "previous_page": results.previous_page,
        "older_hidden": results.older_hidden,
    }


def _line(m: dict[str, Any]) -> str:
    return f"{m['id']:>8}  {m['date'] or '':<25}  {m['folder']:<20}  {m['from_address'][:30]:<30}  {m['subject']}"


@click.command("reindex")
@click.option("--user", "user_email", default=None, help="Only this user's messages (default: everyone's).")
@plain_errors
def reindex(user_email: str | None) -> None:
    """Index the stored messages again, a batch of at most 64 MB at a time."""

    async def work(db: Database) -> int:
        user_id = (await users.find_user(db=db, email=user_email)).id if user_email is not None else None
        return await search_index.rebuild(db, user_id=user_id)

    count = run_with_db(work)
    whose = f"{user_email}'s" if user_email else "all"
    click.echo(f"Indexed {count} of {whose} messages again.")


class _SearchCommand(click.Command):
    """`tributary search QUERY...`, or `tributary search reindex ...` (its own command):
    the parent group invokes the command of the context this returns."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        if args[:1] == ["reindex"]:
            return reindex.make_context(f"{info_name} reindex", args[1:], parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


@cli.command("search", cls=_SearchCommand)
@click.option("--user", "user_email", required=True)
@click.argument("query", nargs=-1, required=True)
@click.option("--page", type=click.IntRange(1, searching.MAX_PAGE), default=1, show_default=True)
@click.option(
    "--per-page", type=click.IntRange(1, searching.MAX_PER_PAGE), default=searching.PAGE_SIZE, show_default=True
)
@click.option("--json", "as_json", is_flag=True)
@plain_errors
def search(user_email: str, query: tuple[str, ...], page: int, per_page: int, as_json: bool) -> None:
    """A user's messages matching QUERY, newest first: words, "phrases", from:, to:, subject:,
    has:attachment, is:unread, in:FOLDER, before:/after:YYYY-MM-DD."""

    async def work(db: Database) -> dict[str, Any]:
        owner = await users.find_user(db=db, email=user_email)
        found = await searching.search(db=db, user_id=owner.id, query=" ".join(query), page=page, per_page=per_page)
        return _page(found)

    result = run_with_db(work)
    lines = [_line(m) for m in result["messages"]]
    if result["next_page"]:
        lines.append(f"(more: --page {result['next_page']})")
    elif result["older_hidden"]:
        lines.append(searching.NARROW_HINT)
    emit(result, as_json=as_json, text="\n".join(lines) or "No messages found.")
