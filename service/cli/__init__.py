"""The `tributary` command: the service's face for operators and scripts.

Every command builds Settings from the environment when it runs. Commands that
list or create take --json and then print JSON on stdout; errors go to stderr
as one plain sentence with exit code 1 (2 for a mistyped command line), as
{"error": "..."} with --json (see group.TributaryGroup).
Each group lives in its own module, imported only when one of its commands runs:
the table below names each command's module and the summary `tributary --help`
shows (tests/test_cli_startup.py checks both against the modules). `serve` is
added by web/cli.py, because it needs the web face.
"""

from __future__ import annotations

import click

from service.cli.group import TributaryGroup


@click.group(cls=TributaryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tributary", prog_name="tributary", message="%(prog)s %(version)s")
def cli() -> None:
    """Tributary: gather your external mailboxes into one and send as any of your addresses."""


COMMANDS: dict[str, dict[str, str]] = {
    "service.cli.admin": {
        "db": "The database schema.",
        "user": "Tributary's own users.",
        "domain": "Per-domain switches and limits (the administrator's settings).",
    },
    "service.cli.backup": {
        "backup": "Write a consistent backup into DIRECTORY (new or empty) while the service runs.",
        "restore": "Restore the backup in DIRECTORY into the data directory, which must be empty.",
    },
    "service.cli.bodies": {
        "bodies": "Message bodies: move them between the database and segment files, and check them.",
    },
    "service.cli.discover": {
        "discover": "Find the IMAP, POP3 and SMTP servers of EMAIL, and say where they were found.",
    },
    "service.cli.mail": {
        "folders": "A user's folders with message and unread counts.",
        "messages": "A folder's messages, newest first.",
        "export": "Write a message's stored bytes, unchanged, to standard output (--id), or the user's folders "
        "as a Maildir++ tree (--maildir; folder names in modified UTF-7, flags in file names).",
    },
    "service.cli.outgoing": {
        "send": "Send a message through an SMTP account (or the company relay); it waits in the outbox if it must.",
        "outbox": "Messages waiting to be sent, failed, or of unknown delivery.",
    },
    "service.cli.retrieval": {
        "retrieval": "Email Retrieval tasks: remote IMAP and POP3 mailboxes pulled into the local one.",
    },
    "service.cli.search": {
        "search": 'A user\'s messages matching QUERY, newest first: words, "phrases", from:, to:, subject:, '
        "has:attachment, is:unread, in:FOLDER, before:/after:YYYY-MM-DD.",
    },
    "service.cli.secrets": {
        "secrets": "The encryption key for stored credentials.",
    },
    "service.cli.sending": {
        "smtp": "SMTP accounts: the servers you send through.",
    },
    "service.cli.worker": {
        "worker": "Run automatic retrieval, outbox retries and housekeeping until stopped (no web pages).",
    },
}

for _module, _summaries in COMMANDS.items():
    cli.add_lazy(_module, _summaries)


def main() -> None:
    cli()
