"""Rotating the key that encrypts stored credentials (`tributary secrets rotate`).

The credentials are the Fernet-encrypted columns: retrieval_task.password_encrypted,
smtp_account.password_encrypted, domain.relay_password_encrypted, the OAuth2 access and
refresh tokens of retrieval tasks and SMTP accounts, and the PKCE code verifiers of the
sign-ins in progress (oauth_state.code_verifier_encrypted).

**With TRIBUTARY_SECRET_KEY** (comma-separated keys, newest first) the operator
makes a new key (`tributary secrets new-key` prints one) and puts it first,
keeping the old one after it: `TRIBUTARY_SECRET_KEY=NEW,OLD`, then runs
`tributary secrets rotate`. Every credential is re-encrypted under NEW in one
transaction; once it reports success, OLD can be removed from the setting. A
single configured key is refused: there is nothing to rotate to.

**With the key file** (data_dir/secret.key) the command does it all, in an order
where a crash at any instant leaves every credential decryptable:

1. generate NEW; atomically replace the file with "NEW\\nOLD..." (0600). Crash
   here: rows are under OLD, the file still holds OLD -> readable.
2. re-encrypt every credential under NEW in one transaction. Crash before the
   commit: the transaction rolls back, rows under OLD, file holds both ->
   readable. After the commit, rows are under NEW, the file holds NEW.
3. atomically replace the file with "NEW" alone. Crash before it: the file holds
   both keys, rows under NEW -> readable (a second `rotate` finishes the job).

So at no moment is a row encrypted under a key that the file lacks. Stop the web
and worker processes while rotating: a process started before step 1 still
encrypts new credentials under OLD, which step 3 then drops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet
from sqlmodel import select

from service.config import Settings
from service.persistence.database import Database
from service.persistence.secrets import (
    SecretBox,
    SecretKeyError,
    key_file_in_use,
    load_or_create_keys,
    write_key_file,
)
from service.persistence.tables import Domain, OAuthState, RetrievalTask, SmtpAccount

ONE_KEY_IN_SETTING = (
    "TRIBUTARY_SECRET_KEY holds a single key: put the new key first, then the current one "
    "(TRIBUTARY_SECRET_KEY=NEW,OLD), and run the command again."
)

# (table, column) pairs holding Fernet tokens.
ENCRYPTED_COLUMNS: tuple[tuple[type[Any], str], ...] = (
    (RetrievalTask, "password_encrypted"),
    (SmtpAccount, "password_encrypted"),
    (Domain, "relay_password_encrypted"),
    (RetrievalTask, "oauth_access_token_encrypted"),
    (RetrievalTask, "oauth_refresh_token_encrypted"),
    (SmtpAccount, "oauth_access_token_encrypted"),
    (SmtpAccount, "oauth_refresh_token_encrypted"),
    (OAuthState, "code_verifier_encrypted"),
)


@dataclass(frozen=True, slots=True)
class RotationResult:
    """What `rotate` did: how many credentials it re-encrypted, and where the key lives."""

    reencrypted: int
    key_source: str  # "key file" or "TRIBUTARY_SECRET_KEY"


async def reencrypt_all(*, db: Database, box: SecretBox) -> int:
    """Re-encrypt every stored credential under `box`'s newest key, in one transaction; the count."""
    count = 0
    async with db.write() as session:
        for model, column in ENCRYPTED_COLUMNS:
            for row in (await session.exec(select(model))).all():
                token = getattr(row, column)
                if not token:
                    continue
                setattr(row, column, box.rotate(token))
                session.add(row)
                count += 1
    return count


async def rotate(*, settings: Settings, db: Database) -> RotationResult:
    """Move every credential to a new key (see the module's docstring for the order of steps)."""
    keys = load_or_create_keys(settings)
    path = key_file_in_use(settings)
    if path is None:
        if len(keys) < 2:
            raise SecretKeyError(ONE_KEY_IN_SETTING)
        count = await reencrypt_all(db=db, box=SecretBox(keys))
        return RotationResult(reencrypted=count, key_source="TRIBUTARY_SECRET_KEY")
    SecretBox(keys)  # refuse a malformed file before changing anything
    new_key = Fernet.generate_key()
    write_key_file(path, [new_key, *keys])  # step 1
    count = await reencrypt_all(db=db, box=SecretBox([new_key, *keys]))  # step 2
    write_key_file(path, [new_key])  # step 3
    return RotationResult(reencrypted=count, key_source="key file")
