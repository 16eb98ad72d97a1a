"""The `tributary` command: the service's face for operators and scripts.

Every command builds Settings from the environment when it runs. Commands that
list or create take --json and then print JSON on stdout; errors go to stderr
as one plain sentence with exit code 1 (2 for a mistyped command line), as
{"error": "..."} with --json (see common.TributaryGroup).
Each group lives in its own module; `serve` is added by web/cli.py, because it
needs the web face.
"""

from __future__ import annotations

import click

from service.cli.common import TributaryGroup


@click.group(cls=TributaryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tributary", prog_name="tributary", message="%(prog)s %(version)s")
def cli() -> None:
    """Tributary: gather your external mailboxes into one and send as any of your addresses."""


def _register() -> None:
    from service.cli import (  # noqa: F401  (each adds its commands)
        admin,
        backup,
        bodies,
        discover,
        mail,
        outgoing,
        retrieval,
        search,
        secrets,
        sending,
        worker,
    )


_register()


def main() -> None:
    cli()
