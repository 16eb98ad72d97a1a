"""`tributary secrets ...`: the key that encrypts stored credentials.

`rotate` re-encrypts every stored credential under a new key (the steps and why
a crash cannot lose a credential: service.usecases.secrets). With the key file
in the data directory it makes the new key itself; with TRIBUTARY_SECRET_KEY the
operator puts a new key first (`new-key` prints one): TRIBUTARY_SECRET_KEY=NEW,OLD.
Stop `tributary serve` and `tributary worker` while rotating.
"""

from __future__ import annotations

import click
from cryptography.fernet import Fernet

from service.cli import cli
from service.cli.common import emit, plain_errors, run_with_db
from service.config import Settings
from service.usecases import secrets


@cli.group("secrets")
def secrets_group() -> None:
    """The encryption key for stored credentials."""


@secrets_group.command("rotate")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@plain_errors
def rotate(as_json: bool) -> None:
    """Re-encrypt every stored credential under a new key."""
    settings = Settings()
    result = run_with_db(lambda db: secrets.rotate(settings=settings, db=db))
    noun = "credential" if result.reencrypted == 1 else "credentials"
    text = f"Re-encrypted {result.reencrypted} {noun} under the new key ({result.key_source})."
    if result.key_source != "key file":
        text += " The old key may now be removed from TRIBUTARY_SECRET_KEY."
    emit(result, as_json=as_json, text=text)


@secrets_group.command("new-key")
def new_key() -> None:
    """Print a new Fernet key (for TRIBUTARY_SECRET_KEY=NEW,OLD before `rotate`)."""
    click.echo(Fernet.generate_key().decode())
