"""Servers whose folders live under "INBOX." (Cyrus, Courier): special-use folders land in the
local special folders and the personal namespace prefix (RFC 2342) is not part of a root-level
folder's name (issue 14)."""

from __future__ import annotations

import secrets

import pytest

from service.config import Settings
from service.domain.retrieval import LocalTarget, local_target
from service.domain.values import FolderTransfer, SpecialUse
from service.persistence.database import Database
from service.persistence.secrets import SecretBox
from tests.fixtures.dovecot_prefixed import PrefixedDovecot, dovecot_prefixed  # noqa: F401  (fixture)
from tests.mail_samples import sample
from tests.retrieval_env import make_env

ROOT, SUBFOLDERS = FolderTransfer.ROOT, FolderTransfer.SUBFOLDERS


@pytest.mark.parametrize(
    ("path", "special", "prefix", "expected"),
    [
        ("INBOX", None, "INBOX/", LocalTarget(SpecialUse.INBOX, "Inbox")),
        ("INBOX/Sent", "\\Sent", "INBOX/", LocalTarget(SpecialUse.SENT, "")),
        ("INBOX/Papierkorb", "\\Trash", "INBOX/", LocalTarget(SpecialUse.TRASH, "")),
        ("INBOX/Alt", "\\Archive", "INBOX/", LocalTarget(None, "Archive")),
        ("INBOX/Archiv", None, "INBOX/", LocalTarget(None, "Archiv")),
        ("INBOX/Archiv/2024", None, "INBOX/", LocalTarget(None, "Archiv/2024")),
        ("inbox/Archiv", None, "INBOX/", LocalTarget(None, "Archiv")),  # INBOX is case-insensitive
        ("INBOX/Inbox", None, "INBOX/", LocalTarget(None, "Inbox")),  # a folder named Inbox: not the Inbox
        ("user/anna/Shared", None, "INBOX/", LocalTarget(None, "user/anna/Shared")),  # another namespace
        # Without a prefix (Dovecot's default), INBOX/x is a child of the Inbox, and special use still wins.
        ("INBOX/Child", None, "", LocalTarget(None, "Inbox/Child")),
        ("INBOX/Sent", "\\Sent", "", LocalTarget(SpecialUse.SENT, "")),
        ("Sent Items", "\\Sent", "", LocalTarget(SpecialUse.SENT, "")),
        ("Projekte", None, "", LocalTarget(None, "Projekte")),
        ("Mail/Projekte", None, "Mail/", LocalTarget(None, "Projekte")),
        ("mail/Projekte", None, "Mail/", LocalTarget(None, "mail/Projekte")),  # only INBOX ignores case
    ],
)
def test_root_level_mapping(path: str, special: str | None, prefix: str, expected: LocalTarget) -> None:
    assert local_target(path, special, transfer=ROOT, destination="Remote", personal_prefix=prefix) == expected


@pytest.mark.parametrize(
    ("path", "special", "expected"),
    [
        ("INBOX", None, "Remote/INBOX"),
        ("INBOX/Sent", "\\Sent", "Remote/INBOX/Sent"),
        ("INBOX/Archiv", None, "Remote/INBOX/Archiv"),
    ],
)
def test_subfolders_mirror_the_servers_tree_prefix_included(path: str, special: str | None, expected: str) -> None:
    target = local_target(path, special, transfer=SUBFOLDERS, destination="Remote/", personal_prefix="INBOX/")
    assert target == LocalTarget(None, expected)


@pytest.mark.parametrize(
    ("transfer", "expected"),
    [
        (ROOT, {"Inbox": 1, "Sent": 2, "Drafts": 1, "Archiv": 1, "Archiv/2024": 1}),
        (
            SUBFOLDERS,
            {
                "Remote/INBOX": 1,
                "Remote/INBOX/Sent": 2,
                "Remote/INBOX/Drafts": 1,
                "Remote/INBOX/Archiv": 1,
                "Remote/INBOX/Archiv/2024": 1,
            },
        ),
    ],
)
async def test_a_server_with_folders_under_inbox_dot(
    db: Database,
    settings: Settings,
    secret_box: SecretBox,
    dovecot_prefixed: PrefixedDovecot,  # noqa: F811
    transfer: FolderTransfer,
    expected: dict[str, int],
) -> None:
    mailbox = dovecot_prefixed.add_user(f"cyrus-{secrets.token_hex(4)}@example.test", "a password")
    for folder, count in [("INBOX", 1), ("INBOX.Sent", 2), ("INBOX.Drafts", 1), ("INBOX.Archiv", 1)]:
        for n in range(count):
            dovecot_prefixed.deliver(mailbox.email, sample(f"{folder} {n}"), folder=folder)
    dovecot_prefixed.deliver(mailbox.email, sample("2024"), folder="INBOX.Archiv.2024")
    env = await make_env(db, settings, secret_box, dovecot_prefixed, mailbox)
    task_id = await env.add_task(folder_transfer=transfer)

    result = await env.run(task_id)
    assert (result.imported, result.errors) == (6, [])
    counts = await env.local_counts()
    assert {path: n for path, n in counts.items() if n} == expected
    assert (await env.run(task_id)).imported == 0
